package sigma

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"auditwatch/schema"
)

// semRules are one correlation of each type, each over its own users, so
// the sequences below exercise one threshold and one window each.
const semRules = `title: read
name: read
logsource: {product: aws, service: cloudtrail}
detection:
  sel: {eventName: GetSecretValue}
  condition: sel
---
title: delete
name: delete
logsource: {product: aws, service: cloudtrail}
detection:
  sel: {eventName: DeleteSecret}
  condition: sel
---
title: three reads
name: three_reads
correlation: {type: event_count, rules: [read], group-by: [userIdentity.arn], timespan: 10m, condition: {gte: 3}}
---
title: two secrets
correlation: {type: value_count, rules: [read], group-by: [userIdentity.arn], timespan: 10m, condition: {gte: 2, field: requestParameters.secretId}}
---
title: read and delete
correlation: {type: temporal, rules: [read, delete], group-by: [userIdentity.arn], timespan: 5m}
---
title: read then delete
correlation: {type: temporal_ordered, rules: [read, delete], group-by: [who], timespan: 5m,
  aliases: {who: {read: userIdentity.arn, delete: requestParameters.deletedBy}}}
---
title: two bursts
correlation: {type: event_count, rules: [three_reads], group-by: [userIdentity.arn], timespan: 1h, condition: {gte: 2}}
generate: true
`

// TestCorrelationSemantics checks each correlation type on hand-made
// sequences: the finding comes on the event that completes the condition
// (never before, never for a sequence that misses the threshold, the
// window or the order), per group-by value, with aliases mapping
// different fields of the inputs to one group, and a correlation over a
// correlation whose generate: true keeps the inner one's findings (the
// inputs of a correlation raise none of their own otherwise).
func TestCorrelationSemantics(t *testing.T) {
	rules, probs := ParseFile("sem.yml", []byte(semRules), Options{})
	if len(probs) > 0 {
		t.Fatal(probs[0])
	}
	set, err := Build(rules, nil)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	type step struct {
		at     time.Duration
		name   string // GetSecretValue or DeleteSecret
		user   string
		secret string
		by     string // requestParameters.deletedBy
		want   []string
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"event_count fires on the third read within 10m", []step{
			{0, "GetSecretValue", "u1", "s1", "", nil},
			{time.Minute, "GetSecretValue", "u1", "s1", "", nil},
			{2 * time.Minute, "GetSecretValue", "u1", "s1", "", []string{"three reads"}},
		}},
		{"event_count counts per group", []step{
			{0, "GetSecretValue", "u1", "s1", "", nil},
			{time.Minute, "GetSecretValue", "u2", "s1", "", nil},
			{2 * time.Minute, "GetSecretValue", "u3", "s1", "", nil},
		}},
		{"event_count: three reads not within 10m", []step{
			{0, "GetSecretValue", "u1", "s1", "", nil},
			{6 * time.Minute, "GetSecretValue", "u1", "s1", "", nil},
			{11 * time.Minute, "GetSecretValue", "u1", "s1", "", nil},
		}},
		{"value_count fires on the second distinct secret", []step{
			{0, "GetSecretValue", "u1", "s1", "", nil},
			{time.Minute, "GetSecretValue", "u1", "s2", "", []string{"two secrets"}},
		}},
		{"value_count: one secret read twice", []step{
			{0, "GetSecretValue", "u1", "s1", "", nil},
			{time.Minute, "GetSecretValue", "u1", "s1", "", nil},
		}},
		{"value_count: second secret after the window", []step{
			{0, "GetSecretValue", "u1", "s1", "", nil},
			{11 * time.Minute, "GetSecretValue", "u1", "s2", "", nil},
		}},
		{"temporal: both rules in any order", []step{
			{0, "DeleteSecret", "u1", "s1", "", nil},
			{time.Minute, "GetSecretValue", "u1", "s1", "", []string{"read and delete"}},
		}},
		{"temporal: not within 5m", []step{
			{0, "GetSecretValue", "u1", "s1", "", nil},
			{6 * time.Minute, "DeleteSecret", "u1", "s1", "", nil},
		}},
		{"temporal: different users", []step{
			{0, "GetSecretValue", "u1", "s1", "", nil},
			{time.Minute, "DeleteSecret", "u2", "s1", "", nil},
		}},
		{"temporal_ordered: read then delete, grouped through aliases", []step{
			{0, "GetSecretValue", "u1", "s1", "", nil},
			{time.Minute, "DeleteSecret", "admin", "s1", "arn:aws:iam::1:user/u1", []string{"read then delete"}},
		}},
		{"temporal_ordered: delete before read", []step{
			{0, "DeleteSecret", "admin", "s1", "arn:aws:iam::1:user/u1", nil},
			{time.Minute, "GetSecretValue", "u1", "s1", "", nil},
		}},
		{"temporal_ordered: alias value of another user", []step{
			{0, "GetSecretValue", "u1", "s1", "", nil},
			{time.Minute, "DeleteSecret", "admin", "s1", "arn:aws:iam::1:user/u2", nil},
		}},
		{"a correlation over a correlation: two bursts within 1h", []step{
			{0, "GetSecretValue", "u1", "s1", "", nil},
			{time.Minute, "GetSecretValue", "u1", "s1", "", nil},
			{2 * time.Minute, "GetSecretValue", "u1", "s1", "", []string{"three reads"}},
			{30 * time.Minute, "GetSecretValue", "u1", "s1", "", nil},
			{31 * time.Minute, "GetSecretValue", "u1", "s1", "", nil},
			{32 * time.Minute, "GetSecretValue", "u1", "s1", "", []string{"three reads", "two bursts"}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := NewEvaluator(set)
			for i, s := range tt.steps {
				at := t0.Add(s.at)
				raw := fmt.Sprintf(`{"eventID":"e%d","eventTime":%q,"eventSource":"secretsmanager.amazonaws.com","eventName":%q,"userIdentity":{"arn":"arn:aws:iam::1:user/%s"},"requestParameters":{"secretId":%q,"deletedBy":%q}}`,
					i, at.Format(time.RFC3339), s.name, s.user, s.secret, s.by)
				e := schema.Event{Time: at, Source: schema.SourceCloudTrail, ID: fmt.Sprintf("e%d", i), Action: "secretsmanager:" + s.name, Raw: []byte(raw)}
				var got []string
				for _, f := range ev.Process(&e, nil) {
					if f.Detector != schema.DetectorSigma || f.Attributes[AttrCorrType] == "" {
						t.Errorf("step %d: finding of an input rule or another detector: %+v", i, f)
						continue
					}
					got = append(got, f.Attributes[AttrRuleTitle])
				}
				if !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(s.want))) {
					t.Errorf("step %d (%s by %s at +%v): findings %q, want %q", i, s.name, s.user, s.at, got, s.want)
				}
			}
		})
	}
}
