// Package notify owns what every alert output shares: the Alert an output
// is asked to deliver, the error types an output returns and the one status
// classifier that turns them into retry decisions and bounded metric
// reasons, the one retry loop (exponential backoff with jitter, honouring
// Retry-After), the injectable clock, and the bounding of
// attacker-controlled field lengths.
//
// Outputs (alert/slack, alert/hec, alert/syslog, alert/webhook,
// alert/kafka) make exactly one delivery attempt per call and return an
// error; the router in package alert wraps them in Retry and counts
// outcomes by Classify.
package notify

import (
	"time"

	"auditwatch/schema"
)

// Alert is one delivery request for a finding. Repeats of one dedupe key
// inside the router's group window arrive as updates: Update is true and
// Repeat counts the findings of the group so far (the first is 1).
type Alert struct {
	Finding schema.Finding `json:"finding"`
	// Key is the incident the router grouped the finding under (threads
	// and correlation follow it); empty means the finding's dedupe key.
	Key string `json:"key,omitempty"`
	// Update is false for the first alert of a group and true for the
	// repeats that follow within the group window.
	Update bool `json:"update,omitempty"`
	// Repeat is the 1-based position of this finding in its group.
	Repeat int `json:"repeat"`
	// GroupCount is the sum of Finding.Count over the group so far.
	GroupCount int `json:"group_count"`
	// GroupStart is when the group's first alert was raised (router clock).
	GroupStart time.Time `json:"group_start"`
}

// ThreadKey is the key outputs thread or correlate a group by.
func (a Alert) ThreadKey() string {
	if a.Key != "" {
		return a.Key
	}
	if a.Finding.DedupeKey != "" {
		return a.Finding.DedupeKey
	}
	return a.Finding.ID
}
