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
	Finding schema.Finding
	// Update is false for the first alert of a group and true for the
	// repeats that follow within the group window.
	Update bool
	// Repeat is the 1-based position of this finding in its group.
	Repeat int
	// GroupCount is the sum of Finding.Count over the group so far.
	GroupCount int
	// GroupStart is when the group's first alert was raised (router clock).
	GroupStart time.Time
}

// ThreadKey is the key outputs thread or correlate a group by.
func (a Alert) ThreadKey() string {
	if a.Finding.DedupeKey != "" {
		return a.Finding.DedupeKey
	}
	return a.Finding.ID
}
