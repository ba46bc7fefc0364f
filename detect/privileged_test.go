package detect

import (
	"testing"
	"time"

	"auditwatch/schema"
)

// TestAuditDeviceTestEntryNeverPages: the entry Vault writes to a new audit
// device (a lone request to sys/audit/<path>: no token, no address, no
// response) raises nothing, with or without history; a real change at a
// path named test, and disabling a device, still page at tamper severity.
func TestAuditDeviceTestEntryNeverPages(t *testing.T) {
	lone := schema.Event{Time: t0, Source: schema.SourceVault, ID: "boot", Action: "vault:update", Resource: "sys/audit/test",
		Mount: "sys/", Namespace: "root", PrincipalType: schema.PrincipalTypeAnonymous, Outcome: schema.OutcomeSuccess}
	enable := vev("en", time.Minute, "ops", "10.0.0.9", "update", "sys/audit/test")
	enable.TokenHMAC, enable.Policies = "hmac-sha256:tok", []string{"admin"}
	disable := vev("dis", 2*time.Hour, "ops2", "10.0.0.9", "delete", "sys/audit/file")
	disable.TokenHMAC = "hmac-sha256:tok2"
	for _, learn := range []time.Time{{}, t0.Add(-time.Hour)} {
		fs, _ := run(t, testConfig(learn), []schema.Event{lone})
		if len(fs) != 0 {
			t.Fatalf("learn_until %v: the audit device's test entry raised %+v", learn, fs)
		}
		fs, _ = run(t, testConfig(learn), []schema.Event{lone, enable, disable})
		var ids []string
		for _, f := range fs {
			if f.Detector != schema.DetectorPrivilegedUse || f.Severity != schema.SeverityCritical || f.Attributes["kind"] != "audit_tampering" {
				t.Errorf("unexpected finding %s %s %s", f.Detector, f.Severity, f.Summary)
			}
			ids = append(ids, f.EventIDs...)
		}
		if len(fs) != 2 || !contains(ids, "en") || !contains(ids, "dis") {
			t.Errorf("learn_until %v: want the enable at sys/audit/test with a token and the disable to page, got %d findings (%v)", learn, len(fs), ids)
		}
		if contains(ids, "boot") {
			t.Errorf("the test entry is evidence of a finding")
		}
	}
}
