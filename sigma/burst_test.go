package sigma

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"auditwatch/schema"
)

const burstRule = `title: delete
logsource: {product: aws, service: cloudtrail}
detection:
  sel: {eventName: DeleteSecret}
  condition: sel
level: high
`

// burstEvents: DeleteSecret calls of three principals, with pauses
// longer than the cool-down now and then.
func burstEvents(n int, seed uint64) []schema.Event {
	r := rand.New(rand.NewPCG(seed, 2))
	t0 := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	var out []schema.Event
	for i := 0; i < n; i++ {
		gap := time.Duration(r.IntN(120)) * time.Second
		if r.IntN(40) == 0 {
			gap = 2 * time.Hour
		}
		t0 = t0.Add(gap)
		who := fmt.Sprintf("arn:aws:iam::1:user/u%d", r.IntN(3))
		raw := fmt.Sprintf(`{"eventID":"e%d","eventTime":%q,"eventSource":"secretsmanager.amazonaws.com","eventName":"DeleteSecret","userIdentity":{"arn":%q}}`, i, t0.Format(time.RFC3339), who)
		out = append(out, schema.Event{Time: t0, Source: schema.SourceCloudTrail, ID: fmt.Sprintf("e%d", i), Principal: who, Action: "secretsmanager:DeleteSecret", Raw: []byte(raw)})
	}
	return out
}

func burstSet(t *testing.T) *Set {
	t.Helper()
	rules, probs := ParseFile("b.yml", []byte(burstRule), Options{})
	if len(probs) > 0 {
		t.Fatal(probs[0])
	}
	set, err := Build(rules, nil)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// Repeated matches of a rule by one principal within the cool-down join
// the first finding: revisions when the count doubles, the same dedupe
// key, a new burst after a pause longer than the cool-down; without a
// cool-down every match is a finding.
func TestRepeatedMatchesGroup(t *testing.T) {
	set := burstSet(t)
	evs := burstEvents(2000, 1)
	every := NewEvaluator(set)
	var all []schema.Finding
	for i := range evs {
		all = append(all, every.Process(&evs[i], nil)...)
	}
	if len(all) != len(evs) {
		t.Fatalf("cool-down 0: %d findings for %d matches", len(all), len(evs))
	}
	ev := NewEvaluator(set)
	ev.corr.Cooldown = 30 * time.Minute
	var fs []schema.Finding
	for i := range evs {
		fs = append(fs, ev.Process(&evs[i], nil)...)
	}
	if len(fs) == 0 || len(fs) > len(evs)/3 {
		t.Fatalf("%d findings for %d matches", len(fs), len(evs))
	}
	// per dedupe key: revisions 0, 1, 2 … with counts 1, 2, 4 …, one principal
	type st struct {
		rev, count int
		who        string
	}
	open := map[string]*st{}
	total := 0
	for _, f := range fs {
		s := open[f.DedupeKey]
		if s == nil {
			if f.Revision != 0 || f.Count != 1 || f.ID != f.DedupeKey {
				t.Fatalf("first finding of a burst: revision %d count %d", f.Revision, f.Count)
			}
			open[f.DedupeKey] = &st{count: 1, who: f.Principal}
			continue
		}
		if f.Revision != s.rev+1 || f.Count != 2*s.count || f.Principal != s.who {
			t.Fatalf("revision %d count %d %s after revision %d count %d %s", f.Revision, f.Count, f.Principal, s.rev, s.count, s.who)
		}
		if len(f.EventIDs) == 0 || len(f.EventIDs) > maxEvidence || f.LastTime.Before(f.FirstTime) {
			t.Fatalf("evidence %v", f.EventIDs)
		}
		s.rev, s.count = f.Revision, f.Count
		total++
	}
	if len(open) < 6 || total == 0 {
		t.Errorf("%d bursts, %d revisions: the test exercises little", len(open), total)
	}
}

// Bursts are restart-safe: snapshotted and restored at random points,
// with a stretch of events delivered again, the evaluator raises the same
// findings as straight through.
func TestRepeatedMatchesRestart(t *testing.T) {
	set := burstSet(t)
	evs := burstEvents(1500, 3)
	straight := NewEvaluator(set)
	straight.corr.Cooldown = 30 * time.Minute
	var want []schema.Finding
	for i := range evs {
		want = straight.Process(&evs[i], want)
	}
	r := rand.New(rand.NewPCG(4, 4))
	ev := NewEvaluator(set)
	ev.corr.Cooldown = 30 * time.Minute
	seen := map[string]bool{}
	var got []string
	snap, _ := ev.corr.Snapshot()
	snapAt, restarts := 0, 0
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
			ev = NewEvaluator(set)
			ev.corr.Cooldown = 30 * time.Minute
			if err := ev.corr.Restore(snap); err != nil {
				t.Fatal(err)
			}
			i = max(0, snapAt-r.IntN(3)) - 1
			restarts++
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(ids(want)) {
		t.Errorf("with %d restarts %d findings, straight %d", restarts, len(got), len(want))
	}
	if restarts == 0 || ev.corr.Repeated.Load() == 0 {
		t.Error("no restart or repeat: the test exercises nothing")
	}
}

// A match dated far ahead of the wall clock (a skewed source) does not
// close the open bursts: the next match of a principal within the
// cool-down still joins its burst instead of raising a new finding.
func TestBurstIgnoresSkewedTime(t *testing.T) {
	set := burstSet(t)
	t0 := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	ev := NewEvaluator(set)
	ev.corr.Cooldown = 30 * time.Minute
	ev.corr.Now = func() time.Time { return t0.Add(time.Hour) }
	mk := func(i int, who string, at time.Time) schema.Event {
		raw := fmt.Sprintf(`{"eventID":"e%d","eventTime":%q,"eventSource":"secretsmanager.amazonaws.com","eventName":"DeleteSecret","userIdentity":{"arn":%q}}`, i, at.Format(time.RFC3339), who)
		return schema.Event{Time: at, Source: schema.SourceCloudTrail, ID: fmt.Sprintf("e%d", i), Principal: who, Action: "secretsmanager:DeleteSecret", Raw: []byte(raw)}
	}
	a := mk(1, "arn:aws:iam::1:user/a", t0)
	if fs := ev.Process(&a, nil); len(fs) != 1 {
		t.Fatalf("first match: %d findings", len(fs))
	}
	skewed := mk(2, "arn:aws:iam::1:user/b", t0.Add(365*24*time.Hour))
	if fs := ev.Process(&skewed, nil); len(fs) != 1 {
		t.Fatalf("skewed match: %d findings", len(fs))
	}
	if _, err := ev.corr.Snapshot(); err != nil { // expires bursts
		t.Fatal(err)
	}
	again := mk(3, "arn:aws:iam::1:user/a", t0.Add(time.Minute))
	fs := ev.Process(&again, nil)
	if len(fs) != 1 || fs[0].Revision != 1 || fs[0].Count != 2 {
		t.Fatalf("second match of a's burst after a skewed record: %+v (want one revision 1, count 2)", fs)
	}
}

// With the real clock, a reading is reused only while it settles the
// question: a match within the hour after it is not ahead, one later than
// that reads the clock again, and after clockReuse matches the clock is
// read again in any case.
func TestAheadReusesClock(t *testing.T) {
	c := NewCorrelator(burstSet(t))
	now := time.Now()
	for i := 0; i < 3; i++ {
		if c.ahead(now) || c.ahead(now.Add(-24*time.Hour)) {
			t.Fatal("a match dated now is ahead of the clock")
		}
	}
	first := c.clock
	if first.IsZero() || c.clockUsed != 6 {
		t.Fatalf("clock %v read, used %d times: want one reading for six matches", first, c.clockUsed)
	}
	if !c.ahead(now.Add(2 * maxAhead)) {
		t.Fatal("a match dated two hours ahead is not ahead")
	}
	if c.clockUsed != 1 {
		t.Fatalf("the clock was not read again for a match the last reading called ahead (used %d)", c.clockUsed)
	}
	for i := 1; i < clockReuse; i++ {
		c.ahead(now)
	}
	if c.clockUsed != clockReuse {
		t.Fatalf("used %d times, want %d", c.clockUsed, clockReuse)
	}
	c.ahead(now)
	if c.clockUsed != 1 {
		t.Fatalf("the clock was not read again after %d matches", clockReuse)
	}
}

// A burst's repeat check compares id prints first: ids whose prints agree
// (same length and last eight bytes) but not their text are not repeats,
// and an id delivered again is one, whatever its place in the evidence.
func TestBurstIDPrints(t *testing.T) {
	set := burstSet(t)
	r := set.single[0]
	c := NewCorrelator(set)
	c.Cooldown = time.Hour
	t0 := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	ev := schema.Event{Time: t0, Source: schema.SourceCloudTrail, Principal: "arn:aws:iam::1:user/u", Action: "secretsmanager:DeleteSecret"}
	var ids []string
	for i := range maxEvidence {
		ids = append(ids, fmt.Sprintf("%c-same-suffix", 'a'+i))
	}
	for i, id := range ids {
		if idPrint(id) != idPrint(ids[0]) {
			t.Fatalf("%q and %q: prints differ, the test needs them equal", id, ids[0])
		}
		c.repeat(r, &ev, id, t0.Add(time.Duration(i)*time.Second))
	}
	b := c.bursts[r.Key()+"\x00"+ev.Principal]
	if b == nil || b.Count != maxEvidence || c.Repeated.Load() != 0 {
		t.Fatalf("ids with equal prints: burst %+v, %d counted as repeats", b, c.Repeated.Load())
	}
	for i, id := range []string{ids[0], ids[maxEvidence/2], ids[maxEvidence-1]} {
		c.repeat(r, &ev, id, t0)
		if c.Repeated.Load() != int64(i+1) || b.Count != maxEvidence {
			t.Fatalf("%q delivered again: %d repeats, count %d", id, c.Repeated.Load(), b.Count)
		}
	}
	if idPrint("x") == idPrint("xx") || idPrint("abc-1") == idPrint("abc-2") {
		t.Error("prints of ids that differ in length or last byte agree")
	}
}
