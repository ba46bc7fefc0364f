package slack

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"auditwatch/alert/notify"
	"auditwatch/schema"
)

// TestLinkedKeyShown: a finding on a Vault-issued key shows who the key
// was issued to and where the address is, before other attributes.
func TestLinkedKeyShown(t *testing.T) {
	f := schema.Finding{ID: "f1", Detector: schema.DetectorCredentialExfiltration, Severity: schema.SeverityCritical,
		Time: time.Date(2026, 11, 26, 10, 42, 0, 0, time.UTC), Principal: "0b3c6f1e", PrincipalName: "payments-api",
		SourceIP: "203.0.113.50", Resource: "prod-db", Source: schema.SourceCloudTrail,
		Attributes: map[string]string{
			"key_issue":     "issued by Vault to payments-api (entity 0b3c6f1e) at 2026-11-26T10:02:00Z from 10.0.4.7, lease aws/creds/payments/x",
			"aws_principal": "arn:aws:iam::111122223333:user/vault-approle-payments-1", "country": "BR", "as_org": "Hosting Example Ltda",
			"a1": "1", "a2": "2", "a3": "3", "a4": "4", "a5": "5", "a6": "6", "a7": "7",
		}}
	m := render(notify.Alert{Finding: f}, 300)
	b, err := json.Marshal(m.Blocks)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{"Vault-issued AWS key used from a new network", "issued by Vault to payments-api (entity 0b3c6f1e) at 2026-11-26T10:02:00Z from 10.0.4.7",
		"vault-approle-payments-1", "Hosting Example Ltda"} {
		if !strings.Contains(s, want) {
			t.Errorf("message lacks %q:\n%s", want, s)
		}
	}
}
