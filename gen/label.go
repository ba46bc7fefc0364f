package gen

import (
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// Label describes one injected anomaly: which detector should find it and
// the evidence, named as schema.Event names it (Principal is the IAM user or
// role ARN, arn:aws:iam::<account>:root, Vault's auth.entity_id, or "root"
// for the Vault root token; EventIDs are CloudTrail eventIDs or Vault
// request ids).
type Label struct {
	ID       string `json:"id"`
	Detector string `json:"detector"`
	// Kind is the scenario: new_ip, first_time_read, brute_force,
	// denied_burst, root_console_login, stop_logging, delete_trail,
	// root_token, audit_disable, bulk_read.
	Kind   string `json:"kind"`
	Source string `json:"source"`
	// Key says what the detector should key the finding on: "principal" or
	// "source_ip" (a brute force across users from one address).
	Key string `json:"key"`
	// Principal is empty when Key is "source_ip"; Principals then lists the
	// identities the attempts named (as schema.Event.Principal; empty for
	// users that do not exist).
	Principal     string   `json:"principal"`
	PrincipalName string   `json:"principal_name,omitempty"`
	Principals    []string `json:"principals,omitempty"`
	// Users lists the user names the login attempts of a brute force name,
	// as the log shows them (schema.Event.PrincipalName); CloudTrail hides
	// unknown names as HIDDEN_DUE_TO_SECURITY_REASONS.
	Users    []string `json:"users,omitempty"`
	Account  string   `json:"account,omitempty"`
	SourceIP string   `json:"source_ip"`
	// Resource is the first resource touched; Resources lists all of them.
	Resource  string    `json:"resource"`
	Resources []string  `json:"resources,omitempty"`
	EventIDs  []string  `json:"event_ids"`
	Time      time.Time `json:"time"`
	EndTime   time.Time `json:"end_time"`
	// Failed is the number of the events that fail.
	Failed int `json:"failed"`
	// AlsoMatches lists other detectors the anomaly legitimately triggers.
	AlsoMatches []string `json:"also_matches,omitempty"`
	Description string   `json:"description"`
}

// WriteLabels writes labels as JSON lines.
func WriteLabels(w io.Writer, labels []Label) error {
	enc := json.NewEncoder(w)
	for i := range labels {
		if err := enc.Encode(&labels[i]); err != nil {
			return fmt.Errorf("write label %s: %w", labels[i].ID, err)
		}
	}
	return nil
}

// ReadLabels reads labels written by WriteLabels.
func ReadLabels(r io.Reader) ([]Label, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var out []Label
	for dec.More() {
		var l Label
		if err := dec.Decode(&l); err != nil {
			return out, fmt.Errorf("read label %d: %w", len(out)+1, err)
		}
		out = append(out, l)
	}
	return out, nil
}
