package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"auditwatch/schema"
)

// The findings query shows a Sigma finding's rule title and author in
// columns of their own (rules under the Detection Rule License must name
// their author wherever a match is shown); other findings leave them empty.
func TestFindingsRuleTitleAndAuthor(t *testing.T) {
	for _, bc := range backends {
		t.Run(bc.name, func(t *testing.T) {
			dbSeq++
			st := openRW(t, bc.cfg(t, fmt.Sprintf("aw_sf_%d", dbSeq)))
			ctx := context.Background()
			if err := st.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			now := time.Now().UTC().Truncate(time.Second)
			fs := []schema.Finding{
				{ID: "s1", DedupeKey: "s1", Detector: schema.DetectorSigma, Severity: schema.SeverityHigh, Time: now, FirstTime: now, LastTime: now, Count: 1,
					Summary: "Sigma rule", Attributes: map[string]string{"rule_title": "AWS CloudTrail Important Change", "author": "vitaliy0x1", "license": "DRL-1.1", "rule_id": "4db60cc0"}},
				{ID: "d1", DedupeKey: "d1", Detector: schema.DetectorUnexpectedIP, Severity: schema.SeverityMedium, Time: now.Add(-time.Minute), FirstTime: now, LastTime: now, Count: 1,
					Attributes: map[string]string{"window": "5m"}},
			}
			if err := st.InsertFindings(ctx, fs); err != nil {
				t.Fatal(err)
			}
			r, err := st.Query(ctx, "findings", QueryArgs{Since: now.Add(-time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			eq(t, "title and author", table(t, r, "id", "detector", "rule_title", "author"),
				[]string{"s1|sigma|AWS CloudTrail Important Change|vitaliy0x1", "d1|unexpected_ip||"})
		})
	}
}
