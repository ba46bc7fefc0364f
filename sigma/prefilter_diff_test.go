package sigma

import (
	"path/filepath"
	"testing"

	"auditwatch/internal/testenv"
	"auditwatch/schema"
)

// prefilterRules use every form a prefilter derives literals from:
// wildcards, cased values, expressions (with a colon, folding case),
// keywords, base64offset, windash, values compared with objects and
// numbers, a second index field, negations and exists.
const prefilterRules = `title: ua
logsource: {product: aws, service: cloudtrail}
detection:
  s:
    userAgent: 'TruffleHog'
  condition: s
---
title: obj
logsource: {product: aws, service: cloudtrail}
detection:
  s:
    requestParameters|contains: 'x":1'
  condition: s
---
title: colon
logsource: {product: aws, service: cloudtrail}
detection:
  s:
    userIdentity.arn|re: ':assumed-role/Admin:'
  condition: s
---
title: fold
logsource: {product: aws, service: cloudtrail}
detection:
  s:
    userAgent|re|i: 'kms?tool'
  condition: s
---
title: cased
logsource: {product: aws, service: cloudtrail}
detection:
  s:
    requestParameters.name|cased|contains: 'SeCrEt'
  condition: s
---
title: glob
logsource: {product: aws, service: cloudtrail}
detection:
  s:
    requestParameters.policy: 'allow*everyone?here'
  condition: s and not f
  f:
    requestParameters.skip|exists: true
---
title: kw
logsource: {product: aws, service: cloudtrail}
detection:
  keywords:
    - 'stratus-red'
    - '*pacu*'
  condition: keywords
---
title: b64
logsource: {product: aws, service: cloudtrail}
detection:
  s:
    userAgent|base64offset|contains: 'curl http'
  condition: s
---
title: dash
logsource: {product: aws, service: cloudtrail}
detection:
  s:
    requestParameters.cmd|windash|contains: ' -enc '
  condition: s
---
title: num
logsource: {product: aws, service: cloudtrail}
detection:
  s:
    requestParameters.size: '1e3'
  condition: s
---
title: svc
logsource: {product: aws, service: cloudtrail}
detection:
  s:
    eventSource: lambda.amazonaws.com
    eventName|startswith: Update
  condition: s
---
title: vop
logsource: {product: vault}
detection:
  s:
    request.operation: delete
    request.path|contains: '/data/'
  t:
    auth.policies|cased: root
  condition: s or t
`

func prefilterSet(t testing.TB) *Set {
	rules, probs := ParseFile("p.yml", []byte(prefilterRules), Options{})
	if len(probs) > 0 {
		t.Fatal(probs[0])
	}
	s, err := Build(rules, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// sameHits evaluates ev with the index's second field and the literal
// prefilters, and without them: the hits must be the same.
func sameHits(t *testing.T, s *Set, ev schema.Event, p1, p2 *Parser) []Hit {
	t.Helper()
	s.noPrefilter = false
	got, _, err1 := s.MatchEvent(&ev, p1, nil)
	s.noPrefilter = true
	want, _, err2 := s.MatchEvent(&ev, p2, nil)
	s.noPrefilter = false
	if (err1 == nil) != (err2 == nil) {
		t.Fatalf("%s: error %v prefiltered, %v not", ev.Raw, err1, err2)
	}
	if len(got) != len(want) {
		t.Fatalf("%q (%s): %d hits prefiltered, %d without", ev.Raw, ev.Action, len(got), len(want))
	}
	for i := range got {
		if got[i].Rule != want[i].Rule {
			t.Fatalf("%s: hit %d: %s prefiltered, %s without", ev.Raw, i, got[i].Rule.Title, want[i].Rule.Title)
		}
	}
	return got
}

// TestPrefilterHostileRecords: records whose text hides a value's
// literal (Unicode case folding, spacing inside objects, escapes) still
// match, and records that match through each form are not dropped.
func TestPrefilterHostileRecords(t *testing.T) {
	s := prefilterSet(t)
	ct := func(body string) schema.Event {
		return schema.Event{Source: schema.SourceCloudTrail, Action: "sts:GetCallerIdentity", Raw: []byte(`{"eventSource":"sts.amazonaws.com","eventName":"GetCallerIdentity",` + body + `}`)}
	}
	cases := []struct {
		ev   schema.Event
		want string
	}{
		// an object value renders compactly: {"x":1} though written spaced
		// a leading field behind userIdentity, prefiltered: any case, and
		// non-ASCII text elsewhere does not hide it (no character outside
		// ASCII lowercases to t, r, u, f, l, e, h, o or g)
		{ct(`"userAgent":"TRUFFLEHOG"`), "ua"},
		{ct("\"userIdentity\":{\"userName\":\"\u212a\u017f\u0130\"},\"userAgent\":\"truffleHog\""), "ua"},
		{ct("\"userAgent\":\"truffle\u0127og\""), ""},
		{ct(`"userAgent":"TruffleHog/3"`), ""},
		{ct(`"requestParameters":{"x" : 1}`), "obj"},
		{ct(`"userIdentity":{"arn":"arn:aws:sts::1:assumed-role/Admin:s"}`), "colon"},
		// KELVIN SIGN folds to k: the text holds no "kms"
		{ct(`"userAgent":"\u212Amstool/1"`), "fold"},
		{ct("\"userAgent\":\"\u212Amstool/1\""), "fold"},
		// LONG S folds to s
		{ct("\"userAgent\":\"km\u017Ftool\""), "fold"},
		{ct(`"requestParameters":{"name":"my-SeCrEt-1"}`), "cased"},
		{ct(`"requestParameters":{"policy":"Allow EVERYONE!HERE"}`), "glob"},
		{ct(`"requestParameters":{"policy":"allow everyone  here"}`), ""},
		{ct(`"x":["PACU_session"]`), "kw"},
		{ct(`"x":"stratus\u002dred"`), "kw"},
		{ct(`"userAgent":"Y3VybCBodHRwOi8v"`), "b64"},
		{ct(`"requestParameters":{"cmd":"ps /enc abc"}`), "dash"},
		{ct("\"requestParameters\":{\"cmd\":\"ps \u2013enc abc\"}"), "dash"},
		{ct(`"requestParameters":{"size":1e3}`), "num"},
		{ct(`"requestParameters":{"size":"1E3"}`), "num"},
		{schema.Event{Source: schema.SourceCloudTrail, Action: "lambda:UpdateFunctionConfiguration20150331", Raw: []byte(`{"eventSource":"lambda.amazonaws.com","eventName":"UpdateFunctionConfiguration20150331"}`)}, "svc"},
		{schema.Event{Source: schema.SourceCloudTrail, Action: "LAMBDA:UpdateX", Raw: []byte(`{"eventSource":"LAMBDA.AMAZONAWS.COM","eventName":"UpdateX"}`)}, "svc"},
		{schema.Event{Source: schema.SourceCloudTrail, Action: "s3:UpdateX", Raw: []byte(`{"eventSource":"s3.amazonaws.com","eventName":"UpdateX"}`)}, ""},
		{schema.Event{Source: schema.SourceVault, Action: "vault:delete", Resource: "secret/data/a", Raw: []byte(`{"type":"request","request":{"operation":"delete","path":"secret/data/a"}}`)}, "vop"},
		{schema.Event{Source: schema.SourceVault, Action: "vault:DELETE", Resource: "secret/data/a", Raw: []byte(`{"type":"request","request":{"operation":"DELETE","path":"secret/data/a"}}`)}, "vop"},
		{schema.Event{Source: schema.SourceVault, Action: "vault:read", Resource: "secret/data/a", Raw: []byte(`{"type":"request","request":{"operation":"read","path":"secret/data/a"}}`)}, ""},
		{schema.Event{Source: schema.SourceVault, Action: "vault:read", Resource: "secret/data/a", Raw: []byte(`{"type":"request","auth":{"policies":["root"]},"request":{"operation":"read","path":"secret/data/a"}}`)}, "vop"},
		{schema.Event{Source: schema.SourceVault, Action: "vault:unknown", Resource: "secret/data/a", Raw: []byte(`{"type":"request","request":{"path":"secret/data/a"}}`)}, ""},
	}
	if s.pre[0] == nil || s.unsafe[0] {
		t.Errorf("the userAgent rule is not prefiltered without an ASCII check: %v %v", s.pre[0], s.unsafe[0])
	}
	for _, c := range cases {
		// fresh parsers each time: the prefilters are on (adaptive ones
		// switch off only after many records)
		var p1, p2 Parser
		hits := sameHits(t, s, c.ev, &p1, &p2)
		got := ""
		if len(hits) > 0 {
			got = hits[0].Rule.Title
		}
		if got != c.want || len(hits) > 1 {
			t.Errorf("%s: hits %v, want %q", c.ev.Raw, hits, c.want)
		}
	}
}

// TestPrefilterAgreesOverGeneratedTraffic: over generated CloudTrail and
// Vault traffic, the pack and SigmaHQ's rules give the same hits with the
// second index field and the literal prefilters as without, with fresh
// prefilter statistics and after they have adapted.
func TestPrefilterAgreesOverGeneratedTraffic(t *testing.T) {
	paths := []string{filepath.Join(testenv.RepoRoot(t), "rules")}
	if dir, ok := testenv.LookupSharedTestdata(t); ok {
		paths = append(paths, filepath.Join(dir, "sigma", "cloudtrail"))
	}
	set, err := Load(paths, Options{})
	if err != nil {
		t.Fatal(err)
	}
	evs := events(t, benchRecords(t, 8000))
	var p1, p2 Parser
	hits, checked := 0, 0
	for round := 0; round < 2; round++ {
		for _, ev := range evs {
			hits += len(sameHits(t, set, ev, &p1, &p2))
		}
	}
	for i := range set.single {
		if set.pre[i] != nil {
			checked++
		}
	}
	if hits == 0 || checked == 0 {
		t.Fatalf("%d hits, %d rules prefiltered: the test exercises nothing", hits, checked)
	}
}

// FuzzPrefilter: for any record, read into events as the pipeline reads
// it (the normalized fields the index keys come from), the second index
// field and the literal prefilters drop no hit.
func FuzzPrefilter(f *testing.F) {
	f.Add([]byte(`{"eventSource":"sts.amazonaws.com","eventName":"X","requestParameters":{"x" : 1}}`))
	f.Add([]byte("{\"eventName\":\"X\",\"userAgent\":\"\u212Amstool\"}"))
	f.Add([]byte(`{"eventName":"X","a":"stratus-red","userAgent":"Y3VybCBodHRwOi8v","requestParameters":{"cmd":"/enc","size":1e3,"policy":"allowXeveryone!here"}}`))
	f.Add([]byte(`{"eventSource":"lambda.amazonaws.com","eventName":"UpdateA"}`))
	f.Add([]byte(`{"eventSource":"LAMBDA.amazonaws.com","eventSource":"s3.amazonaws.com","eventName":"UpdateA"}`))
	f.Add([]byte(`{"time":"2026-01-01T00:00:00Z","type":"request","auth":{"policies":["root"]},"request":{"operation":"delete","path":"secret/data/a"}}`))
	f.Add([]byte(`{"time":"2026-01-01T00:00:00Z","type":"request","request":{"operation":"read","operation":"delete","path":"secret/data/a"}}`))
	s := prefilterSet(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		var p1, p2 Parser
		for _, ev := range events(t, [][]byte{raw}) {
			sameHits(t, s, ev, &p1, &p2)
		}
	})
}
