package sigma

import (
	"bytes"
	"encoding/json"
	"io"
	"path/filepath"
	"testing"

	"auditwatch/ingest"
	"auditwatch/internal/testenv"
	"auditwatch/schema"
)

// uaRules read only userAgent, in every form a matcher takes it.
const uaRules = `title: ua-eq
logsource: {product: aws, service: cloudtrail}
detection:
  s:
    userAgent: TruffleHog
  condition: s
---
title: ua-contains-all
logsource: {product: aws, service: cloudtrail}
detection:
  s:
    userAgent|contains|all: [kms, tool]
  condition: s
---
title: ua-re
logsource: {product: aws, service: cloudtrail}
detection:
  s:
    userAgent|re|i: '^(aws-cli|boto3)/'
  condition: s
---
title: ua-null
logsource: {product: aws, service: cloudtrail}
detection:
  s:
    userAgent: null
  condition: s
---
title: ua-absent
logsource: {product: aws, service: cloudtrail}
detection:
  s:
    userAgent|exists: false
  condition: s
---
title: ua-not-cased
logsource: {product: aws, service: cloudtrail}
detection:
  s:
    userAgent|cased|startswith: Truffle
  f:
    userAgent|endswith: '/3'
  condition: s and not f
`

// servedSet is the pack, SigmaHQ's rules when ../shared is there, and
// uaRules.
func servedSet(t testing.TB) *Set {
	paths := []string{filepath.Join(testenv.RepoRoot(t), "rules")}
	if dir, ok := testenv.LookupSharedTestdata(t); ok {
		paths = append(paths, filepath.Join(dir, "sigma", "cloudtrail"))
	}
	files, err := Files(paths)
	if err != nil {
		t.Fatal(err)
	}
	res := ParseFiles(files, Options{})
	rules, probs := ParseFile("ua.yml", []byte(uaRules), Options{})
	if len(probs) > 0 || len(res.Invalid) > 0 {
		t.Fatal(probs, res.Invalid)
	}
	s, err := Build(append(res.Rules, rules...), res.Unsupported)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// wanted is what the reader hands Wants: the event it normalized and the
// record it read in place.
type wanted struct {
	ev  schema.Event
	raw []byte
}

// readWanted reads lines as replay does (KeepRaw, WantRaw) and returns
// every call of WantRaw with a record.
func readWanted(t testing.TB, lines [][]byte) []wanted {
	var out []wanted
	opts := ingest.DefaultOptions()
	opts.KeepRaw = true
	opts.WantRaw = func(ev *schema.Event, raw []byte) bool {
		if raw != nil {
			out = append(out, wanted{*ev, append([]byte(nil), raw...)})
		}
		return false
	}
	r := ingest.NewReader(bytes.NewReader(append(bytes.Join(lines, []byte("\n")), '\n')), "test", opts)
	for {
		if _, err := r.Next(); err == io.EOF {
			return out
		}
	}
}

// checkServed: the hits of a record read with the event's user agent
// (Wants' way) are those of the record parsed whole, and a lazy record
// without escapes whose event has a user agent holds exactly that value
// at userAgent. It reports whether the user agent was served.
func checkServed(t *testing.T, s *Set, w wanted) bool {
	t.Helper()
	var p1, p2, p3 Parser
	e := schema.Event{Source: w.ev.Source, Action: w.ev.Action, Resource: w.ev.Resource, UserAgent: w.ev.UserAgent, Raw: w.raw}
	got, _, err1 := s.matchEvent(&e, e.Raw, &p1, nil, true)
	var want []Hit
	rec, err2 := p2.Parse(w.raw, w.ev.Source)
	if err2 == nil {
		want = s.Match(rec, nil)
	}
	if err1 != nil && err2 == nil {
		t.Fatalf("%s: served: %v; parsed whole: fine", w.raw, err1)
	}
	if err1 == nil && !sameRules(got, want) {
		t.Fatalf("%s (user agent %q): hits %v served, %v parsed whole", w.raw, w.ev.UserAgent, got, want)
	}
	if w.ev.Source != schema.SourceCloudTrail || w.ev.UserAgent == "" || bytes.IndexByte(w.raw, '\\') >= 0 {
		return false
	}
	lazy, ok := p3.parseLazy(w.raw, w.ev.Source)
	if !ok {
		t.Fatalf("%s: read in place by the reader, but not lazily", w.raw)
	}
	for _, all := range []bool{false, true} {
		var vals []string
		lazy.each([]string{uaField}, all, func(v string, null bool) bool {
			if null {
				v = "<null>"
			}
			vals = append(vals, v)
			return false
		})
		if len(vals) != 1 || vals[0] != w.ev.UserAgent {
			t.Fatalf("%s: the event's user agent is %q, the record's userAgent %q", w.raw, w.ev.UserAgent, vals)
		}
	}
	return true
}

// TestServedUserAgentAgrees: Wants reads a CloudTrail record's userAgent
// from the event the reader normalized from it. Over generated traffic,
// records built for every rule, and hostile records (a userAgent nested
// elsewhere, duplicated, of another type, null, empty, absent, in another
// letter case, spaced, escaped, non-ASCII, inside an envelope), every
// record the reader hands Wants gives the same hits as parsed whole.
func TestServedUserAgentAgrees(t *testing.T) {
	s := servedSet(t)
	n := 0
	for i := range s.single {
		if s.uaOnly[i] {
			n++
		}
	}
	if n < 6 {
		t.Fatalf("%d rules read only userAgent, want the test's 6 and more", n)
	}
	lines := benchRecords(t, 8000)
	for _, r := range s.single {
		for _, want := range []bool{true, false} {
			b, err := json.Marshal(buildRecord(t, r, want))
			if err != nil {
				t.Fatal(err)
			}
			lines = append(lines, b)
		}
	}
	head := `{"eventVersion":"1.09","eventTime":"2026-01-01T00:00:00Z","eventSource":"sts.amazonaws.com","eventName":"GetCallerIdentity","eventID":"e-`
	for _, body := range []string{
		`1","userIdentity":{"type":"IAMUser","userAgent":"TruffleHog"},"userAgent":"aws-cli/2"`,
		`2","userIdentity":{"type":"IAMUser","userAgent":"aws-cli/2"},"userAgent":"TruffleHog"`,
		`3","userAgent":"TruffleHog","userAgent":"aws-cli/2"`,
		`4","userAgent":"aws-cli/2","userAgent":"TruffleHog"`,
		`5","userAgent":7`,
		`6","userAgent":["TruffleHog"]`,
		`7","userAgent":{"x":"TruffleHog"}`,
		`8","userAgent":null`,
		`9","userAgent":""`,
		`10","requestParameters":{"userAgent":"TruffleHog"}`,
		`11","UserAgent":"TruffleHog"`,
		`12","userAgent" : "TruffleHog"`,
		`13", "userAgent":"truffleHOG"`,
		`14","userAgent":"TruffleHog/3"`,
		"15\",\"userAgent\":\"\u212Amstool\"",
		"16\",\"userAgent\":\"kmstool\",\"x\":\"\u212A\"",
		`17","userAgent":"Truffle\u0048og"`,
		`18","user\u0041gent":"TruffleHog"`,
		`19","userAgent":"Boto3/1.34"`,
		`20","detail-type":"AWS API Call via CloudTrail","detail":{"eventName":"GetCallerIdentity","eventID":"d","userAgent":"TruffleHog"},"userAgent":"x"`,
	} {
		lines = append(lines, []byte(head+body+"}"))
	}
	lines = append(lines, []byte(`{"version":"0","id":"x","detail-type":"AWS API Call via CloudTrail","source":"aws.sts","detail":{"eventVersion":"1.09","eventTime":"2026-01-01T00:00:00Z","eventSource":"sts.amazonaws.com","eventName":"GetCallerIdentity","eventID":"e-21","userAgent":"TruffleHog"},"userAgent":"aws-cli/2"}`))
	served, hits := 0, 0
	for _, w := range readWanted(t, lines) {
		if checkServed(t, s, w) {
			served++
		}
		var p Parser
		e := schema.Event{Source: w.ev.Source, Action: w.ev.Action, Resource: w.ev.Resource, UserAgent: w.ev.UserAgent, Raw: w.raw}
		h, _, _ := s.matchEvent(&e, e.Raw, &p, nil, true)
		hits += len(h)
	}
	if served < 1000 || hits == 0 {
		t.Fatalf("%d records served their user agent, %d hits: the test exercises nothing", served, hits)
	}
}

// FuzzServedUserAgent: for any line, every record the reader hands Wants
// gives the same hits read with the event's user agent as parsed whole.
func FuzzServedUserAgent(f *testing.F) {
	f.Add([]byte(`{"eventVersion":"1.09","eventName":"GetCallerIdentity","eventID":"a","userAgent":"TruffleHog","userAgent":"x"}`))
	f.Add([]byte(`{"eventVersion":"1.09","eventName":"X","eventID":"a","userIdentity":{"userAgent":"TruffleHog"},"userAgent":"aws-cli/2"}`))
	f.Add([]byte(`{"eventName":"X","eventID":"a","userAgent":["TruffleHog"]}`))
	f.Add([]byte(`{"eventVersion":"1","eventName":"X","eventID":"a","detail-type":"t","detail":{"eventName":"Y","eventID":"b","userAgent":"TruffleHog"},"userAgent":"z"}`))
	f.Add([]byte("{\"eventName\":\"X\",\"eventID\":\"a\",\"userAgent\":\"\u212Amstool\"}"))
	f.Add([]byte(`{"Records":[{"eventName":"X","eventID":"a","userAgent":"Boto3/1"},{"eventName":"X","eventID":"b","UserAgent":"TruffleHog"}]}`))
	s := servedSet(f)
	f.Fuzz(func(t *testing.T, line []byte) {
		for _, w := range readWanted(t, [][]byte{line}) {
			checkServed(t, s, w)
		}
	})
}
