package sigma

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"auditwatch/schema"
)

// The differential test: random rules over random records, evaluated by
// the engine (from the rule's YAML text: parser, compiler, index) and by a
// tiny reference evaluator written here from the specification, straight
// from the generated structure.

var (
	refFields = []string{"a", "b", "n.c", "arr", "num"}
	refValues = []string{"foo", "Foo", "FOO", "bar", "foobar", "xfoo", "", "fo*", "*oo", "b?r", "f\\*o", "42", "7"}
	refRecVal = []string{"foo", "Foo", "bar", "foobar", "xfoo", "barfoo", "", "f*o", "fxo", "42", "7", "b r",
		"10.1.2.3", "192.168.7.1:443", "::ffff:10.9.9.9", "2001:db8::5", "10.1.2"}
	refCIDRs = []string{"10.0.0.0/8", "192.168.0.0/16", "2001:db8::/32", "0.0.0.0/0"}
)

type refMatcher struct {
	field string
	mod   string // "", contains, startswith, endswith, re, exists, gt, lt, neq, cidr, fieldref
	cased bool
	all   bool
	null  bool
	vals  []string
}

type refCond struct {
	op   string // sel, and, or, not, oneof, allof, them1, themall
	sel  int
	kids []*refCond
}

type refRule struct {
	sels [][]refMatcher // selection i: AND of matchers
	cond *refCond
}

func genRule(r *rand.Rand) refRule {
	var rule refRule
	n := 1 + r.IntN(3)
	for i := 0; i < n; i++ {
		var sel []refMatcher
		used := map[string]bool{}
		for j := 0; j < 1+r.IntN(2); j++ {
			m := refMatcher{field: refFields[r.IntN(len(refFields))]}
			if used[m.field] {
				continue
			}
			used[m.field] = true
			m.mod = []string{"", "", "contains", "startswith", "endswith", "re", "exists", "gt", "lt", "neq", "cidr", "fieldref"}[r.IntN(12)]
			switch m.mod {
			case "cidr":
				for k := 1 + r.IntN(2); k > 0; k-- {
					m.vals = append(m.vals, refCIDRs[r.IntN(len(refCIDRs))])
				}
			case "fieldref":
				m.vals = []string{refFields[r.IntN(len(refFields))]}
				m.cased = r.IntN(4) == 0
			case "exists":
				m.vals = []string{[]string{"true", "false"}[r.IntN(2)]}
			case "gt", "lt":
				m.vals = []string{strconv.Itoa(r.IntN(50))}
			case "re":
				m.vals = []string{[]string{"^f", "o+$", "[a-z]{3}", "^$", "ba"}[r.IntN(5)]}
			default:
				if m.mod == "" && r.IntN(6) == 0 {
					m.null = true
					break
				}
				m.cased = r.IntN(4) == 0
				k := 1 + r.IntN(2)
				for v := 0; v < k; v++ {
					m.vals = append(m.vals, refValues[r.IntN(len(refValues))])
				}
				m.all = k > 1 && m.mod != "neq" && r.IntN(3) == 0
			}
			sel = append(sel, m)
		}
		rule.sels = append(rule.sels, sel)
	}
	rule.cond = genCond(r, len(rule.sels), 3)
	return rule
}

func genCond(r *rand.Rand, nsel, depth int) *refCond {
	k := r.IntN(8)
	if depth == 0 {
		k = 0
	}
	switch k {
	case 0, 1:
		return &refCond{op: "sel", sel: r.IntN(nsel)}
	case 2:
		return &refCond{op: "and", kids: []*refCond{genCond(r, nsel, depth-1), genCond(r, nsel, depth-1)}}
	case 3:
		return &refCond{op: "or", kids: []*refCond{genCond(r, nsel, depth-1), genCond(r, nsel, depth-1)}}
	case 4:
		return &refCond{op: "not", kids: []*refCond{genCond(r, nsel, depth-1)}}
	case 5:
		return &refCond{op: "oneof"}
	case 6:
		return &refCond{op: "allof"}
	}
	return &refCond{op: []string{"them1", "themall"}[r.IntN(2)]}
}

func yq(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func (rule refRule) yaml() string {
	var b strings.Builder
	b.WriteString("title: diff\nlogsource: {product: aws, service: cloudtrail}\ndetection:\n")
	for i, sel := range rule.sels {
		fmt.Fprintf(&b, "  sel_%d:\n", i)
		for _, m := range sel {
			key := m.field
			if m.mod != "" {
				key += "|" + m.mod
			}
			if m.cased {
				key += "|cased"
			}
			if m.all {
				key += "|all"
			}
			switch {
			case m.null:
				fmt.Fprintf(&b, "    %s: null\n", key)
			case len(m.vals) == 1:
				fmt.Fprintf(&b, "    %s: %s\n", key, yq(m.vals[0]))
			default:
				fmt.Fprintf(&b, "    %s:\n", key)
				for _, v := range m.vals {
					fmt.Fprintf(&b, "      - %s\n", yq(v))
				}
			}
		}
	}
	fmt.Fprintf(&b, "  condition: %s\n", rule.cond.text())
	return b.String()
}

func (c *refCond) text() string {
	switch c.op {
	case "sel":
		return fmt.Sprintf("sel_%d", c.sel)
	case "and":
		return "(" + c.kids[0].text() + " and " + c.kids[1].text() + ")"
	case "or":
		return "(" + c.kids[0].text() + " or " + c.kids[1].text() + ")"
	case "not":
		return "not " + c.kids[0].text()
	case "oneof":
		return "1 of sel_*"
	case "allof":
		return "all of sel_*"
	case "them1":
		return "1 of them"
	}
	return "all of them"
}

// reference evaluation

func refLookup(rec map[string]any, field string) (vals []any, present bool) {
	var cur any = rec
	for _, k := range strings.Split(field, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		cur, ok = m[k]
		if !ok {
			return nil, false
		}
	}
	if arr, ok := cur.([]any); ok {
		return arr, true
	}
	return []any{cur}, true
}

func refText(v any) (string, bool) {
	switch x := v.(type) {
	case nil:
		return "", false
	case string:
		return x, true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	}
	b, _ := json.Marshal(v)
	return string(b), true
}

// refWildcard turns a Sigma value into an anchored regular expression.
func refWildcard(v, mod string, cased bool) *regexp.Regexp {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '\\' && i+1 < len(v) && strings.IndexByte(`*?\`, v[i+1]) >= 0:
			b.WriteString(regexp.QuoteMeta(string(v[i+1])))
			i++
		case c == '*':
			b.WriteString(".*")
		case c == '?':
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	p := b.String()
	switch mod {
	case "contains":
		p = ".*" + p + ".*"
	case "startswith":
		p = p + ".*"
	case "endswith":
		p = ".*" + p
	}
	flags := "(?s)"
	if !cased {
		flags = "(?is)"
	}
	return regexp.MustCompile(flags + "^" + p + "$")
}

func refEvalMatcher(m refMatcher, rec map[string]any) bool {
	vals, present := refLookup(rec, m.field)
	texts := []string{}
	for _, v := range vals {
		if s, ok := refText(v); ok {
			texts = append(texts, s)
		}
	}
	anyText := func(f func(string) bool) bool {
		for _, s := range texts {
			if f(s) {
				return true
			}
		}
		return false
	}
	switch m.mod {
	case "exists":
		return present == (m.vals[0] == "true")
	case "cidr":
		// a value is an address (or address:port); IPv4-mapped IPv6
		// addresses count as IPv4
		return anyText(func(s string) bool {
			a, err := netip.ParseAddr(strings.TrimSpace(s))
			if err != nil {
				ap, err := netip.ParseAddrPort(s)
				if err != nil {
					return false
				}
				a = ap.Addr()
			}
			for _, c := range m.vals {
				if netip.MustParsePrefix(c).Contains(a.Unmap()) {
					return true
				}
			}
			return false
		})
	case "fieldref":
		// equal to a (non-null) value of the other field, case-insensitive
		// unless cased
		refVals, _ := refLookup(rec, m.vals[0])
		return anyText(func(s string) bool {
			for _, v := range refVals {
				o, ok := refText(v)
				if ok && (s == o || !m.cased && strings.EqualFold(s, o)) {
					return true
				}
			}
			return false
		})
	case "gt", "lt":
		n, _ := strconv.ParseFloat(m.vals[0], 64)
		return anyText(func(s string) bool {
			x, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return false
			}
			if m.mod == "gt" {
				return x > n
			}
			return x < n
		})
	case "re":
		rx := regexp.MustCompile(m.vals[0])
		return anyText(rx.MatchString)
	}
	if m.null {
		return len(texts) == 0
	}
	mod := m.mod
	if mod == "neq" {
		mod = ""
	}
	one := func(v string) bool { return anyText(refWildcard(v, mod, m.cased).MatchString) }
	var hit bool
	if m.all {
		hit = true
		for _, v := range m.vals {
			hit = hit && one(v)
		}
	} else {
		for _, v := range m.vals {
			hit = hit || one(v)
		}
	}
	if m.mod == "neq" {
		return !hit
	}
	return hit
}

func (rule refRule) eval(rec map[string]any) bool {
	sel := func(i int) bool {
		for _, m := range rule.sels[i] {
			if !refEvalMatcher(m, rec) {
				return false
			}
		}
		return true
	}
	var ev func(c *refCond) bool
	ev = func(c *refCond) bool {
		switch c.op {
		case "sel":
			return sel(c.sel)
		case "and":
			return ev(c.kids[0]) && ev(c.kids[1])
		case "or":
			return ev(c.kids[0]) || ev(c.kids[1])
		case "not":
			return !ev(c.kids[0])
		case "oneof", "them1":
			for i := range rule.sels {
				if sel(i) {
					return true
				}
			}
			return false
		}
		for i := range rule.sels {
			if !sel(i) {
				return false
			}
		}
		return true
	}
	return ev(rule.cond)
}

func genRecord(r *rand.Rand) map[string]any {
	rec := map[string]any{"eventSource": "x.amazonaws.com", "eventName": "X"}
	pick := func() any {
		switch r.IntN(8) {
		case 0:
			return nil
		case 1:
			return float64(r.IntN(50))
		}
		return refRecVal[r.IntN(len(refRecVal))]
	}
	for _, f := range refFields {
		if r.IntN(4) == 0 {
			continue
		}
		var v any = pick()
		if f == "arr" {
			var arr []any
			for k := r.IntN(3); k > 0; k-- {
				arr = append(arr, pick())
			}
			v = arr
		}
		if f == "n.c" {
			rec["n"] = map[string]any{"c": v}
			continue
		}
		rec[f] = v
	}
	return rec
}

func TestDifferential(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var p, p2 Parser
	rules, records := 400, 60
	if testing.Short() {
		rules = 100
	}
	fired, silent := 0, 0
	modHit, modMiss := map[string]int{}, map[string]int{}
	for i := 0; i < rules; i++ {
		rule := genRule(r)
		src := rule.yaml()
		parsed, probs := ParseFile("diff.yml", []byte(src), Options{})
		if len(probs) > 0 {
			t.Fatalf("%s\n%v", src, probs[0])
		}
		set, err := Build(parsed, nil)
		if err != nil {
			t.Fatal(err)
		}
		for j := 0; j < records; j++ {
			rec := genRecord(r)
			b, _ := json.Marshal(rec)
			pr, err := p.Parse(b, "")
			if err != nil {
				t.Fatal(err)
			}
			want := rule.eval(rec)
			for _, sel := range rule.sels {
				for _, m := range sel {
					if refEvalMatcher(m, rec) {
						modHit[m.mod]++
					} else {
						modMiss[m.mod]++
					}
				}
			}
			got := len(set.Match(pr, nil)) > 0
			if got != want {
				t.Fatalf("rule:\n%s\nrecord %s: engine %v, reference %v", src, b, got, want)
			}
			// the same through the index, the prefilter and lazy reading
			ev := schema.Event{Source: schema.SourceCloudTrail, Action: "x:X", Raw: b}
			hits, _, err := set.MatchEvent(&ev, &p2, nil)
			if err != nil {
				t.Fatal(err)
			}
			if (len(hits) > 0) != want {
				t.Fatalf("rule:\n%s\nrecord %s: MatchEvent %v, reference %v", src, b, len(hits) > 0, want)
			}
			if got {
				fired++
			} else {
				silent++
			}
		}
	}
	// the generator must exercise both outcomes
	if fired < rules || silent < rules {
		t.Errorf("%d matches, %d non-matches: the generator is lopsided", fired, silent)
	}
	// and both outcomes of every modifier it generates
	for _, mod := range []string{"", "contains", "startswith", "endswith", "re", "exists", "gt", "lt", "neq", "cidr", "fieldref"} {
		if modHit[mod] == 0 || modMiss[mod] == 0 {
			t.Errorf("modifier %q: %d matching and %d non-matching values generated, want both", mod, modHit[mod], modMiss[mod])
		}
	}
	t.Logf("matcher outcomes (match/no match): %v / %v", modHit, modMiss)
}
