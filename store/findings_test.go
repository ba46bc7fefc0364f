package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestFindingsFilters: the findings query returns one row per incident
// (its latest revision) with id, reason, first/last seen and event ids,
// filtered by --severity (at or above), --detector and --until.
func TestFindingsFilters(t *testing.T) {
	for _, bc := range backends {
		t.Run(bc.name, func(t *testing.T) {
			dbSeq++
			cfg := bc.cfg(t, fmt.Sprintf("aw_fi_%d", dbSeq))
			ctx := context.Background()
			st := openRW(t, cfg)
			if err := st.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			now := time.Now().UTC()
			_, fs := known(now)
			fs[0].Reason, fs[1].Reason = "5 failures in 5m", "9 failures in 5m"
			fs[1].EventIDs = []string{"a3", "a5"}
			// A retried block of the same revision must not show twice.
			for i := 0; i < 2; i++ {
				if err := st.InsertFindings(ctx, fs); err != nil {
					t.Fatal(err)
				}
			}
			week := now.Add(-7 * 24 * time.Hour)
			q := func(a QueryArgs) *Result {
				t.Helper()
				a.Since = week
				r, err := st.Query(ctx, "findings", a)
				if err != nil {
					t.Fatal(err)
				}
				return r
			}
			eq(t, "all", table(t, q(QueryArgs{}), "id", "detector", "severity", "count", "revision", "reason", "event_ids"),
				[]string{"f2|auth_failure_spike|high|9|1|9 failures in 5m|a3 a5", "f3|unexpected_ip|high|1|0||", "f-old|unexpected_ip|low|0|0||"})
			eq(t, "severity high", table(t, q(QueryArgs{Severity: "high"}), "id"), []string{"f2", "f3"})
			eq(t, "severity critical", table(t, q(QueryArgs{Severity: "critical"}), "id"), nil)
			eq(t, "detector", table(t, q(QueryArgs{Detector: "unexpected_ip"}), "id"), []string{"f3", "f-old"})
			eq(t, "until", table(t, q(QueryArgs{Until: now.Add(-24 * time.Hour)}), "id"), []string{"f-old"})
			r := q(QueryArgs{Detector: "auth_failure_spike"})
			if fs, ls := table(t, r, "first_seen"), table(t, r, "last_seen"); len(fs) != 1 || fs[0] == ls[0] {
				t.Errorf("first/last seen: %v %v", fs, ls)
			}
			r, err := st.Query(ctx, "finding", QueryArgs{Since: week, ID: "f2"})
			if err != nil {
				t.Fatal(err)
			}
			eq(t, "finding by id", table(t, r, "revision", "id", "count", "reason", "event_ids"),
				[]string{"0|f1|5|5 failures in 5m|a3", "1|f2|9|9 failures in 5m|a3 a5"})
			if _, err := st.Query(ctx, "findings", QueryArgs{Since: week, Severity: "urgent"}); !errors.Is(err, ErrQueryArgs) {
				t.Errorf("bad severity: %v", err)
			}
			if _, err := st.Query(ctx, "failures", QueryArgs{Since: week, Detector: "x"}); !errors.Is(err, ErrQueryArgs) {
				t.Errorf("--detector on failures: %v", err)
			}
		})
	}
}
