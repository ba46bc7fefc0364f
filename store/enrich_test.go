package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"auditwatch/schema"
)

// TestLinkedIdentityAndNetworkColumns: the Vault identity behind a key
// (key_principal, key_issue) and the network context (country, asn,
// as_org, net_label) are stored with the event on both backends, and
// who-accessed names the Vault identity (the linked event's principal).
func TestLinkedIdentityAndNetworkColumns(t *testing.T) {
	for _, bc := range backends {
		t.Run(bc.name, func(t *testing.T) {
			dbSeq++
			cfg := bc.cfg(t, fmt.Sprintf("aw_enrich_%d", dbSeq))
			ctx := context.Background()
			st := openRW(t, cfg)
			if err := st.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			now := time.Now().UTC().Truncate(time.Second)
			ev := schema.Event{Time: now.Add(-time.Minute), Source: schema.SourceCloudTrail, ID: "ct-linked-1",
				Principal: "0b3c6f1e-entity", PrincipalName: "payments-api", PrincipalType: "entity",
				AccessKey: "AKIAEXAMPLEKEY000006", Action: "secretsmanager:GetSecretValue", Resource: "prod-db",
				SourceIP: "203.0.113.50", Outcome: "success",
				KeyPrincipal: "arn:aws:iam::111122223333:user/vault-approle-payments-1",
				KeyIssue:     "issued by Vault to payments-api (entity 0b3c6f1e-entity) at 2026-11-26T10:02:00Z from 10.0.4.7",
				Country:      "BR", ASN: 64511, ASOrg: "Hosting Example Ltda", NetLabel: "public"}
			plain := schema.Event{Time: now.Add(-2 * time.Minute), Source: schema.SourceVault, ID: "v-plain-1",
				Principal: "entity-b", Action: "vault:read", Resource: "secret/data/x", SourceIP: "10.0.0.1", Outcome: "success"}
			if err := st.InsertEvents(ctx, []schema.Event{ev, plain}); err != nil {
				t.Fatal(err)
			}
			r, err := st.Raw(ctx, `SELECT id, key_principal, key_issue, country, toString(asn) AS asn, as_org, net_label
FROM `+st.Dialect().DB+`.events ORDER BY id`, nil)
			if err != nil {
				t.Fatal(err)
			}
			eq(t, "linked row", table(t, r, "id", "key_principal", "country", "asn", "as_org", "net_label"), []string{
				"ct-linked-1|arn:aws:iam::111122223333:user/vault-approle-payments-1|BR|64511|Hosting Example Ltda|public",
				"v-plain-1|||0||",
			})
			w, err := st.Query(ctx, "who-accessed", QueryArgs{Resource: "prod-db", Since: now.Add(-time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			eq(t, "who-accessed", table(t, w, "principal", "principal_name"), []string{"0b3c6f1e-entity|payments-api"})
			for _, a := range []QueryArgs{{ASN: 64511}, {Country: "br"}} {
				a.Since = now.Add(-time.Hour)
				r, err := st.Query(ctx, "ip", a)
				if err != nil {
					t.Fatalf("ip %+v: %v", a, err)
				}
				eq(t, fmt.Sprintf("ip %+v", a), table(t, r, "principal", "resource", "source_ips", "country_code", "as_number", "as_name"),
					[]string{"0b3c6f1e-entity|prod-db|203.0.113.50|BR|64511|Hosting Example Ltda"})
			}
			if _, err := st.Query(ctx, "ip", QueryArgs{ASN: 1, Country: "DE", Since: now}); err == nil {
				t.Error("ip with --asn and --country: no error")
			}
			if _, err := st.Query(ctx, "ip", QueryArgs{Country: "Germany", Since: now}); err == nil {
				t.Error("ip --country Germany: no error")
			}
		})
	}
}
