package sigma

import (
	"cmp"
	"encoding/json"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"auditwatch/ingest/cloudtrail"
	"auditwatch/internal/testenv"
	"auditwatch/schema"
)

func sameRules(a, b []Hit) bool {
	return slices.EqualFunc(a, b, func(x, y Hit) bool { return x == y })
}

// TestBareHitsAgree: replay's path, where a record is kept only when
// Wants says so and the other hits travel by the event's identity, raises
// the same findings, in the same order, as evaluating every event's
// original record; and most hits of generated traffic travel without
// their record.
func TestBareHitsAgree(t *testing.T) {
	set := markedSet(t) // with a frequent rule: many hits travel without their record
	lines := benchRecords(t, 8000)
	for _, r := range set.single {
		for _, want := range []bool{true, false} {
			b, _ := json.Marshal(buildRecord(t, r, want))
			lines = append(lines, b)
		}
	}
	evs := events(t, lines)
	// a record read twice (two inputs holding it) is pending twice
	evs = append(evs, evs[len(evs)/2:len(evs)/2+500]...)
	var p Parser
	run := func(wants bool) (fs []schema.Finding, bare, kept, marked int) {
		e := NewEvaluator(set)
		e.corr.Cooldown, e.corr.MaxGroups = 30*time.Minute, 100000
		e.corr.Now = func() time.Time { return time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC) }
		in := make([]schema.Event, len(evs))
		for i, ev := range evs {
			in[i] = ev
			if !wants {
				continue
			}
			// all read before any is evaluated, as replay's buffers do
			hits, _, err := set.MatchEvent(&ev, &p, nil)
			if err != nil {
				t.Fatal(err)
			}
			keep := set.Wants(&ev, ev.Raw)
			// the event carries what Wants wrote on it, as the reader's do
			in[i].Mark = ev.Mark
			if ev.Mark.Owner != 0 {
				marked++
			}
			if !keep {
				in[i].Raw = nil
				if len(hits) > 0 {
					bare++
				}
			} else {
				kept++
			}
		}
		for i := range in {
			fs = e.Process(&in[i], fs)
		}
		return fs, bare, kept, marked
	}
	want, _, _, _ := run(false)
	a, _ := json.Marshal(want)
	if len(want) < 50 {
		t.Fatalf("only %d findings: the test exercises little", len(want))
	}
	// with the hits written on the events (marks), then without (every
	// hit let go is remembered by the event's identity)
	saved := set.marks
	for _, withMarks := range []bool{true, false} {
		if !withMarks {
			set.marks = marks{}
		}
		got, bare, kept, marked := run(true)
		if set.bare.pending() != 0 {
			t.Errorf("%d identities still pending after every event was evaluated", set.bare.pending())
		}
		b, _ := json.Marshal(got)
		if string(a) != string(b) {
			t.Fatalf("marks %v: findings differ: %d with every record, %d with Wants", withMarks, len(want), len(got))
		}
		if bare == 0 || kept == 0 || (marked == 0) == withMarks {
			t.Fatalf("marks %v: %d events without their record (%d with their hits written on them), %d kept: every path must be exercised", withMarks, bare, marked, kept)
		}
		t.Logf("marks %v: %d findings; %d records kept, %d with hits let go (%d of them marked)", withMarks, len(want), kept, bare, marked)
	}
	set.marks = saved
}

// TestBareSkipsCredentialCalls: the reader keeps the record of every STS
// call that issues credentials whatever Wants says; such a record must
// not also be remembered by identity (it would be evaluated twice).
func TestBareSkipsCredentialCalls(t *testing.T) {
	set, err := Load([]string{filepath.Join(testenv.RepoRoot(t), "rules")}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"sts:AssumeRole", "sts:AssumeRoleWithSAML", "sts:AssumeRoleWithWebIdentity", "sts:GetFederationToken", "sts:GetSessionToken", "sts:GetCallerIdentity", "s3:GetObject"} {
		ev := schema.Event{Source: schema.SourceCloudTrail, Action: a, Outcome: schema.OutcomeSuccess, ID: "x", Time: time.Unix(1, 0)}
		if cloudtrail.IssuesCredentials(&ev) && set.bareOK(&ev, nil) {
			t.Errorf("%s: the reader keeps its record, but it would be remembered without it", a)
		}
		if a == "s3:GetObject" && !set.bareOK(&ev, nil) {
			t.Errorf("%s: an ordinary call is always kept", a)
		}
	}
	for _, ev := range []schema.Event{
		{Source: schema.SourceVault, ID: "x", Time: time.Unix(1, 0), Action: "vault:read"},
		{Source: schema.SourceCloudTrail, Time: time.Unix(1, 0), Action: "s3:GetObject"},
		{Source: schema.SourceCloudTrail, ID: "x", Action: "s3:GetObject"},
	} {
		if set.bareOK(&ev, nil) {
			t.Errorf("%+v: needs its record (Vault pairing, no id, no time)", ev)
		}
	}
}

// TestBareIdentityInFull: records under one key (the same id and time)
// share an entry only when their whole identity and hits agree; a record
// of another identity under that key keeps its record, and an event of
// another identity does not take the entry.
func TestBareIdentityInFull(t *testing.T) {
	m := newBareMemo()
	r1, r2 := &Rule{Title: "a"}, &Rule{Title: "b"}
	ev := schema.Event{Source: schema.SourceCloudTrail, ID: "e1", Time: time.Unix(5, 0), Action: "s3:GetObject", Resource: "b/k", Account: "1", SourceIPRaw: "10.0.0.1"}
	hits := []Hit{{Rule: r1, Standalone: true}}
	for i := 0; i < 2; i++ {
		if !m.put(&ev, hits) {
			t.Fatalf("put %d: the same record read twice is not remembered", i)
		}
	}
	if m.put(&ev, []Hit{{Rule: r2, Standalone: true}}) {
		t.Fatal("a pending identity took other hits")
	}
	for _, other := range []schema.Event{
		{Action: "s3:PutObject"}, {Resource: "b/other"}, {Account: "2"}, {SourceIPRaw: "10.0.0.2"},
	} {
		o := ev
		o.Action = cmp.Or(other.Action, ev.Action)
		o.Resource = cmp.Or(other.Resource, ev.Resource)
		o.Account = cmp.Or(other.Account, ev.Account)
		o.SourceIPRaw = cmp.Or(other.SourceIPRaw, ev.SourceIPRaw)
		if m.put(&o, hits) {
			t.Errorf("%+v: shares the entry of another identity under the same id and time", other)
		}
		if got, ok := m.take(&o, nil); ok {
			t.Errorf("%+v: took another identity's hits %v", other, got)
		}
	}
	for i := 0; i < 2; i++ {
		got, ok := m.take(&ev, nil)
		if !ok || len(got) != 1 || got[0].Rule != r1 {
			t.Fatalf("take %d: %v %v", i, got, ok)
		}
	}
	if _, ok := m.take(&ev, nil); ok || m.pending() != 0 {
		t.Fatalf("an identity taken more often than read (%d entries left)", m.pending())
	}
}
