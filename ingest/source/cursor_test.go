package source

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"auditwatch/gen"
	"auditwatch/ingest"
)

// While Vault requests keep overlapping (one always waits for its
// response, so the reader is never clean), a cursor names only the events
// emitted from records at or after its offset, not every event since the
// reader was last clean; resuming from any cursor still gives every event
// exactly once.
func TestCursorSkipStaysSmallWhileRequestsOverlap(t *testing.T) {
	g, err := gen.New(gen.Config{Events: 8000, CloudTrailShare: 0}.Defaults())
	if err != nil {
		t.Fatal(err)
	}
	var data []byte
	for {
		var ok bool
		data, _, ok = g.Next(data)
		if !ok {
			break
		}
	}
	parse := AuditParser(ingest.DefaultOptions())
	read := func(tr *Tracked, each func(id string, c Cursor)) {
		t.Helper()
		for {
			ev, err := tr.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				var re *ingest.RecordError
				if errors.As(err, &re) {
					continue
				}
				t.Fatal(err)
			}
			each(ev.ID, tr.Cursor())
		}
	}
	var all []string
	var cursors []Cursor
	maxSkip, unclean := 0, 0
	read(Track(parse, bytes.NewReader(data), "t", Cursor{}), func(id string, c Cursor) {
		all = append(all, id)
		cursors = append(cursors, c)
		maxSkip = max(maxSkip, len(c.Skip))
		if len(c.Skip) > 0 {
			unclean++
		}
	})
	if len(all) < 3000 {
		t.Fatalf("%d events read", len(all))
	}
	if unclean < len(all)/2 {
		t.Fatalf("only %d of %d cursors name skipped events: requests do not overlap here, nothing is tested", unclean, len(all))
	}
	if maxSkip > 200 {
		t.Errorf("a cursor carried %d ids (of %d events): it should name only events past its offset", maxSkip, len(all))
	}
	for _, k := range []int{1, len(all) / 3, len(all) / 2, len(all) - 2} {
		c := cursors[k-1]
		got := append([]string(nil), all[:k]...)
		read(Track(parse, bytes.NewReader(data[c.Offset:]), "t", c), func(id string, _ Cursor) { got = append(got, id) })
		if len(got) != len(all) {
			t.Fatalf("resume after event %d (offset %d, %d skip ids): %d events in all, want %d", k, c.Offset, len(c.Skip), len(got), len(all))
		}
		seen := map[string]bool{}
		for _, id := range got {
			if seen[id] {
				t.Fatalf("resume after event %d: %s twice", k, id)
			}
			seen[id] = true
		}
		for _, id := range all {
			if !seen[id] {
				t.Fatalf("resume after event %d: %s lost", k, id)
			}
		}
	}
	t.Logf("%d events, %d cursors with skip ids, at most %d ids", len(all), unclean, maxSkip)
}
