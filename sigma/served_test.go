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

// typeRules read userIdentity.type, alone or with other fields.
const typeRules = `title: type-eq
logsource: {product: aws, service: cloudtrail}
detection:
  s:
    userIdentity.type: Root
  condition: s
---
title: type-cased
logsource: {product: aws, service: cloudtrail}
detection:
  s:
    userIdentity.type|cased: AWSService
  condition: s
---
title: type-null
logsource: {product: aws, service: cloudtrail}
detection:
  s:
    userIdentity.type: null
  condition: s
---
title: type-absent
logsource: {product: aws, service: cloudtrail}
detection:
  s:
    userIdentity.type|exists: false
  condition: s
---
title: type-re-issuer
logsource: {product: aws, service: cloudtrail}
detection:
  s:
    userIdentity.type|re: '^[Aa]ssumed'
    userIdentity.sessionContext.sessionIssuer.type: Role
  condition: s
---
title: type-not-iam
logsource: {product: aws, service: cloudtrail}
detection:
  s:
    eventSource: sts.amazonaws.com
  f:
    userIdentity.type|startswith: iam
  condition: s and not f
`

// spanRules read userIdentity.arn and the session issuer's type, alone
// or with other fields.
const spanRules = `title: arn-re
logsource: {product: aws, service: cloudtrail}
detection:
  s:
    userIdentity.arn|re: '.+:assumed-role/aws:.+'
  f:
    eventSource: ssm.amazonaws.com
  condition: s and not f
---
title: arn-null
logsource: {product: aws, service: cloudtrail}
detection:
  s:
    userIdentity.arn: null
  condition: s
---
title: arn-empty
logsource: {product: aws, service: cloudtrail}
detection:
  s:
    userIdentity.arn: ''
  condition: s
---
title: arn-absent
logsource: {product: aws, service: cloudtrail}
detection:
  s:
    userIdentity.arn|exists: false
  condition: s
---
title: arn-cased
logsource: {product: aws, service: cloudtrail}
detection:
  s:
    userIdentity.arn|cased|contains: ':assumed-role/'
  condition: s
---
title: issuer-eq
logsource: {product: aws, service: cloudtrail}
detection:
  s:
    userIdentity.sessionContext.sessionIssuer.type: Role
  condition: s
---
title: issuer-null
logsource: {product: aws, service: cloudtrail}
detection:
  s:
    userIdentity.sessionContext.sessionIssuer.type: null
  condition: s
---
title: issuer-absent
logsource: {product: aws, service: cloudtrail}
detection:
  s:
    userIdentity.sessionContext.sessionIssuer.type|exists: false
  condition: s
---
title: issuer-not-arn
logsource: {product: aws, service: cloudtrail}
detection:
  s:
    userIdentity.arn|startswith: 'arn:aws:sts'
  f:
    userIdentity.sessionContext.sessionIssuer.type|cased: Role
  condition: s and not f
`

// servedSet is the pack, SigmaHQ's rules when ../shared is there,
// uaRules and typeRules.
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
	trules, tprobs := ParseFile("type.yml", []byte(typeRules), Options{})
	srules, sprobs := ParseFile("span.yml", []byte(spanRules), Options{})
	if len(probs) > 0 || len(tprobs) > 0 || len(sprobs) > 0 || len(res.Invalid) > 0 {
		t.Fatal(probs, tprobs, sprobs, res.Invalid)
	}
	rules = append(append(rules, trules...), srules...)
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

// servedEvent is what matchEvent reads of the reader's event.
func servedEvent(w wanted) schema.Event {
	return schema.Event{Source: w.ev.Source, Action: w.ev.Action, Resource: w.ev.Resource, UserAgent: w.ev.UserAgent,
		PrincipalType: w.ev.PrincipalType, InvokedBy: w.ev.InvokedBy, Spans: w.ev.Spans, Raw: w.raw}
}

// checkServed: the hits of a record read with the event's user agent and
// principal type (Wants' way) are those of the record parsed whole, and a
// lazy record without escapes whose event has a user agent holds exactly
// that value at userAgent, and one whose event gives its type (servedType)
// exactly that value at userIdentity.type. It reports whether the user
// agent and the type were served.
func checkServed(t *testing.T, s *Set, w wanted) (ua, typ bool) {
	ua, typ, _, _ = checkServedAll(t, s, w)
	return ua, typ
}

// spanText is the text a span locates in raw ("", false: none).
func spanText(raw []byte, sp schema.Span) (string, bool) {
	if sp.Off == 0 {
		return "", false
	}
	return string(raw[sp.Off : sp.Off+sp.Len]), true
}

// checkServedAll is checkServed, which also checks the strings the
// reader located (schema.Spans: userIdentity.arn and the session issuer's
// type) and reports whether each was served.
func checkServedAll(t *testing.T, s *Set, w wanted) (ua, typ, arn, issuer bool) {
	t.Helper()
	var p1, p2, p3 Parser
	e := servedEvent(w)
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
	if w.ev.Source != schema.SourceCloudTrail || bytes.IndexByte(w.raw, '\\') >= 0 {
		return
	}
	lazy, ok := p3.parseLazy(w.raw, w.ev.Source)
	if !ok {
		t.Fatalf("%s: read in place by the reader, but not lazily", w.raw)
	}
	for _, c := range []struct {
		path  []string
		value string
		ok    *bool
		span  bool // a located string: "" is a value too
	}{
		{[]string{uaField}, w.ev.UserAgent, &ua, false},
		{[]string{uiField, "type"}, servedType(&w.ev), &typ, false},
		{[]string{uiField, "arn"}, "", &arn, true},
		{[]string{uiField, "sessionContext", "sessionIssuer", "type"}, "", &issuer, true},
	} {
		if c.span {
			sp := w.ev.Spans.IdentityARN
			if len(c.path) == 4 {
				sp = w.ev.Spans.IssuerType
			}
			var ok bool
			if c.value, ok = spanText(w.raw, sp); !ok {
				continue
			}
		} else if c.value == "" {
			continue
		}
		*c.ok = true
		for _, all := range []bool{false, true} {
			var vals []string
			lazy.each(c.path, all, func(v string, null bool) bool {
				if null {
					v = "<null>"
				}
				vals = append(vals, v)
				return false
			})
			if len(vals) != 1 || vals[0] != c.value {
				t.Fatalf("%s: the event gives %q, the record's %v is %q", w.raw, c.value, c.path, vals)
			}
		}
	}
	return ua, typ, arn, issuer
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
	lines := servedInput(t, s)
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
		if ua, _ := checkServed(t, s, w); ua {
			served++
		}
		var p Parser
		e := servedEvent(w)
		h, _, _ := s.matchEvent(&e, e.Raw, &p, nil, true)
		hits += len(h)
	}
	if served < 1000 || hits == 0 {
		t.Fatalf("%d records served their user agent, %d hits: the test exercises nothing", served, hits)
	}
}

// FuzzServedUserAgent: for any line, every record the reader hands Wants
// gives the same hits read with the event's user agent, principal type
// and located strings (schema.Spans) as parsed whole, and each served
// value is the record's.
func FuzzServedUserAgent(f *testing.F) {
	f.Add([]byte(`{"eventVersion":"1.09","eventName":"GetCallerIdentity","eventID":"a","userAgent":"TruffleHog","userAgent":"x"}`))
	f.Add([]byte(`{"eventVersion":"1.09","eventName":"X","eventID":"a","userIdentity":{"userAgent":"TruffleHog"},"userAgent":"aws-cli/2"}`))
	f.Add([]byte(`{"eventName":"X","eventID":"a","userAgent":["TruffleHog"]}`))
	f.Add([]byte(`{"eventVersion":"1","eventName":"X","eventID":"a","detail-type":"t","detail":{"eventName":"Y","eventID":"b","userAgent":"TruffleHog"},"userAgent":"z"}`))
	f.Add([]byte("{\"eventName\":\"X\",\"eventID\":\"a\",\"userAgent\":\"\u212Amstool\"}"))
	f.Add([]byte(`{"Records":[{"eventName":"X","eventID":"a","userAgent":"Boto3/1"},{"eventName":"X","eventID":"b","UserAgent":"TruffleHog"}]}`))
	f.Add([]byte(`{"eventName":"X","eventID":"a","userIdentity":{"type":"Root","type":"IAMUser"}}`))
	f.Add([]byte(`{"eventName":"X","eventID":"a","userIdentity":{"invokedBy":"s3.amazonaws.com","accountId":"1"}}`))
	f.Add([]byte(`{"eventName":"X","eventID":"a","userIdentity":{"type":"AssumedRole","sessionContext":{"sessionIssuer":{"type":"Role"}}}}`))
	f.Add([]byte(`{"eventName":"X","eventID":"a","userIdentity":[{"type":"Root"}],"userIdentity.type":"Root"}`))
	f.Add([]byte(`{"eventName":"X","eventID":"a","userIdentity":{"arn":"arn:aws:sts::1:assumed-role/aws:x/i","sessionContext":{"sessionIssuer":{"type":"Role","type":"Root"}}}}`))
	f.Add([]byte(`{"eventName":"X","eventID":"a","userIdentity":{"sessionContext":{"sessionIssuer.type":"Role","sessionIssuer":{"type":7}}},"userIdentity.arn":"a"}`))
	f.Add([]byte(`{"eventName":"X","eventID":"a","userIdentity":{"arn":"","sessionContext":{"sessionIssuer":{"type":""}}}}`))
	s := servedSet(f)
	f.Fuzz(func(t *testing.T, line []byte) {
		for _, w := range readWanted(t, [][]byte{line}) {
			checkServed(t, s, w)
		}
	})
}

// TestServedTypeAgrees: Wants reads a CloudTrail record's
// userIdentity.type from the event's PrincipalType where that is exact
// (servedType). Over generated traffic, records built for every rule, and
// hostile records (the type duplicated, nested elsewhere, of another type,
// null, empty, absent, escaped, in another letter case, in a userIdentity
// that is not an object or is duplicated, in a dotted top-level key, the
// reader's own "AWSService" and "anonymous"), every record the reader
// hands Wants gives the same hits as parsed whole.
func TestServedTypeAgrees(t *testing.T) {
	s := servedSet(t)
	lines := servedInput(t, s)
	head := `{"eventVersion":"1.09","eventTime":"2026-01-01T00:00:00Z","eventSource":"sts.amazonaws.com","eventName":"GetCallerIdentity","eventID":"t-`
	for _, body := range []string{
		`1","userIdentity":{"type":"Root","arn":"arn:aws:iam::1:root"}`,
		`2","userIdentity":{"type":"Root","type":"IAMUser"}`,
		`3","userIdentity":{"type":"IAMUser"},"userIdentity":{"type":"Root"}`,
		`4","userIdentity":{"type":7}`,
		`5","userIdentity":{"type":null}`,
		`6","userIdentity":{"type":""}`,
		`7","userIdentity":{"arn":"x"}`,
		`8","userIdentity":{"type":"R\u006fot"}`,
		`9","userIdentity":{"t\u0079pe":"Root"}`,
		`10","userIdentity":{"type":"root"}`,
		`11","userIdentity":[{"type":"Root"}]`,
		`12","userIdentity":"Root"`,
		`13","userIdentity.type":"Root"`,
		`14","userIdentity":{"type":"IAMUser"},"userIdentity.type":"Root"`,
		`15","userIdentity":{"accountId":"1","invokedBy":"s3.amazonaws.com"}`,
		`16","userIdentity":{"type":"AWSService","invokedBy":"s3.amazonaws.com"}`,
		`17","userIdentity":{"type":"AWSService"}`,
		`18","userIdentity":{"type":"IAMUser","userName":"HIDDEN_DUE_TO_SECURITY_REASONS"}`,
		`19","userIdentity":{"userName":"HIDDEN_DUE_TO_SECURITY_REASONS"}`,
		`20","userIdentity":{"type":"anonymous"}`,
		`21","userIdentity":{"sessionContext":{"type":"Root"},"type":"AssumedRole"}`,
		`22","userIdentity":{"type":"AssumedRole","sessionContext":{"sessionIssuer":{"type":"Role"}}}`,
		`23","userIdentity":{"type":{"x":"Root"}}`,
		`24","userIdentity":{"type":["Root"]}`,
		`25","userIdentity":{"type" : "Root" }`,
		`26","userIdentity":{"Type":"Root","type":"IAMUser"}`,
		"27\",\"userIdentity\":{\"type\":\"\u212Aoot\"}",
		`28","userIdentity":null`,
		`29","userIdentity":{}`,
		`30","userIdentity":{"type":"AssumedRole"},"userIdentity.sessionContext.sessionIssuer.type":"Role"`,
	} {
		lines = append(lines, []byte(head+body+"}"))
	}
	lines = append(lines, []byte(`{"version":"0","id":"x","detail-type":"AWS API Call via CloudTrail","source":"aws.sts","detail":{"eventVersion":"1.09","eventTime":"2026-01-01T00:00:00Z","eventSource":"sts.amazonaws.com","eventName":"GetCallerIdentity","eventID":"t-31","userIdentity":{"type":"Root"}},"userIdentity":{"type":"IAMUser"}}`))
	served, hits, roots := 0, 0, 0
	for _, w := range readWanted(t, lines) {
		if _, typ := checkServed(t, s, w); typ {
			served++
		}
		var p Parser
		e := servedEvent(w)
		h, _, _ := s.matchEvent(&e, e.Raw, &p, nil, true)
		hits += len(h)
		for _, x := range h {
			if x.Rule.Title == "type-eq" {
				roots++
			}
		}
	}
	if served < 1000 || hits == 0 || roots < 3 {
		t.Fatalf("%d records served their type, %d hits, %d of type-eq: the test exercises nothing", served, hits, roots)
	}
}

// TestServedSpansAgree: Wants reads a CloudTrail record's
// userIdentity.arn and userIdentity.sessionContext.sessionIssuer.type
// where the reader located them (schema.Spans, servedSpan). Over generated
// traffic, records built for every rule, and hostile records (either one
// duplicated, nested elsewhere, of another type, null, empty, escaped in
// its value or key, in another letter case, non-ASCII, in dotted keys at
// any level, in objects duplicated or of another type, inside an
// envelope), every record the reader hands Wants gives the same hits as
// parsed whole, and a located string is exactly what the record's text
// holds at its path.
func TestServedSpansAgree(t *testing.T) {
	s := servedSet(t)
	lines := servedInput(t, s)
	head := `{"eventVersion":"1.09","eventTime":"2026-01-01T00:00:00Z","eventSource":"sts.amazonaws.com","eventName":"GetCallerIdentity","eventID":"s-`
	ar := `"arn:aws:sts::1:assumed-role/aws:ec2-instance/i-1"`
	for _, body := range []string{
		`1","userIdentity":{"type":"AssumedRole","arn":` + ar + `}`,
		`2","userIdentity":{"arn":"x","arn":` + ar + `}`,
		`3","userIdentity":{"arn":"x"},"userIdentity":{"arn":` + ar + `}`,
		`4","userIdentity":{"arn":7}`,
		`5","userIdentity":{"arn":null}`,
		`6","userIdentity":{"arn":""}`,
		`7","userIdentity":{"arn":[` + ar + `]}`,
		`8","userIdentity":{"arn":{"x":` + ar + `}}`,
		`9","userIdentity":{"arn":"arn:aws:sts::1:assumed-role\/aws:x/i"}`,
		`10","userIdentity":{"a\u0072n":` + ar + `}`,
		`11","userIdentity":{"type":"IAMUser"},"userIdentity.arn":` + ar,
		`12","userIdentity":{"arn":"x"},"userIdentity.arn":` + ar,
		`13","userIdentity":{"sessionContext":{"arn":` + ar + `}}`,
		`14","userIdentity":{"type":"AssumedRole","arn":` + ar + `,"sessionContext":{"sessionIssuer":{"type":"Role","arn":"arn:aws:iam::1:role/r"}}}`,
		`15","userIdentity":{"sessionContext":{"sessionIssuer":{"type":"Role","type":"Root"}}}`,
		`16","userIdentity":{"sessionContext":{"sessionIssuer":{"type":"Root","type":"Role"}}}`,
		`17","userIdentity":{"sessionContext":{"sessionIssuer":{"type":"R\u006fle"}}}`,
		`18","userIdentity":{"sessionContext":{"sessionIssuer":{"type":7}}}`,
		`19","userIdentity":{"sessionContext":{"sessionIssuer":{"type":null}}}`,
		`20","userIdentity":{"sessionContext":{"sessionIssuer":{"type":""}}}`,
		`21","userIdentity":{"sessionContext":{"sessionIssuer":{"type":["Role"]}}}`,
		`22","userIdentity":{"sessionContext":{"sessionIssuer":{"type":{"type":"Role"}}}}`,
		`23","userIdentity":{"sessionContext":{"sessionIssuer":{"type":"Root"},"sessionIssuer":{"type":"Role"}}}`,
		`24","userIdentity":{"sessionContext":{"sessionIssuer":{"type":"Root"}},"sessionContext":{"sessionIssuer":{"type":"Role"}}}`,
		`25","userIdentity":{"sessionContext.sessionIssuer":{"type":"Role"}}`,
		`26","userIdentity":{"sessionContext":{"sessionIssuer.type":"Role"}}`,
		`27","userIdentity":{"sessionContext":{"sessionIssuer":{"type":"Root"},"sessionIssuer.type":"Role"}}`,
		`28","userIdentity":{"sessionContext":{"sessionIssuer":[{"type":"Role"}]}}`,
		`29","userIdentity":{"sessionContext":[{"sessionIssuer":{"type":"Role"}}]}`,
		`30","userIdentity":{"sessionContext":{"sessionIssuer":{"Type":"Role","type":"role"}}}`,
		"31\",\"userIdentity\":{\"arn\":\"arn:aws:sts::1:assumed-role/aws:\u212A/i\",\"sessionContext\":{\"sessionIssuer\":{\"type\":\"\u212Aole\"}}}",
		`32","userIdentity" : { "arn" : ` + ar + ` , "sessionContext" : { "sessionIssuer" : { "type" : "Role" } } }`,
		`33","userIdentity":{"type":"AssumedRole"},"userIdentity.sessionContext.sessionIssuer.type":"Role"`,
		`34","userIdentity":{"sessionContext":{"attributes":{"type":"Role","arn":"a"},"sessionIssuer":{"userName":"u","arn":"b","type":"Role"}},"arn":` + ar + `}`,
		`35","userIdentity":{"sessionContext":null,"arn":null}`,
		`36","userIdentity":"x","userIdentity.arn":` + ar,
	} {
		lines = append(lines, []byte(head+body+"}"))
	}
	lines = append(lines, []byte(`{"version":"0","id":"x","detail-type":"AWS API Call via CloudTrail","source":"aws.sts","detail":{"eventVersion":"1.09","eventTime":"2026-01-01T00:00:00Z","eventSource":"sts.amazonaws.com","eventName":"GetCallerIdentity","eventID":"s-37","userIdentity":{"arn":`+ar+`}},"userIdentity":{"arn":"x","sessionContext":{"sessionIssuer":{"type":"Role"}}}}`))
	arns, issuers, hits := 0, 0, map[string]int{}
	for _, w := range readWanted(t, lines) {
		if _, _, arn, issuer := checkServedAll(t, s, w); arn || issuer {
			if arn {
				arns++
			}
			if issuer {
				issuers++
			}
		}
		var p Parser
		e := servedEvent(w)
		h, _, _ := s.matchEvent(&e, e.Raw, &p, nil, true)
		for _, x := range h {
			hits[x.Rule.Title]++
		}
	}
	for _, r := range []string{"arn-re", "arn-null", "arn-empty", "arn-absent", "arn-cased", "issuer-eq", "issuer-null", "issuer-absent", "issuer-not-arn"} {
		if hits[r] == 0 {
			t.Errorf("rule %s hit nothing: the test does not exercise it", r)
		}
	}
	if arns < 1000 || issuers < 1000 {
		t.Fatalf("%d records served their arn, %d their issuer's type: the test exercises nothing", arns, issuers)
	}
}

// servedInput is generated traffic plus, for each single-event rule of s,
// a record built to match it and one built not to.
func servedInput(t *testing.T, s *Set) [][]byte {
	t.Helper()
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
	return lines
}
