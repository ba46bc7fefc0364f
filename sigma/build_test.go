package sigma

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"regexp/syntax"
	"strings"
	"testing"
)

// recordBuilder makes records that satisfy (or violate) a rule's condition,
// derived from the compiled detection: the test's way of writing, for any
// rule, an event built to match it and one built not to.
type recordBuilder struct {
	t   testing.TB
	rec map[string]any
}

func newRecord(src int) map[string]any {
	if src == srcVault {
		return map[string]any{
			"type": "response", "time": "2026-11-02T10:00:00Z",
			"auth":    map[string]any{"display_name": "base-user", "policies": []any{"default"}},
			"request": map[string]any{"id": "req-1", "operation": "read", "path": "base/path", "remote_address": "192.0.2.10"},
		}
	}
	return map[string]any{
		"eventVersion": "1.08", "eventTime": "2026-11-02T10:00:00Z", "eventID": "ev-1",
		"eventSource": "base.amazonaws.com", "eventName": "BaseEvent", "awsRegion": "us-east-1",
		"sourceIPAddress": "192.0.2.10", "userAgent": "base-agent",
		"userIdentity": map[string]any{"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/base", "accountId": "111122223333"},
	}
}

func setPath(rec map[string]any, path []string, v any) {
	m := rec
	for _, k := range path[:len(path)-1] {
		n, ok := m[k].(map[string]any)
		if !ok {
			n = map[string]any{}
			m[k] = n
		}
		m = n
	}
	if v == nil {
		delete(m, path[len(path)-1])
		return
	}
	m[path[len(path)-1]] = v
}

func getPath(rec map[string]any, path []string) any {
	var cur any = rec
	for _, k := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[k]
	}
	return cur
}

// goal: selection name → want it true
type goals map[*selection]bool

func solve(n node, want bool, g goals) {
	switch n := n.(type) {
	case *selNode:
		if _, set := g[n.sel]; !set {
			g[n.sel] = want
		}
	case *notNode:
		solve(n.kid, !want, g)
	case *andNode:
		if want {
			for _, k := range n.kids {
				solve(k, true, g)
			}
		} else {
			solve(n.kids[0], false, g)
		}
	case *orNode:
		if want {
			solve(n.kids[0], true, g)
		} else {
			for _, k := range n.kids {
				solve(k, false, g)
			}
		}
	case *ofNode:
		if (want && n.need == 0) || (!want && n.need > 0) {
			for _, s := range n.sels {
				solve(s, want, g)
			}
		} else {
			solve(n.sels[0], want, g)
		}
	}
}

// sample gives a string a pattern matches.
func sample(p *pattern) string {
	var b strings.Builder
	for _, t := range p.toks {
		switch {
		case t.star:
		case t.one:
			b.WriteByte('x')
		default:
			b.WriteString(t.s)
		}
	}
	return b.String()
}

// regexSample gives a string a regular expression matches (simple
// constructs only).
func regexSample(t testing.TB, src string) string {
	re, err := syntax.Parse(src, syntax.Perl)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	var walk func(r *syntax.Regexp)
	walk = func(r *syntax.Regexp) {
		switch r.Op {
		case syntax.OpLiteral:
			b.WriteString(string(r.Rune))
		case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
			b.WriteByte('a')
		case syntax.OpCharClass:
			b.WriteRune(r.Rune[0])
		case syntax.OpPlus:
			walk(r.Sub[0])
		case syntax.OpRepeat:
			for i := 0; i < r.Min; i++ {
				walk(r.Sub[0])
			}
		case syntax.OpConcat, syntax.OpCapture:
			for _, s := range r.Sub {
				walk(s)
			}
		case syntax.OpAlternate:
			walk(r.Sub[0])
		}
	}
	walk(re)
	return b.String()
}

const nonMatching = "zq-nonmatching-9"

func (b *recordBuilder) satisfy(fm *fieldMatcher) {
	var v any
	switch fm.kind {
	case kindExists:
		if fm.exists {
			v = "present"
		}
	case kindPattern:
		if fm.negate {
			v = nonMatching
			break
		}
		if fm.null && len(fm.pats) == 0 {
			v = nil
			break
		}
		if fm.all {
			var parts []string
			for _, p := range fm.pats {
				parts = append(parts, sample(p))
			}
			v = strings.Join(parts, " ")
			break
		}
		v = sample(fm.pats[0])
	case kindRegex:
		v = regexSample(b.t, fm.res[0].String())
	case kindCIDR:
		v = fm.cidrs[0].Addr().String()
	case kindCompare:
		v = fm.nums[0]
		if fm.cmp == cmpGT {
			v = fm.nums[0] + 1
		} else if fm.cmp == cmpLT {
			v = fm.nums[0] - 1
		}
	case kindFieldRef:
		v = getPath(b.rec, fm.refs[0])
		if v == nil {
			v = "ref-value"
			setPath(b.rec, fm.refs[0], v)
		}
	}
	setPath(b.rec, fm.path, v)
}

func (b *recordBuilder) violate(fm *fieldMatcher) {
	var v any = nonMatching
	switch fm.kind {
	case kindExists:
		if fm.exists {
			v = nil
		}
	case kindPattern:
		if fm.negate {
			v = sample(fm.pats[0])
		} else if fm.null {
			v = nonMatching
		}
		for _, p := range fm.pats {
			if p.op == opAny && !fm.negate {
				v = nil
			}
		}
	case kindCIDR:
		if fm.cidrs[0].Addr().Is4() && fm.cidrs[0].Bits() > 0 {
			v = "0.0.0.1"
		} else {
			v = "not-an-ip"
		}
	case kindCompare:
		v = fm.nums[0]
		switch fm.cmp {
		case cmpGT, cmpGTE:
			v = fm.nums[0] - 1
		case cmpLT, cmpLTE:
			v = fm.nums[0] + 1
		default:
			v = fm.nums[0] + 1
		}
	case kindFieldRef:
		setPath(b.rec, fm.refs[0], "ref-a")
		v = "ref-b"
	}
	setPath(b.rec, fm.path, v)
}

// buildRecord returns a record for which the rule's condition is want.
func buildRecord(t testing.TB, r *Rule, want bool) map[string]any {
	b := &recordBuilder{t: t, rec: newRecord(sourceOf(r.LogSource))}
	g := goals{}
	solve(r.det.cond, want, g)
	// violations first, so that satisfied selections win conflicts
	for _, name := range r.det.names {
		sel := r.det.sels[name]
		if w, ok := g[sel]; ok && !w {
			for _, alt := range sel.alts {
				b.violate(alt[0])
			}
			if sel.keywords != nil {
				b.rec["userAgent"] = nonMatching
			}
		}
	}
	for _, name := range r.det.names {
		sel := r.det.sels[name]
		if w, ok := g[sel]; ok && w {
			if sel.keywords != nil {
				b.rec["keyword"] = sample(sel.keywords[0])
				continue
			}
			for _, fm := range sel.alts[0] {
				b.satisfy(fm)
			}
		}
	}
	return b.rec
}

func mustRecord(t testing.TB, p *Parser, m map[string]any) *Record {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := p.Parse(b, "")
	if err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return rec
}

func describe(m map[string]any) string {
	b, _ := json.Marshal(m)
	return string(b)
}

var _ = fmt.Sprint
var _ = netip.Addr{}

func countCases(t *testing.T, file string) (pos, neg int) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(l) == "" {
			continue
		}
		var tc TestCase
		if err := json.Unmarshal([]byte(l), &tc); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if tc.Match {
			pos++
		} else {
			neg++
		}
	}
	return pos, neg
}
