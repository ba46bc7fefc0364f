package slack

import (
	"encoding/json"
	"strings"
	"testing"

	"auditwatch/alert/notify"
	"auditwatch/schema"
)

// A Sigma finding's Slack message shows the rule title, its author and the
// ATT&CK techniques, even with many attributes.
func TestRenderSigmaRule(t *testing.T) {
	attrs := map[string]string{"rule_title": "KMS key disabled", "author": "Jane Doe", "techniques": "T1485", "license": "DRL-1.1"}
	for _, k := range []string{"a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8"} {
		attrs[k] = "v"
	}
	f := schema.Finding{ID: "x", Detector: schema.DetectorSigma, Severity: schema.SeverityHigh, Summary: "s", Attributes: attrs}
	m := render(notify.Alert{Finding: f}, 3000)
	b, _ := json.Marshal(m)
	for _, want := range []string{"KMS key disabled", "Jane Doe", "T1485", "DRL-1.1"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("message lacks %q: %s", want, b)
		}
	}
}
