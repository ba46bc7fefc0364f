package sigma

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"auditwatch/ingest"
	"auditwatch/internal/testenv"
	"auditwatch/schema"
)

// markedSet is the pack of rules/, SigmaHQ's CloudTrail rules when
// ../shared is there, and a frequent single-event rule of the test's own,
// so that many hits are marked (or travel without their record) on a clone
// without ../shared too (SigmaHQ's AssumeRole rule does that when the
// corpus is present).
func markedSet(t *testing.T) *Set {
	t.Helper()
	own := filepath.Join(t.TempDir(), "assumed_role_calls.yml")
	if err := os.WriteFile(own, []byte(`title: Call made by an assumed role (test)
id: 7d0e3c52-4f0a-4a55-9f38-2b1b8c6e0a11
status: test
level: low
author: auditwatch tests
logsource: {product: aws, service: cloudtrail}
detection:
  selection:
    userIdentity.type: AssumedRole
  condition: selection
`), 0o600); err != nil {
		t.Fatal(err)
	}
	paths := []string{filepath.Join(testenv.RepoRoot(t), "rules"), own}
	if dir, ok := testenv.LookupSharedTestdata(t); ok {
		paths = append(paths, filepath.Join(dir, "sigma", "cloudtrail"))
	}
	s, err := Load(paths, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestMarksRoundTrip: hits written as a mark are read back exactly, and
// hits a mark cannot give back exactly are refused.
func TestMarksRoundTrip(t *testing.T) {
	s := markedSet(t)
	m := &s.marks
	if len(m.hits) < 2 {
		t.Fatalf("%d rules may be marked: the test exercises nothing", len(m.hits))
	}
	for _, h := range m.hits {
		if sourceOf(h.Rule.LogSource) != srcCloudTrail || len(s.feeds[h.Rule]) > 0 || !h.Standalone {
			t.Fatalf("%s: marked, but not a standalone CloudTrail rule that feeds nothing", h.Rule.Title)
		}
	}
	var none marks
	for _, r := range s.single {
		if m.has(r) && len(s.feeds[r]) > 0 {
			t.Errorf("%s: has a bit, and feeds a correlation", r.Title)
		}
		if none.has(r) {
			t.Errorf("%s: has a bit in empty marks", r.Title)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		var hits []Hit
		for _, h := range m.hits {
			if rng.IntN(4) == 0 {
				hits = append(hits, h)
			}
		}
		b, ok := m.encode(hits)
		if len(hits) == 0 {
			if ok {
				t.Fatal("no hits encoded as a mark")
			}
			continue
		}
		if !ok {
			t.Fatalf("%d hits in load order not encoded", len(hits))
		}
		got, ok := m.decode(schema.Mark{Owner: m.owner, Bits: b}, []Hit{{}})
		if !ok || !sameRules(got[1:], hits) || got[0] != (Hit{}) {
			t.Fatalf("round trip: %v → %v", hits, got)
		}
	}
	a, b := m.hits[0], m.hits[1]
	flipped := a
	flipped.Standalone = false
	other := markedSet(t)
	refuse := map[string][]Hit{
		"out of load order": {b, a},
		"twice":             {a, a},
		"standalone flag":   {flipped},
		"another set's":     {other.marks.hits[0]},
	}
	for _, r := range s.single {
		if len(s.feeds[r]) > 0 {
			refuse["feeds a correlation"] = []Hit{{Rule: r}}
			break
		}
	}
	for _, r := range s.single {
		if sourceOf(r.LogSource) != srcCloudTrail {
			refuse["not CloudTrail"] = []Hit{{Rule: r, Standalone: true}}
			break
		}
	}
	if len(refuse) < 6 {
		t.Fatalf("only %d refusals built", len(refuse))
	}
	for what, hits := range refuse {
		if _, ok := m.encode(hits); ok {
			t.Errorf("%s: encoded", what)
		}
	}
	bits, _ := m.encode([]Hit{a})
	for what, mk := range map[string]schema.Mark{
		"none":             {},
		"no bits":          {Owner: m.owner},
		"another set's":    {Owner: other.marks.owner, Bits: bits},
		"beyond the table": {Owner: m.owner, Bits: 1 << 63},
	} {
		if len(m.hits) == 64 && what == "beyond the table" {
			continue
		}
		if got, ok := m.decode(mk, nil); ok || len(got) != 0 {
			t.Errorf("%s: decoded %v", what, got)
		}
	}
}

// TestReaderCarriesMarks: replay's way end to end, where ingest.Reader
// asks Wants (or a Wanter) about each record and hands on the event with the mark it
// wrote, raises the same findings as evaluating every event's record;
// records sharing one id (matching and not) take no hits of each other.
func TestReaderCarriesMarks(t *testing.T) {
	s := markedSet(t)
	lines := benchRecords(t, 8000)
	for _, r := range s.single {
		for _, want := range []bool{true, false} {
			rec := buildRecord(t, r, want)
			b, _ := json.Marshal(rec)
			lines = append(lines, b)
			// the same record again under one shared id: a hit and a
			// miss of every rule carry that id
			rec["eventID"] = "shared-id"
			b, _ = json.Marshal(rec)
			lines = append(lines, b)
		}
	}
	// records read twice
	lines = append(lines, lines[len(lines)/3:len(lines)/3+300]...)
	read := func(want func(*schema.Event, []byte) bool) []schema.Event {
		opts := ingest.DefaultOptions()
		opts.KeepRaw = true
		// (built records without a time get this one, in both reads)
		opts.Now = func() time.Time { return time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC) }
		opts.WantRaw = want
		r := ingest.NewReader(bytes.NewReader(append(bytes.Join(lines, []byte("\n")), '\n')), "test", opts)
		var out []schema.Event
		for {
			ev, err := r.Next()
			if err == io.EOF {
				return out
			}
			if err == nil {
				out = append(out, ev)
			}
		}
	}
	eval := func(evs []schema.Event) []schema.Finding {
		e := NewEvaluator(s)
		e.corr.Cooldown, e.corr.MaxGroups = 30*time.Minute, 100000
		e.corr.Now = func() time.Time { return time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC) }
		var fs []schema.Finding
		for i := range evs {
			fs = e.Process(&evs[i], fs)
		}
		return fs
	}
	all := read(nil)
	want := eval(all)
	a, _ := json.Marshal(want)
	// replay's way (a Parser of the reader's own), and Wants' shared one
	for name, wantRaw := range map[string]func(*schema.Event, []byte) bool{"Wanter": s.Wanter(), "Wants": s.Wants} {
		wanted := read(wantRaw)
		if len(all) != len(wanted) {
			t.Fatalf("%s: %d events read keeping every record, %d with it", name, len(all), len(wanted))
		}
		marked, kept := 0, 0
		for i, ev := range wanted {
			if all[i].Mark != (schema.Mark{}) {
				t.Fatalf("event %d marked without Wants", i)
			}
			if ev.Mark != (schema.Mark{}) {
				marked++
				if len(ev.Raw) != 0 {
					t.Errorf("%s: event %d: marked, and its record kept too", name, i)
				}
			}
			if len(ev.Raw) != 0 {
				kept++
			}
		}
		got := eval(wanted)
		b, _ := json.Marshal(got)
		if string(a) != string(b) {
			for i := range min(len(want), len(got)) {
				if x, y := fmt.Sprint(want[i]), fmt.Sprint(got[i]); x != y {
					t.Errorf("finding %d:\n%s\n%s", i, x, y)
					break
				}
			}
			t.Fatalf("%s: findings differ: %d with every record, %d with marks", name, len(want), len(got))
		}
		if len(want) < 50 || marked < 1000 || kept == 0 {
			t.Fatalf("%s: %d findings, %d events marked, %d records kept: the test exercises little", name, len(want), marked, kept)
		}
		if s.bare.pending() != 0 {
			t.Errorf("%s: %d identities still pending", name, s.bare.pending())
		}
		t.Logf("%s: %d events, %d findings, %d marked, %d records kept", name, len(all), len(want), marked, kept)
	}
}
