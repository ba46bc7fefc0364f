package sigma

import (
	"encoding/base64"
	"strings"
	"testing"
)

func compileRule(t *testing.T, detection string) *Rule {
	t.Helper()
	src := "title: t\nlogsource:\n  product: aws\n  service: cloudtrail\ndetection:\n" + indent(detection)
	rules, probs := ParseFile("t.yml", []byte(src), Options{Placeholders: map[string][]string{"admins": {"alice", "bob"}}})
	if len(probs) > 0 {
		t.Fatalf("%s\n%v", src, probs[0])
	}
	return rules[0]
}

func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("  " + l + "\n")
	}
	return b.String()
}

func TestModifiersAndConditions(t *testing.T) {
	b64 := base64.StdEncoding.EncodeToString([]byte("xxpowershell -enc abc"))
	utf := base64.StdEncoding.EncodeToString([]byte(encodeUTF16("ab cmd /c", "utf16le")))
	rec := `{"eventSource":"iam.amazonaws.com","eventName":"CreateAccessKey","eventTime":"2026-11-02T03:04:05Z",
	"userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/Alice","userName":"alice"},
	"requestParameters":{"userName":"alice","policy":"{\"Effect\":\"Allow\"}","count":42,"tags":["a","Prod-1"],"cmd":"tool -flag x"},
	"sourceIPAddress":"10.1.2.3","errorCode":null,"empty":"","star":"a*b","b64":"` + b64 + `","utf":"` + utf + `","glob":"C:\\dir\\x.exe",
	"responseElements":{"accessKey":{"userName":"alice"}}}`
	cases := []struct {
		name, det string
		want      bool
	}{
		{"equal case-insensitive", "sel:\n  eventName: createaccesskey\ncondition: sel", true},
		{"cased", "sel:\n  eventName|cased: createaccesskey\ncondition: sel", false},
		{"cased exact", "sel:\n  eventName|cased: CreateAccessKey\ncondition: sel", true},
		{"map is AND", "sel:\n  eventName: CreateAccessKey\n  eventSource: s3.amazonaws.com\ncondition: sel", false},
		{"list is OR", "sel:\n  eventName:\n    - A\n    - CreateAccessKey\ncondition: sel", true},
		{"list of maps is OR", "sel:\n  - eventName: A\n  - eventSource: iam.amazonaws.com\ncondition: sel", true},
		{"contains", "sel:\n  userIdentity.arn|contains: ':USER/'\ncondition: sel", true},
		{"startswith", "sel:\n  userIdentity.arn|startswith: 'arn:aws:iam::'\ncondition: sel", true},
		{"endswith", "sel:\n  userIdentity.arn|endswith: '/alice'\ncondition: sel", true},
		{"endswith miss", "sel:\n  userIdentity.arn|endswith: '/bob'\ncondition: sel", false},
		{"wildcards", "sel:\n  userIdentity.arn: 'arn:*:user/Al?ce'\ncondition: sel", true},
		{"question needs a char", "sel:\n  userIdentity.arn: 'arn:*:user/Alice?'\ncondition: sel", false},
		{"escaped star is literal", "sel:\n  star: 'a\\*b'\ncondition: sel", true},
		{"escaped star not wildcard", "sel:\n  star: 'a\\*'\ncondition: sel", false},
		{"backslash kept", "sel:\n  glob: 'C:\\dir\\x.exe'\ncondition: sel", true},
		{"contains all", "sel:\n  requestParameters.policy|contains|all:\n    - Effect\n    - Allow\ncondition: sel", true},
		{"contains all miss", "sel:\n  requestParameters.policy|contains|all:\n    - Effect\n    - Deny\ncondition: sel", false},
		{"object as JSON text", "sel:\n  requestParameters|contains: '\"count\":42'\ncondition: sel", true},
		{"array any element", "sel:\n  requestParameters.tags: prod-1\ncondition: sel", true},
		{"null absent", "sel:\n  missing: null\ncondition: sel", true},
		{"null is null", "sel:\n  errorCode: null\ncondition: sel", true},
		{"null present", "sel:\n  eventName: null\ncondition: sel", false},
		{"empty string", "sel:\n  empty: ''\ncondition: sel", true},
		{"empty string absent", "sel:\n  missing: ''\ncondition: sel", false},
		{"exists", "sel:\n  errorCode|exists: true\ncondition: sel", true},
		{"exists false", "sel:\n  missing|exists: false\ncondition: sel", true},
		{"neq", "sel:\n  eventName|neq: CreateUser\ncondition: sel", true},
		{"neq equal", "sel:\n  eventName|neq: createaccesskey\ncondition: sel", false},
		{"re", "sel:\n  userIdentity.arn|re: ':user/[A-Z]'\ncondition: sel", true},
		{"re cased", "sel:\n  userIdentity.arn|re: ':user/[a-z]'\ncondition: sel", false},
		{"re i", "sel:\n  userIdentity.arn|re|i: ':USER/alice$'\ncondition: sel", true},
		{"re m", "sel:\n  requestParameters.cmd|re|m: '^tool'\ncondition: sel", true},
		{"re s", "sel:\n  requestParameters.cmd|re|s: 'tool.x'\ncondition: sel", false},
		{"cidr", "sel:\n  sourceIPAddress|cidr: 10.0.0.0/8\ncondition: sel", true},
		{"cidr miss", "sel:\n  sourceIPAddress|cidr:\n    - 192.168.0.0/16\n    - 2001:db8::/32\ncondition: sel", false},
		{"gt", "sel:\n  requestParameters.count|gt: 41\ncondition: sel", true},
		{"gte", "sel:\n  requestParameters.count|gte: 42\ncondition: sel", true},
		{"lt", "sel:\n  requestParameters.count|lt: 42\ncondition: sel", false},
		{"lte", "sel:\n  requestParameters.count|lte: 42\ncondition: sel", true},
		{"hour", "sel:\n  eventTime|hour: 3\ncondition: sel", true},
		{"minute", "sel:\n  eventTime|minute: 4\ncondition: sel", true},
		{"day month year", "sel:\n  eventTime|day: 2\n  eventTime|month: 11\n  eventTime|year: 2026\ncondition: sel", true},
		{"week", "sel:\n  eventTime|week: 45\ncondition: sel", true},
		{"hour with lt", "sel:\n  eventTime|hour|lt: 6\ncondition: sel", true},
		{"fieldref", "sel:\n  requestParameters.userName|fieldref: responseElements.accessKey.userName\ncondition: sel", true},
		{"fieldref endswith", "sel:\n  userIdentity.arn|fieldref|endswith: requestParameters.userName\ncondition: sel", true},
		{"fieldref neq", "sel:\n  userIdentity.arn|fieldref|neq: requestParameters.userName\ncondition: sel", true},
		{"fieldref cased", "sel:\n  userIdentity.arn|fieldref|endswith|cased: requestParameters.userName\ncondition: sel", false},
		{"base64 contains", "sel:\n  b64|base64|contains: 'xxpowershell -enc'\ncondition: sel", false},
		{"base64offset contains", "sel:\n  b64|base64offset|contains: 'powershell'\ncondition: sel", true},
		{"utf16le base64offset", "sel:\n  utf|utf16le|base64offset|contains: 'cmd'\ncondition: sel", true},
		{"wide base64offset", "sel:\n  utf|wide|base64offset|contains: 'ab cmd'\ncondition: sel", true},
		{"windash", "sel:\n  requestParameters.cmd|windash|contains: ' /flag'\ncondition: sel", true},
		{"expand", "sel:\n  requestParameters.userName|expand: '%admins%'\ncondition: sel", true},
		{"keywords", "kw:\n  - nothing\n  - Prod-\ncondition: kw", true},
		{"not", "sel:\n  eventName: X\ncondition: not sel", true},
		{"and not", "a:\n  eventName: CreateAccessKey\nb:\n  eventSource: iam.amazonaws.com\ncondition: a and not b", false},
		{"parens", "a:\n  eventName: X\nb:\n  eventName: CreateAccessKey\nc:\n  eventSource: Y\ncondition: (a or b) and not c", true},
		{"precedence", "a:\n  eventName: X\nb:\n  eventName: CreateAccessKey\nc:\n  eventSource: Y\ncondition: a or b and c", false},
		{"1 of", "sel_a:\n  eventName: X\nsel_b:\n  eventName: CreateAccessKey\ncondition: 1 of sel_*", true},
		{"all of", "sel_a:\n  eventName: X\nsel_b:\n  eventName: CreateAccessKey\ncondition: all of sel_*", false},
		{"1 of them", "a:\n  eventName: X\nb:\n  eventSource: iam.amazonaws.com\ncondition: 1 of them", true},
		{"all of them skips _", "a:\n  eventName: CreateAccessKey\n_b:\n  eventSource: none\ncondition: all of them", true},
		{"condition list", "a:\n  eventName: X\nb:\n  eventName: CreateAccessKey\ncondition:\n  - a\n  - b", true},
	}
	var p Parser
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := compileRule(t, c.det)
			rec, err := p.Parse([]byte(rec), "")
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Match(rec); got != c.want {
				t.Errorf("%s: got %v, want %v", c.det, got, c.want)
			}
		})
	}
}

func TestProblems(t *testing.T) {
	cases := []struct {
		name, src, kind string
		line            int
		msg             string
	}{
		{"yaml", "title: x\nlogsource: [\n", KindInvalid, 2, "YAML"},
		{"no title", "logsource: {product: aws}\ndetection: {a: {x: 1}, condition: a}\n", KindInvalid, 1, "title is required"},
		{"unknown modifier", "title: x\nlogsource: {product: aws, service: cloudtrail}\ndetection:\n  a:\n    x|bogus: 1\n  condition: a\n", KindInvalid, 5, "unknown modifier"},
		{"undefined selection", "title: x\nlogsource: {product: aws, service: cloudtrail}\ndetection:\n  a:\n    x: 1\n  condition: a and b\n", KindInvalid, 6, "not defined"},
		{"bad regex", "title: x\nlogsource: {product: aws, service: cloudtrail}\ndetection:\n  a:\n    x|re: '('\n  condition: a\n", KindInvalid, 5, "regular expression"},
		{"aggregation", "title: x\nlogsource: {product: aws, service: cloudtrail}\ndetection:\n  a:\n    x: 1\n  condition: a | count() by y > 5\n", KindUnsupported, 6, "aggregation"},
		{"near", "title: x\nlogsource: {product: aws, service: cloudtrail}\ndetection:\n  a:\n    x: 1\n  b:\n    y: 1\n  condition: a near b\n", KindUnsupported, 8, "near"},
		{"other log source", "title: x\nlogsource: {product: windows}\ndetection:\n  a:\n    x: 1\n  condition: a\n", KindUnsupported, 2, "log source"},
		{"value_sum", "title: x\ncorrelation:\n  type: value_sum\n  rules: [a]\n  timespan: 1h\n", KindUnsupported, 3, "value_sum"},
		{"bad level", "title: x\nlevel: huge\nlogsource: {product: aws, service: cloudtrail}\ndetection:\n  a:\n    x: 1\n  condition: a\n", KindInvalid, 2, "level"},
		{"bad timespan", "title: x\ncorrelation:\n  type: event_count\n  rules: [a]\n  timespan: 1y\n  condition: {gte: 2}\n", KindInvalid, 5, "timespan"},
		{"missing condition", "title: x\nlogsource: {product: aws, service: cloudtrail}\ndetection:\n  a:\n    x: 1\n", KindInvalid, 4, "no condition"},
		{"unbalanced", "title: x\nlogsource: {product: aws, service: cloudtrail}\ndetection:\n  a:\n    x: 1\n  condition: (a\n", KindInvalid, 6, "missing )"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, probs := ParseFile("f.yml", []byte(c.src), Options{})
			if len(probs) != 1 {
				t.Fatalf("problems %v, want one", probs)
			}
			p := probs[0]
			if p.Kind != c.kind || p.Line != c.line || !strings.Contains(p.Msg, c.msg) || p.File != "f.yml" {
				t.Errorf("got %v (line %d), want %s at line %d containing %q", p, p.Line, c.kind, c.line, c.msg)
			}
		})
	}
}

func TestUnwrap(t *testing.T) {
	inner := `{"eventSource":"kms.amazonaws.com","eventName":"DisableKey","eventTime":"2026-11-02T03:04:05Z"}`
	r := compileRule(t, "sel:\n  eventName: DisableKey\ncondition: sel")
	var p Parser
	for name, rec := range map[string]string{
		"plain":        inner,
		"eventbridge":  `{"detail-type":"AWS API Call via CloudTrail","source":"aws.kms","detail":` + inner + `}`,
		"lookupevents": `{"EventId":"x","CloudTrailEvent":` + quote(inner) + `}`,
	} {
		got, err := p.Parse([]byte(rec), "")
		if err != nil {
			t.Fatal(name, err)
		}
		if !r.Match(got) {
			t.Errorf("%s: does not match", name)
		}
		if got.EventTime().IsZero() {
			t.Errorf("%s: no event time", name)
		}
	}
}

func quote(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`
}

func TestBase64Offsets(t *testing.T) {
	// every variant appears in the encoding of the value at its offset
	for _, v := range []string{"abc", "abcd", "powershell"} {
		offs := base64Offsets(v)
		for i := 0; i < 3; i++ {
			enc := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("Q", i) + v + "ZZZ"))
			found := false
			for _, o := range offs {
				if strings.Contains(enc, o) {
					found = true
				}
			}
			if !found {
				t.Errorf("%q at offset %d: %s has none of %q", v, i, enc, offs)
			}
		}
	}
}

func TestWindash(t *testing.T) {
	got := windash("-a /b")
	if len(got) != 25 {
		t.Fatalf("%d permutations, want 25: %q", len(got), got)
	}
	seen := map[string]bool{}
	for _, g := range got {
		seen[g] = true
	}
	for _, w := range []string{"-a /b", "/a -b", "\u2013a \u2015b"} {
		if !seen[w] {
			t.Errorf("missing %q", w)
		}
	}
}
