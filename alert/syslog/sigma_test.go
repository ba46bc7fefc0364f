package syslog

import (
	"strings"
	"testing"

	"auditwatch/alert/notify"
	"auditwatch/schema"
)

// A Sigma finding's CEF carries the rule title with its author and the
// ATT&CK technique ids in their own fields.
func TestFindingCEFSigmaRule(t *testing.T) {
	f := schema.Finding{ID: "x", Detector: schema.DetectorSigma, Severity: schema.SeverityHigh, Summary: "s",
		Attributes: map[string]string{"rule_title": "KMS key disabled", "author": "Jane Doe", "techniques": "T1485,T1486"}}
	got := FindingCEF(notify.Alert{Finding: f}, "test")
	for _, want := range []string{"flexString1Label=mitreAttackTechniques", "flexString1=T1485,T1486", "flexString2=KMS key disabled (author: Jane Doe)"} {
		if !strings.Contains(got, want) {
			t.Errorf("CEF lacks %q:\n%s", want, got)
		}
	}
}
