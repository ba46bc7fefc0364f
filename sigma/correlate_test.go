package sigma

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"auditwatch/schema"
)

const corrRules = `title: read
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
title: many reads
name: many_reads
correlation: {type: event_count, rules: [read], group-by: [userIdentity.arn], timespan: 10m, condition: {gte: 3}}
---
title: many secrets
correlation: {type: value_count, rules: [read], group-by: [userIdentity.arn], timespan: 10m, condition: {gte: 2, field: requestParameters.secretId}}
---
title: read then delete
correlation: {type: temporal_ordered, rules: [read, delete], group-by: [who], timespan: 5m, aliases: {who: {read: userIdentity.arn, delete: userIdentity.arn}}}
---
title: both
correlation: {type: temporal, rules: [read, delete], group-by: [userIdentity.arn], timespan: 5m}
---
title: bursts twice
correlation: {type: event_count, rules: [many_reads], group-by: [userIdentity.arn], timespan: 1h, condition: {gte: 2}, generate: true}
`

func corrEvents(n int, seed uint64) []schema.Event {
	r := rand.New(rand.NewPCG(seed, 1))
	t0 := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	var out []schema.Event
	for i := 0; i < n; i++ {
		t0 = t0.Add(time.Duration(r.IntN(90)) * time.Second)
		name := []string{"GetSecretValue", "GetSecretValue", "DeleteSecret", "ListSecrets"}[r.IntN(4)]
		who := fmt.Sprintf("arn:aws:iam::1:user/u%d", r.IntN(3))
		raw := fmt.Sprintf(`{"eventID":"e%d","eventTime":%q,"eventSource":"secretsmanager.amazonaws.com","eventName":%q,"userIdentity":{"arn":%q},"requestParameters":{"secretId":"s%d"}}`,
			i, t0.Format(time.RFC3339), name, who, r.IntN(4))
		out = append(out, schema.Event{Time: t0, Source: schema.SourceCloudTrail, ID: fmt.Sprintf("e%d", i), Action: "secretsmanager:" + name, Raw: []byte(raw)})
	}
	return out
}

func ids(fs []schema.Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.ID)
	}
	return out
}

// Correlation findings are the same whether the evaluator runs straight
// through, or is snapshotted and restored at every point and then sees a
// stretch of events again (as after a crash between checkpoints): a
// replayed input is not counted twice.
func TestCorrelationRestartEquivalence(t *testing.T) {
	rules, probs := ParseFile("c.yml", []byte(corrRules), Options{})
	if len(probs) > 0 {
		t.Fatal(probs[0])
	}
	set, err := Build(rules, nil)
	if err != nil {
		t.Fatal(err)
	}
	evs := corrEvents(600, 3)
	straight := NewEvaluator(set)
	var want []schema.Finding
	for i := range evs {
		want = straight.Process(&evs[i], want)
	}
	kinds := map[string]int{}
	for _, f := range want {
		kinds[f.Attributes[AttrRuleTitle]]++
	}
	for _, title := range []string{"many reads", "many secrets", "read then delete", "both", "bursts twice"} {
		if kinds[title] == 0 {
			t.Errorf("%q never fired: %v", title, kinds)
		}
	}
	if kinds["read"] != 0 {
		t.Errorf("inputs of correlations raised findings of their own: %v", kinds)
	}
	r := rand.New(rand.NewPCG(9, 9))
	ev := NewEvaluator(set)
	seen := map[string]bool{}
	var got []string
	snapAt := 0
	snap, _ := ev.corr.Snapshot()
	for i := 0; i < len(evs); i++ {
		for _, f := range ev.Process(&evs[i], nil) {
			if !seen[f.ID] {
				seen[f.ID] = true
				got = append(got, f.ID)
			}
		}
		if r.IntN(10) == 0 {
			snap, _ = ev.corr.Snapshot()
			snapAt = i + 1
		}
		if r.IntN(25) == 0 && i > snapAt {
			// crash: restore the last snapshot and replay from a little
			// before it (events the snapshot already holds come again)
			ev = NewEvaluator(set)
			if err := ev.corr.Restore(snap); err != nil {
				t.Fatal(err)
			}
			back := max(0, snapAt-r.IntN(5))
			i = back - 1
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(ids(want)) {
		t.Errorf("with restarts %d findings, straight %d", len(got), len(want))
	}
	if ev.corr.Repeated.Load() == 0 {
		t.Error("no input was repeated: the test exercises nothing")
	}
}

// seenBefore finds an input key among the group's latest 128, by hash and
// then by the key itself: after a restore (keys only), and when hashes
// agree but keys do not.
func TestSeenBefore(t *testing.T) {
	var g groupState
	if g.seenBefore(0, "a") || !g.seenBefore(0, "a") {
		t.Fatal("a key is not remembered")
	}
	if g.seenBefore(1, "a") || !g.seenBefore(1, "a") || g.seenBefore(0, "a:b") {
		t.Fatal("keys of other inputs or ids are taken for a repeat")
	}
	restored := groupState{Seen: append([]string(nil), g.Seen...)}
	if !restored.seenBefore(1, "a") || !restored.seenBefore(0, "a:b") || restored.seenBefore(2, "a") {
		t.Fatalf("after a restore: %v", restored.Seen)
	}
	forged := groupState{Seen: []string{"0:x", "0:y"}, seenH: []uint64{seenHash(0, "z"), seenHash(0, "z")}}
	if forged.seenBefore(0, "z") || !forged.seenBefore(0, "z") {
		t.Fatal("equal hashes settle a repeat without the key")
	}
	for i := 0; i < maxSeen; i++ {
		g.seenBefore(0, fmt.Sprint("k", i))
	}
	if len(g.Seen) != maxSeen || len(g.seenH) != maxSeen || g.seenBefore(0, "a") {
		t.Fatalf("%d keys, %d hashes kept; the oldest must be forgotten", len(g.Seen), len(g.seenH))
	}
}
