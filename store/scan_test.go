package store

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"testing"
	"time"

	"auditwatch/config/duration"
	"auditwatch/schema"
	"auditwatch/store/chtest"
)

// TestScanEvents stores generated events (several pages' worth, many per
// second, one block inserted twice as a retry would) on each backend and
// reads them back with ScanEvents: every event of the window once, in
// (time, id) order, with the fields the detectors use as written; and
// their original records with ScanRecords, in the same order.
func TestScanEvents(t *testing.T) {
	for _, bc := range backends {
		t.Run(bc.name, func(t *testing.T) {
			dbSeq++
			cfg := bc.cfg(t, fmt.Sprintf("aw_scan_%d", dbSeq))
			cfg.Query.MaxResultRows = 700 // pages of 700
			ctx := context.Background()
			st := openRW(t, cfg)
			if err := st.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			start := time.Now().UTC().Add(-3 * time.Hour).Truncate(time.Hour)
			evs := chtest.NewGen(5, start, 2*time.Hour).Sequential(3000).Events(3000)
			evs[0].SourceIsService, evs[0].SourceIPRaw, evs[0].Auth, evs[0].KeyIssue = true, "secretsmanager.amazonaws.com", true, "issued by vault"
			evs[1].ASN, evs[1].Country = 64500, "DE"
			for i := range evs {
				if i%3 != 0 { // every third stored without its record
					evs[i].Raw = []byte(fmt.Sprintf(`{"n":%d,"id":%q}`, i, evs[i].ID))
				}
			}
			w, err := NewWriter(st, BatchConfig{MaxRows: 1000, MaxInterval: duration.Duration(time.Hour), RetryBackoff: duration.Duration(time.Millisecond)}, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Add(ctx, evs); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(ctx); err != nil {
				t.Fatal(err)
			}
			// A retried insert under another token: the same rows twice
			// until the table merges.
			if err := st.b.InsertEvents(ctx, evs[:500], "retry-"+t.Name()); err != nil {
				t.Fatal(err)
			}
			from, to := start.Add(30*time.Minute), start.Add(90*time.Minute)
			var want []schema.Event
			for _, ev := range evs {
				if !ev.Time.Before(from) && !ev.Time.After(to) {
					want = append(want, ev)
				}
			}
			sort.SliceStable(want, func(i, j int) bool {
				if !want[i].Time.Equal(want[j].Time) {
					return want[i].Time.Before(want[j].Time)
				}
				return want[i].ID < want[j].ID
			})
			var got []schema.Event
			pages := 0
			var sc EventScanner = st
			if err := sc.ScanEvents(ctx, from, to, func(b []schema.Event) error {
				pages++
				got = append(got, b...)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if pages < 2 || len(got) != len(want) {
				t.Fatalf("%d events in %d pages, want %d in several", len(got), pages, len(want))
			}
			var wantRaws []string
			wantNoRaw := 0
			for i := range want {
				if len(want[i].Raw) == 0 {
					wantNoRaw++
				} else {
					wantRaws = append(wantRaws, string(want[i].Raw))
				}
				want[i].Raw = nil // ScanEvents reads no record
			}
			var raws []string
			noRaw, rpages := 0, 0
			if err := st.ScanRecords(ctx, from, to, func(b []string, missing int) error {
				rpages++
				raws, noRaw = append(raws, b...), noRaw+missing
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if rpages < 2 || noRaw != wantNoRaw || !reflect.DeepEqual(raws, wantRaws) {
				t.Fatalf("ScanRecords: %d records and %d without in %d pages, want %d and %d in several (order and duplicates as ScanEvents)", len(raws), noRaw, rpages, len(wantRaws), wantNoRaw)
			}
			for i := range want {
				if !reflect.DeepEqual(got[i], want[i]) {
					t.Fatalf("event %d:\n got %+v\nwant %+v", i, got[i], want[i])
				}
			}
			all := 0
			if err := st.ScanEvents(ctx, start.Add(-time.Hour), start.Add(3*time.Hour), func(b []schema.Event) error { all += len(b); return nil }); err != nil {
				t.Fatal(err)
			}
			if all != len(evs) {
				t.Fatalf("whole span: %d events, want %d", all, len(evs))
			}
		})
	}
}
