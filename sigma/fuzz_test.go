package sigma

import (
	"testing"
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
	rules, probs := ParseFile("r.yml", []byte("title: x\nlogsource: {product: aws, service: cloudtrail}\ndetection:\n  a:\n    eventName: DisableKey\n  b:\n    requestParameters|contains: x\n  k:\n    - abc\n  condition: a or b or k\n---\ntitle: v\nlogsource: {product: vault}\ndetection:\n  a:\n    request.path|startswith: sys/raw\n  condition: a\n"), Options{})
	if len(probs) > 0 {
		f.Fatal(probs[0])
	}
	s, err := Build(rules, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var p Parser
		r, err := p.Parse(b, "")
		if err != nil {
			return
		}
		s.Match(r, nil)
	})
}
