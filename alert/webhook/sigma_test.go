package webhook

import (
	"testing"

	"auditwatch/alert/notify"
	"auditwatch/schema"
)

// A Sigma finding's OCSF analytic is the rule (title, id, author) and its
// ATT&CK techniques are finding_info.attacks.
func TestFindingOCSFSigmaRule(t *testing.T) {
	f := schema.Finding{ID: "x", Detector: schema.DetectorSigma, Severity: schema.SeverityHigh,
		Attributes: map[string]string{"rule_title": "KMS key disabled", "rule_id": "r1", "author": "Jane Doe", "techniques": "T1485,T1486"}}
	fi := Finding(notify.Alert{Finding: f})["finding_info"].(map[string]any)
	an := fi["analytic"].(map[string]any)
	if an["name"] != "KMS key disabled" || an["uid"] != "r1" || an["desc"] != "author: Jane Doe" {
		t.Errorf("analytic %v", an)
	}
	att := fi["attacks"].([]map[string]any)
	if len(att) != 2 || att[1]["technique"].(map[string]any)["uid"] != "T1486" {
		t.Errorf("attacks %v", att)
	}
}
