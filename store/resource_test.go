package store

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"auditwatch/schema"
)

// TestResourceForms: who-accessed answers the same rows for every form of
// a resource's name (Vault logical and KV v2 API paths; a Secrets Manager
// name, partial and full ARN; a KMS key id and its ARN), on both backends;
// an empty answer with near matches says so.
func TestResourceForms(t *testing.T) {
	for _, bc := range backends {
		t.Run(bc.name, func(t *testing.T) {
			dbSeq++
			cfg := bc.cfg(t, fmt.Sprintf("aw_res_%d", dbSeq))
			ctx := context.Background()
			st := openRW(t, cfg)
			if err := st.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			now := time.Now().UTC().Truncate(time.Second)
			n := 0
			vault := func(principal, path, action string) schema.Event {
				n++
				return schema.Event{Time: now.Add(-time.Duration(n) * time.Minute), Source: schema.SourceVault, ID: fmt.Sprintf("v%d", n),
					Principal: principal, Action: action, Resource: path, Mount: "secret/", MountType: "kv", Outcome: "success"}
			}
			aws := func(principal, resource, action string) schema.Event {
				n++
				return schema.Event{Time: now.Add(-time.Duration(n) * time.Minute), Source: schema.SourceCloudTrail, ID: fmt.Sprintf("c%d", n),
					Principal: principal, Action: action, Resource: resource, Region: "us-east-1", Account: "111122223333", Outcome: "success"}
			}
			const smARN = "arn:aws:secretsmanager:us-east-1:111122223333:secret:prod-db-AbC123"
			const keyARN = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
			evs := []schema.Event{
				vault("entity-a", "secret/data/payments/db", "vault:read"),
				vault("entity-b", "secret/metadata/payments/db", "vault:list"),
				vault("entity-c", "secret/data/payments/api", "vault:read"),
				aws("arn:aws:iam::111122223333:user/x", smARN, "secretsmanager:GetSecretValue"),
				aws("arn:aws:iam::111122223333:user/y", "prod-db", "secretsmanager:GetSecretValue"),
				aws("arn:aws:iam::111122223333:user/z", keyARN, "kms:Decrypt"),
			}
			if err := st.InsertEvents(ctx, evs); err != nil {
				t.Fatal(err)
			}
			since := now.Add(-24 * time.Hour)
			who := func(resource string) []string {
				t.Helper()
				r, err := st.Query(ctx, "who-accessed", QueryArgs{Resource: resource, Since: since})
				if err != nil {
					t.Fatalf("who-accessed %s: %v", resource, err)
				}
				return table(t, r, "principal", "events")
			}
			for _, group := range [][]string{
				{"secret/payments/db", "secret/data/payments/db", "secret/metadata/payments/db", "/secret/payments/db/"},
				{"prod-db", smARN, "arn:aws:secretsmanager:us-east-1:111122223333:secret:prod-db"},
				{"1234abcd-12ab-34cd-56ef-1234567890ab", keyARN},
			} {
				want := who(group[0])
				if len(want) < 1 {
					t.Fatalf("who-accessed %s: no rows", group[0])
				}
				for _, form := range group[1:] {
					eq(t, "who-accessed "+form, who(form), want)
				}
			}
			eq(t, "vault forms", who("secret/payments/db"), []string{"entity-a|1", "entity-b|1"})
			eq(t, "secrets manager forms", who("prod-db"), []string{"arn:aws:iam::111122223333:user/x|1", "arn:aws:iam::111122223333:user/y|1"})

			r, err := st.Query(ctx, "who-accessed", QueryArgs{Resource: "secret/payments", Since: since})
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Rows) != 0 || len(r.Notes) != 1 || !strings.Contains(r.Notes[0], `2 resources match "payments": secret/payments/db, secret/payments/api`) {
				t.Errorf("near matches: rows %v notes %q", r.Rows, r.Notes)
			}
		})
	}
}
