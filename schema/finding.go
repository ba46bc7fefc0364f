package schema

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"
)

// Detector names.
const (
	DetectorUnexpectedIP      = "unexpected_ip"
	DetectorFirstTimeAccess   = "first_time_access"
	DetectorAuthFailureSpike  = "auth_failure_spike"
	DetectorPrivilegedUse     = "privileged_use"
	DetectorAccessVolumeSpike = "access_volume_spike"
	// DetectorSecretEnumeration: one principal listing or describing many
	// distinct paths (low severity; lists are not secret access).
	DetectorSecretEnumeration = "secret_enumeration"
)

// DetectorSigma is the detector of findings raised by Sigma rules (package
// sigma); its findings carry the rule in Attributes (rule_id, rule_title,
// author, license, references, tags, techniques).
const DetectorSigma = "sigma"

// Detectors beside the learned ones: decoy secrets (honeytoken),
// CloudTrail digest validation (trail_integrity) and the pipeline's own
// health (source_silent, pipeline_blind).
const (
	DetectorHoneytoken     = "honeytoken"
	DetectorTrailIntegrity = "trail_integrity"
	DetectorSourceSilent   = "source_silent"
	DetectorPipelineBlind  = "pipeline_blind"
)

// WatchDetectors lists the detectors beside the learned ones.
var WatchDetectors = []string{DetectorHoneytoken, DetectorTrailIntegrity, DetectorSourceSilent, DetectorPipelineBlind}

// Detectors lists every built-in detector name, in a stable order.
var Detectors = []string{
	DetectorUnexpectedIP,
	DetectorFirstTimeAccess,
	DetectorAuthFailureSpike,
	DetectorPrivilegedUse,
	DetectorAccessVolumeSpike,
	DetectorSecretEnumeration,
}

// Detectors beside the built-in five (credential linking, network
// context).
const (
	DetectorCredentialExfiltration = "credential_exfiltration"
	DetectorCredentialAfterLease   = "credential_after_lease"
	DetectorCredentialMisuse       = "credential_misuse"
	DetectorNewLocation            = "new_location"
	DetectorImpossibleTravel       = "impossible_travel"
)

// OtherDetectors lists every detector name that is not one of the
// built-in five (which the generator plans anomalies for): routes may
// name them too. Packages with detectors of their own add theirs here.
var OtherDetectors = append([]string{
	DetectorSigma,
	DetectorCredentialExfiltration,
	DetectorCredentialAfterLease,
	DetectorCredentialMisuse,
	DetectorNewLocation,
	DetectorImpossibleTravel,
}, WatchDetectors...)

// KnownDetector reports whether name is a detector auditwatch raises.
func KnownDetector(name string) bool {
	for _, l := range [][]string{Detectors, OtherDetectors} {
		for _, d := range l {
			if d == name {
				return true
			}
		}
	}
	return false
}

// Severity of a Finding. Severities are ordered: Low < Medium < High < Critical.
type Severity string

const (
	SeverityInfo     Severity = "info"
	SeverityLow      Severity = "low"
	SeverityMedium   Severity = "medium"
	SeverityHigh     Severity = "high"
	SeverityCritical Severity = "critical"
)

// Rank orders severities; unknown severities rank below info.
func (s Severity) Rank() int {
	switch s {
	case SeverityInfo:
		return 1
	case SeverityLow:
		return 2
	case SeverityMedium:
		return 3
	case SeverityHigh:
		return 4
	case SeverityCritical:
		return 5
	}
	return 0
}

// ParseSeverity validates a severity name.
func ParseSeverity(s string) (Severity, error) {
	sev := Severity(s)
	if sev.Rank() == 0 {
		return "", fmt.Errorf("unknown severity %q (want info, low, medium, high or critical)", s)
	}
	return sev, nil
}

// Finding is one anomaly raised by a detector.
//
// ID is deterministic: the same evidence always gives the same ID, so a
// replay or a restart never creates a second alert. A Finding that updates
// an earlier one (a burst that keeps growing) keeps the DedupeKey of the
// first and carries a higher Count and Revision.
type Finding struct {
	ID        string    `json:"id"`
	Detector  string    `json:"detector"`
	Severity  Severity  `json:"severity"`
	Time      time.Time `json:"time"` // event time of the triggering event
	Principal string    `json:"principal"`
	// PrincipalName is a human name for Principal when the log has one.
	PrincipalName string `json:"principal_name,omitempty"`
	Resource      string `json:"resource"`
	SourceIP      string `json:"source_ip"`
	Source        string `json:"source"`
	Account       string `json:"account,omitempty"`
	// Count is the number of events behind the finding.
	Count int `json:"count"`
	// EventIDs is the evidence (bounded; the first events of a burst).
	EventIDs []string `json:"event_ids"`
	Summary  string   `json:"summary"`
	Reason   string   `json:"reason"`
	// DedupeKey groups updates of one incident (e.g. one burst); alert
	// routing threads and groups by it.
	DedupeKey string `json:"dedupe_key"`
	// Revision is 0 for the first finding of a DedupeKey and grows with each update.
	Revision int `json:"revision,omitempty"`
	// FirstTime and LastTime span the evidence in event time.
	FirstTime time.Time `json:"first_time"`
	LastTime  time.Time `json:"last_time"`
	// Late is true when the triggering event arrived later than the allowed lateness.
	Late bool `json:"late,omitempty"`
	// Attributes holds detector-specific detail (bounded, small).
	Attributes map[string]string `json:"attributes,omitempty"`
	// IncidentID joins the findings of one attack (set by the correlation
	// stage between detection and delivery): findings sharing a principal,
	// an address or a secret within the correlation window. Every output
	// and the store see the same id; alerts thread by it.
	IncidentID string `json:"incident_id,omitempty"`
}

// MakeID derives a deterministic id from a detector name and the parts of
// its evidence. Parts are length-prefixed so that ("ab","c") and ("a","bc")
// differ.
func MakeID(detector string, parts ...string) string {
	h := sha256.New()
	fmt.Fprintf(h, "%d:%s", len(detector), detector)
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s", len(p), p)
	}
	sum := h.Sum(nil)
	return hex.EncodeToString(sum[:16])
}
