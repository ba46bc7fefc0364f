package sigma

import (
	"bytes"
	"testing"

	"auditwatch/schema"
)

// FuzzParseRule: any rule text gives rules or problems, never a panic, and
// what compiles evaluates on a record without panicking.
func FuzzParseRule(f *testing.F) {
	f.Add("title: x\nlogsource: {product: aws, service: cloudtrail}\ndetection:\n  a:\n    eventName|contains|all: [a, b]\n  b:\n    x|re|i: 'a.+'\n  condition: a and not (1 of b*)\n")
	f.Add("title: c\ncorrelation:\n  type: event_count\n  rules: [a]\n  group-by: [x]\n  timespan: 5m\n  condition: {gte: 3}\n---\ntitle: a\nname: a\nlogsource: {product: vault}\ndetection:\n  s:\n    request.path|startswith: sys/\n  condition: s\n")
	f.Add("title: k\nlogsource: {product: aws}\ndetection:\n  k:\n    - '*x?'\n  condition: all of them\n")
	rec := []byte(`{"eventName":"ab","x":"a1","request":{"path":"sys/raw"},"userIdentity":{"arn":"a"}}`)
	f.Fuzz(func(t *testing.T, src string) {
		rules, _ := ParseFile("fuzz.yml", []byte(src), Options{})
		s, _ := build(rules, nil)
		var p Parser
		r, err := p.Parse(rec, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, rule := range s.single {
			rule.Match(r)
		}
		s.Match(r, nil)
	})
}

// FuzzCondition: the condition parser never panics and accepts what it
// prints back equivalently.
func FuzzCondition(f *testing.F) {
	for _, s := range []string{"a and not b", "1 of sel_* or (a and b)", "all of them", "not not (a)", "a | count() > 3", "((((a))))", "a or", "b and ) a"} {
		f.Add(s)
	}
	det := &detection{sels: map[string]*selection{}}
	for _, n := range []string{"a", "b", "sel_1", "sel_2", "_x"} {
		det.names = append(det.names, n)
		det.sels[n] = &selection{}
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseCondition(s, det)
		if (n == nil) == (err == nil) {
			t.Fatalf("%q: node %v, error %v", s, n, err)
		}
	})
}

// FuzzRecord: any record bytes are parsed or refused, never a panic.
func FuzzRecord(f *testing.F) {
	f.Add([]byte(`{"eventName":"DisableKey","eventSource":"kms.amazonaws.com"}`))
	f.Add([]byte(`{"detail-type":"x","detail":{"eventName":"A"}}`))
	f.Add([]byte(`{"CloudTrailEvent":"{\"eventName\":\"A\"}"}`))
	f.Add([]byte(`{"type":"response","request":{"path":"sys/raw/x","operation":"read"}}`))
	f.Add([]byte(`{"eventVersion":"1","userIdentity":{"sessionContext":{"sessionIssuer":[{"type":"Role"},{"type":null}]}},"requestParameters":{"x.y":"aab"},"eventName":"X"}`))
	f.Add([]byte(`{"type":"response","auth":{"policies":["default","root"],"metadata":{}},"request":{"path":"x"}}`))
	rules, probs := ParseFile("r.yml", []byte("title: x\nlogsource: {product: aws, service: cloudtrail}\ndetection:\n  a:\n    eventName: DisableKey\n  b:\n    requestParameters|contains: x\n  k:\n    - abc\n  condition: a or b or k\n---\ntitle: n\nlogsource: {product: aws, service: cloudtrail}\ndetection:\n  a:\n    userIdentity.sessionContext.sessionIssuer.type: Role\n    requestParameters.x.y|re: 'a.b'\n  b:\n    responseElements.z|exists: true\n  condition: a and not b\n---\ntitle: v\nlogsource: {product: vault}\ndetection:\n  a:\n    request.path|startswith: sys/raw\n  b:\n    auth.policies|cased: root\n    auth.metadata.role: null\n  condition: a or b\n"), Options{})
	if len(probs) > 0 {
		f.Fatal(probs[0])
	}
	s, err := Build(rules, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		// the lazy reading of the text, from every source: never a panic
		for _, src := range []string{"", schema.SourceCloudTrail, schema.SourceVault} {
			var lp Parser
			ev := schema.Event{Source: src, Action: "kms:DisableKey", Resource: "sys/raw/x", Raw: b}
			s.MatchEvent(&ev, &lp, nil)
			s.Wants(&ev, b)
		}
		var p Parser
		r, err := p.Parse(b, "")
		if err != nil {
			return
		}
		s.Match(r, nil)
		// a record without escapes (and not an envelope) gives the same
		// hits read lazily as parsed whole
		if bytes.IndexByte(b, '\\') >= 0 || bytes.Contains(b, []byte("detail-type")) {
			return
		}
		for _, src := range []string{schema.SourceCloudTrail, schema.SourceVault} {
			var p1, p2 Parser
			r, err := p1.Parse(b, src)
			if err != nil {
				return
			}
			want := s.Match(r, nil)
			ev := schema.Event{Source: src, Raw: b}
			got, _, err := s.MatchEvent(&ev, &p2, nil)
			if err != nil {
				t.Fatalf("%s: %s: lazy reading failed: %v", src, b, err)
			}
			if len(got) != len(want) {
				t.Fatalf("%s: %s: %d hits lazily, %d parsed", src, b, len(got), len(want))
			}
		}
	})
}
