package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"auditwatch/schema"
)

// The original record travels into the raw column (migration 0012), on
// both backends; an event without one stores an empty string.
func TestRawRecordStored(t *testing.T) {
	for _, bc := range backends {
		t.Run(bc.name, func(t *testing.T) {
			dbSeq++
			db := fmt.Sprintf("aw_raw_%d", dbSeq)
			st := openRW(t, bc.cfg(t, db))
			ctx := context.Background()
			if err := st.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			raw := `{"eventSource":"kms.amazonaws.com","eventName":"DisableKey","requestParameters":{"keyId":"k-1"}}`
			now := time.Now().UTC().Truncate(time.Second)
			evs := []schema.Event{
				{Time: now, Source: schema.SourceCloudTrail, ID: "with-raw", Action: "kms:DisableKey", Raw: []byte(raw)},
				{Time: now, Source: schema.SourceCloudTrail, ID: "no-raw", Action: "kms:EnableKey"},
			}
			if err := st.InsertEvents(ctx, evs); err != nil {
				t.Fatal(err)
			}
			r, err := st.Raw(ctx, "SELECT id, raw FROM "+db+".events ORDER BY id", nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Rows) != 2 || r.Rows[0][0] != "no-raw" || r.Rows[0][1] != "" || r.Rows[1][1] != raw {
				t.Errorf("rows %v", r.Rows)
			}
		})
	}
}
