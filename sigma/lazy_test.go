package sigma

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// A lazy record (its text walked member by member) gives every path the
// same values, in the same order, as the full parse: arrays on the way
// and at the end, objects and arrays as leaves, dotted keys, nulls,
// numbers as written, duplicate keys, spacing.
func TestLazyRecordAgreesWithTree(t *testing.T) {
	records := []string{
		`{"a":{"b":[{"c":1},{"c":"x"},{"d":null}],"e":[[1,2],[3]],"f":{}},"g.h":{"i":"dotted"},"j":[],"k":null,"l":-1.5e3,"m":true,"n":"ünï","o":{"p.q":"deep dotted"}}`,
		` { "a" : { "b" : [ { "c" : 1 } , { "c" : "x y" } ] , "e" : [ ] } , "dup" : 1 , "dup" : 2 , "r" : [ {"s":[{"t":"nested"}]} ] } `,
		`{"userIdentity":{"type":"AssumedRole","sessionContext":{"sessionIssuer":{"type":"Role","arn":"arn:aws:iam::1:role/r"}}},"eventName":"X","requestParameters":{"layers":["l1","l2"],"policy":{"Statement":[{"Effect":"Allow"}]}}}`,
		`{"a":1,"bad":{"x":[1,2}}`,
		// a member read, then a later sibling: the first one's value
		// (braces and brackets in strings) is skipped only then
		`{"u":{"a":{"x":"}{","y":[1,{"z":"]"}]},"b":"B","c":{"d":1},"e":[{"f":"F"}]},"w":1}`,
		`{"u":{"a":{"x":1},"b" 2}}`,
		`{"u":{"a":{"x":1},"b":{"d":1}`,
	}
	paths := []string{"a", "a.b", "a.b.c", "a.b.d", "a.e", "a.f", "a.f.z", "g.h", "g.h.i", "g", "j", "k", "l", "m", "n", "o.p.q", "o", "dup", "r.s.t", "r.s", "x",
		"u.a.x", "u.b", "u.a.y.z", "u.c.d", "u.e.f", "u.zz", "w",
		"userIdentity.type", "userIdentity.sessionContext.sessionIssuer.type", "requestParameters.layers", "requestParameters.policy", "requestParameters.policy.Statement.Effect", "bad.x", "bad"}
	var lazy, full Parser
	for _, text := range records {
		tree, err := full.Parse([]byte(text), "cloudtrail")
		malformed := err != nil
		lz, ok := lazy.parseLazy([]byte(text), "cloudtrail")
		if !ok {
			t.Fatalf("%s: not read lazily", text)
		}
		for _, p := range paths {
			path := strings.Split(p, ".")
			for _, all := range []bool{false, true} {
				var got []string
				lz.each(path, all, func(s string, null bool) bool {
					got = append(got, fmt.Sprintf("%q/%v", s, null))
					return false
				})
				if malformed {
					continue
				}
				var want []string
				tree.each(path, all, func(s string, null bool) bool {
					want = append(want, fmt.Sprintf("%q/%v", s, null))
					return false
				})
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("%s: %s (all %v): lazy %v, tree %v", text, p, all, got, want)
				}
			}
		}
		for _, k := range []string{"n", "l", "zz"} {
			a, aok := lz.Field([]string{k})
			if !malformed {
				b, bok := tree.Field([]string{k})
				if a != b || aok != bok {
					t.Errorf("Field(%s): lazy %q %v, tree %q %v", k, a, aok, b, bok)
				}
			}
		}
		if malformed != lz.bad {
			t.Errorf("%s: malformed %v, lazy reading found it bad: %v", text, malformed, lz.bad)
		}
	}
}

// An expression's literals are checked on the value before it runs, in
// ASCII case folding; a case-insensitive expression on a value with
// non-ASCII bytes runs without the check (the Kelvin sign folds to k).
func TestRegexLiteralCheck(t *testing.T) {
	rules, probs := ParseFile("re.yml", []byte(`title: re
logsource: {product: aws, service: cloudtrail}
detection:
  sel:
    userAgent|re|i: 'kelvin-[0-9]+'
  other:
    errorMessage|re: 'Denied by (scp|boundary)'
  condition: sel or other
`), Options{})
	if len(probs) > 0 {
		t.Fatal(probs[0])
	}
	set, err := Build(rules, nil)
	if err != nil {
		t.Fatal(err)
	}
	var p Parser
	for ua, want := range map[string]bool{
		"KELVIN-12":     true,
		"\u212aelvin-3": true,
		"kelvin-":       false,
		"x kelvin-7 y":  true,
		"kelvi-7":       false,
	} {
		rec, err := p.Parse([]byte(`{"eventName":"X","userAgent":"`+ua+`"}`), "cloudtrail")
		if err != nil {
			t.Fatal(err)
		}
		if got := len(set.Match(rec, nil)) > 0; got != want {
			t.Errorf("userAgent %q: match %v, want %v", ua, got, want)
		}
	}
	for msg, want := range map[string]bool{"Denied by scp": true, "denied by scp": false, "Denied by boundary x": true} {
		rec, _ := p.Parse([]byte(`{"eventName":"X","errorMessage":"`+msg+`"}`), "cloudtrail")
		if got := len(set.Match(rec, nil)) > 0; got != want {
			t.Errorf("errorMessage %q: match %v, want %v", msg, got, want)
		}
	}
	if fm := set.single[0].det.sels["sel"].alts[0][0]; fm.reLits[0] == nil || !fm.reFold[0] {
		t.Errorf("no literal check for %s: %q %v", fm.res[0], fm.reLits[0], fm.reFold[0])
	}
}

func TestHasQuoted(t *testing.T) {
	for _, c := range []struct {
		text, k string
		want    bool
	}{
		{`{"a":1,"errorCode":"x"}`, "errorCode", true},
		{`{"a":1,"errorCodes":"x"}`, "errorCode", false},
		{`{"a":"errorCode"}`, "errorCode", true},
		{`{"a":"xerrorCode"}`, "errorCode", false},
		{`"errorCode"`, "errorCode", true},
		{`errorCode"`, "errorCode", false},
		{`{"":1}`, "", true},
	} {
		if got := hasQuoted(c.text, c.k); got != c.want {
			t.Errorf("hasQuoted(%s, %s) = %v", c.text, c.k, got)
		}
	}
}

// TestMultiContainsAgrees: a matcher's contains patterns searched together
// (multiContains) match exactly the values they match one by one, cased
// and not, beside equality and wildcard patterns of the same matcher.
func TestMultiContainsAgrees(t *testing.T) {
	rules, probs := ParseFile("multi.yml", []byte(`title: multi
logsource: {product: aws, service: cloudtrail}
detection:
  folded:
    userAgent|contains: ['sqlmap', 'NIKTO', 'nuclei', 'ab', 'b-a', 'zz']
  cased:
    userAgent|cased|contains: ['L2Jpbi', 'Jpbi9z', 'vYmlu', 'x']
  mixed:
    userAgent:
      - '*pacu*'
      - '*stratus*'
      - '*ox*'
      - '*NU*'
      - '*cloud?ox*'
      - 'exact'
      - 'pre*'
      - '*Fox_'
  condition: folded or cased or mixed
`), Options{})
	if len(probs) > 0 {
		t.Fatal(probs[0])
	}
	set, err := Build(rules, nil)
	if err != nil {
		t.Fatal(err)
	}
	det := set.single[0].det
	var fms []*fieldMatcher
	for _, name := range []string{"folded", "cased", "mixed"} {
		fm := det.sels[name].alts[0][0]
		if fm.multi == nil {
			t.Fatalf("%s: contains patterns not gathered", name)
		}
		fms = append(fms, fm)
	}
	alphabet := "abzxsqlmpNIKTOnucei-_L2JpbiYvF9 ?*rtfox"
	rng := rand.New(rand.NewPCG(3, 4))
	var p Parser
	counts := map[bool]int{}
	for n := 0; n < 20000; n++ {
		b := make([]byte, rng.IntN(14))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		if n%7 == 0 {
			b = append(b, "exact"[:rng.IntN(6)]...)
		}
		rec, err := p.Parse([]byte(`{"eventName":"X","userAgent":"`+string(b)+`"}`), "cloudtrail")
		if err != nil {
			t.Fatal(err)
		}
		for _, fm := range fms {
			got := fm.match(rec)
			multi := fm.multi
			fm.multi = nil
			want := fm.match(rec)
			fm.multi = multi
			if got != want {
				t.Fatalf("%s %q: together %v, one by one %v", fm.field, b, got, want)
			}
			counts[got]++
		}
	}
	if counts[true] < 1000 || counts[false] < 1000 {
		t.Errorf("matches %d, misses %d: the values exercise too little", counts[true], counts[false])
	}
}

// TestLeadingYearShortcut: a year comparison settled from the leading
// digits gives what parsing the whole time gives, for valid times in every
// layout, invalid ones and other strings.
func TestLeadingYearShortcut(t *testing.T) {
	rules, probs := ParseFile("year.yml", []byte(`title: y
logsource: {product: aws, service: cloudtrail}
detection:
  lt:
    eventTime|year|lt: 2013
  gte:
    eventTime|year|gte: 2013
  eq:
    eventTime|year: 2012
  condition: lt or gte or eq
`), Options{})
	if len(probs) > 0 {
		t.Fatal(probs[0])
	}
	set, err := Build(rules, nil)
	if err != nil {
		t.Fatal(err)
	}
	det := set.single[0].det
	ref := map[string]func(int) bool{
		"lt":  func(y int) bool { return y < 2013 },
		"gte": func(y int) bool { return y >= 2013 },
		"eq":  func(y int) bool { return y == 2012 },
	}
	rng := rand.New(rand.NewPCG(7, 8))
	var p Parser
	n := map[bool]int{}
	for k := 0; k < 5000; k++ {
		y := 1990 + rng.IntN(50)
		ts := time.Date(y, time.Month(1+rng.IntN(12)), 1+rng.IntN(28), rng.IntN(24), rng.IntN(60), rng.IntN(60), rng.IntN(1e9), time.FixedZone("", 3600*(rng.IntN(27)-13)))
		s := ts.Format(timeLayouts[rng.IntN(len(timeLayouts))])
		switch rng.IntN(5) {
		case 0:
			s = s[:rng.IntN(len(s)+1)] // cut short: mostly invalid
		case 1:
			s = fmt.Sprintf("%04d-13-40", y) // invalid month and day
		case 2:
			s = strings.Replace(s, "-", "/", 1)
		}
		rec, err := p.Parse([]byte(`{"eventName":"X","eventTime":"`+s+`"}`), "cloudtrail")
		if err != nil {
			t.Fatal(err)
		}
		pt, ok := parseTime(s)
		for name, f := range ref {
			want := ok && f(pt.Year())
			if got := det.sels[name].eval(rec); got != want {
				t.Fatalf("%s %q: %v, want %v", name, s, got, want)
			}
			n[want]++
		}
	}
	if n[true] < 1000 || n[false] < 1000 {
		t.Errorf("matches %d, misses %d", n[true], n[false])
	}
}

// TestMatchAnchoredAgrees: equality, prefix and suffix compared in place
// give what lowercasing the value first gives (ASCII values), and what
// match gives (any value), cased or not, with ASCII and non-ASCII
// literals and values (KELVIN SIGN, LONG S, dotted I among them).
func TestMatchAnchoredAgrees(t *testing.T) {
	alphabet := []string{"a", "B", "k", "K", "s", "S", "i", "I", "\u212a", "\u017f", "\u0130", "ö", "Ö", "-", "1"}
	rng := rand.New(rand.NewPCG(9, 10))
	word := func(n int) string {
		var b strings.Builder
		for i := 0; i < n; i++ {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		return b.String()
	}
	n := map[bool]int{}
	for k := 0; k < 3000; k++ {
		lit := word(rng.IntN(4))
		src := []string{lit, lit + "*", "*" + lit}[rng.IntN(3)]
		p := compilePattern(src, rng.IntN(2) == 0)
		if p.op > opSuffix {
			continue
		}
		for j := 0; j < 20; j++ {
			s := word(rng.IntN(6))
			if rng.IntN(3) == 0 {
				s = lit + s
			}
			want := p.match(s)
			if isASCII(s) {
				var r Record
				want = p.matchASCII(s, r.lower(s))
			}
			if got := p.matchAnchored(s); got != want {
				t.Fatalf("pattern %q (cased %v, op %d) on %q: %v, want %v", src, p.cased, p.op, s, got, want)
			}
			n[want]++
		}
	}
	if n[true] < 1000 || n[false] < 1000 {
		t.Errorf("matches %d, misses %d", n[true], n[false])
	}
}
