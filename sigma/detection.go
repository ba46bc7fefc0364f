package sigma

import (
	"encoding/base64"
	"encoding/binary"
	"net/netip"
	"regexp"
	"regexp/syntax"
	"sort"
	"strconv"
	"strings"
	"unicode/utf16"

	"go.yaml.in/yaml/v3"
)

// detection is a compiled detection section.
type detection struct {
	// forms are the modifiers, value kinds and condition forms used
	// (Rule.Forms)
	forms map[string]bool
	names []string // selection names in file order
	sels  map[string]*selection
	cond  node
}

// selection is one named search identifier: OR of alternatives, each an
// AND of field matchers; or a keyword list.
type selection struct {
	alts     [][]*fieldMatcher // OR of AND
	keywords []*pattern        // OR; matched against every string value
}

// fieldMatcher tests one field against its values.
type fieldMatcher struct {
	field  string
	path   []string
	all    bool // every value must match (else any)
	negate bool // neq
	kind   int
	pats   []*pattern
	exists bool
	res    []*regexp.Regexp
	cidrs  []netip.Prefix
	nums   []float64
	cmp    int // for kindCompare: cmpLT…
	timeOf int // time component, 0 = none
	refs   [][]string
	refPos int // fieldref: posEq/posContains/…
	cased  bool
	null   bool // value null: field absent or null (one alternative among pats)
	// per expression: lowercase literals one of which a match holds (nil:
	// none known), and whether it folds case (Unicode folding: a value
	// with non-ASCII bytes is not prefiltered)
	reLits [][]string
	reFold []bool
	// multi: the contains patterns searched together in an ASCII value
	// (nil: searched one by one); rest: the other patterns
	multi *multiContains
	rest  []*pattern
	// anchored: every pattern is an equality, prefix or suffix (compared
	// in place, matchAnchored), and the matcher takes any value
	anchored bool
}

const (
	kindPattern = iota
	kindExists
	kindRegex
	kindCIDR
	kindCompare
	kindFieldRef
)

const (
	cmpEQ = iota
	cmpLT
	cmpLTE
	cmpGT
	cmpGTE
)

const (
	timeNone = iota
	timeMinute
	timeHour
	timeDay
	timeWeek
	timeMonth
	timeYear
)

const (
	posEq = iota
	posContains
	posStarts
	posEnds
)

func compileDetection(d *yaml.Node, opt Options) (*detection, *perr) {
	if d.Kind != yaml.MappingNode {
		return nil, invalid(d, "detection must be a mapping")
	}
	det := &detection{sels: map[string]*selection{}, forms: map[string]bool{}}
	opt.forms = det.forms
	var condNode *yaml.Node
	var timeframe *yaml.Node
	for i := 0; i+1 < len(d.Content); i += 2 {
		k, v := d.Content[i], d.Content[i+1]
		switch k.Value {
		case "condition":
			condNode = v
			continue
		case "timeframe":
			timeframe = v
			continue
		}
		if _, dup := det.sels[k.Value]; dup {
			return nil, invalid(k, "selection %q is defined twice", k.Value)
		}
		sel, e := compileSelection(v, opt)
		if e != nil {
			return nil, e
		}
		det.names = append(det.names, k.Value)
		det.sels[k.Value] = sel
	}
	if condNode == nil {
		return nil, invalid(d, "detection has no condition")
	}
	var conds []string
	switch condNode.Kind {
	case yaml.ScalarNode:
		conds = []string{condNode.Value}
	case yaml.SequenceNode:
		for _, c := range condNode.Content {
			if c.Kind != yaml.ScalarNode {
				return nil, invalid(c, "condition must be a string or a list of strings")
			}
			conds = append(conds, c.Value)
		}
	default:
		return nil, invalid(condNode, "condition must be a string or a list of strings")
	}
	if len(conds) == 0 {
		return nil, invalid(condNode, "condition is empty")
	}
	if len(conds) > 1 {
		det.forms["condition list"] = true
	}
	var root node
	for _, c := range conds {
		nd, err := parseCondition(c, det)
		if err != nil {
			if err.unsupported {
				return nil, unsupported(condNode, "condition %q: %s", c, err.msg)
			}
			return nil, invalid(condNode, "condition %q: %s", c, err.msg)
		}
		if root == nil {
			root = nd
		} else {
			root = &orNode{kids: []node{root, nd}}
		}
	}
	if timeframe != nil {
		return nil, unsupported(timeframe, "timeframe belongs to the legacy aggregation syntax, which is not supported (use a correlation rule)")
	}
	det.cond = root
	return det, nil
}

func compileSelection(v *yaml.Node, opt Options) (*selection, *perr) {
	sel := &selection{}
	switch v.Kind {
	case yaml.MappingNode:
		fms, e := compileMap(v, opt)
		if e != nil {
			return nil, e
		}
		sel.alts = [][]*fieldMatcher{fms}
	case yaml.SequenceNode:
		if len(v.Content) == 0 {
			return nil, invalid(v, "empty selection list")
		}
		for _, c := range v.Content {
			switch c.Kind {
			case yaml.MappingNode:
				fms, e := compileMap(c, opt)
				if e != nil {
					return nil, e
				}
				sel.alts = append(sel.alts, fms)
				opt.forms["list of maps"] = true
			case yaml.ScalarNode:
				if c.Tag == "!!null" {
					return nil, invalid(c, "null keyword")
				}
				p, e := keywordPattern(c)
				if e != nil {
					return nil, e
				}
				sel.keywords = append(sel.keywords, p)
				opt.forms["keywords"] = true
			default:
				return nil, invalid(c, "a selection list holds mappings or keywords")
			}
		}
		if len(sel.alts) > 0 && len(sel.keywords) > 0 {
			return nil, invalid(v, "a selection list mixes mappings and keywords")
		}
	case yaml.ScalarNode:
		if v.Tag == "!!null" {
			return nil, invalid(v, "empty selection")
		}
		p, e := keywordPattern(v)
		if e != nil {
			return nil, e
		}
		sel.keywords = []*pattern{p}
		opt.forms["keywords"] = true
	default:
		return nil, invalid(v, "a selection must be a mapping, a list or a keyword")
	}
	return sel, nil
}

func keywordPattern(n *yaml.Node) (*pattern, *perr) {
	// keywords match anywhere in a value
	return compilePattern("*"+n.Value+"*", false), nil
}

func compileMap(m *yaml.Node, opt Options) ([]*fieldMatcher, *perr) {
	if len(m.Content) == 0 {
		return nil, invalid(m, "empty selection mapping")
	}
	var out []*fieldMatcher
	for i := 0; i+1 < len(m.Content); i += 2 {
		fm, e := compileField(m.Content[i], m.Content[i+1], opt)
		if e != nil {
			return nil, e
		}
		out = append(out, fm)
	}
	// an AND evaluates cheap matchers first (the result is the same)
	sort.SliceStable(out, func(i, j int) bool { return out[i].cost() < out[j].cost() })
	return out, nil
}

// cost ranks matchers by what evaluating them costs.
func (fm *fieldMatcher) cost() int {
	switch fm.kind {
	case kindExists, kindPattern:
		return 0
	case kindCIDR, kindCompare:
		return 1
	case kindRegex:
		return 2
	}
	return 3
}

// value is one value of a field before it becomes a matcher: a pattern
// source (wildcards apply) or a literal.
type value struct {
	s       string
	literal bool
	null    bool
}

var windashChars = []string{"-", "/", "\u2013", "\u2014", "\u2015"}

func compileField(k, v *yaml.Node, opt Options) (*fieldMatcher, *perr) {
	if k.Kind != yaml.ScalarNode {
		return nil, invalid(k, "field name must be a string")
	}
	parts := strings.Split(k.Value, "|")
	field := parts[0]
	if field == "" {
		return nil, unsupported(k, "modifiers without a field name (%q) are not supported", k.Value)
	}
	fm := &fieldMatcher{field: field, path: strings.Split(field, ".")}
	// collect values
	var vals []value
	switch v.Kind {
	case yaml.ScalarNode:
		vals = []value{scalarValue(v)}
	case yaml.SequenceNode:
		if len(v.Content) == 0 {
			return nil, invalid(v, "field %s has an empty list of values", field)
		}
		for _, c := range v.Content {
			if c.Kind != yaml.ScalarNode {
				return nil, invalid(c, "field %s: values must be scalars", field)
			}
			vals = append(vals, scalarValue(c))
		}
	default:
		return nil, invalid(v, "field %s: value must be a scalar or a list", field)
	}
	pos := posEq
	re := false
	reFlags := ""
	base64Kind := 0
	if opt.forms != nil {
		for _, mod := range parts[1:] {
			if mod == "i" || mod == "m" || mod == "s" {
				mod = "re|" + mod
			}
			opt.forms[mod] = true
		}
		if len(vals) > 1 {
			opt.forms["value list"] = true
		}
		for _, x := range vals {
			switch {
			case x.null:
				opt.forms["null"] = true
			case strings.Contains(x.s, `\*`) || strings.Contains(x.s, `\?`):
				opt.forms["escaped wildcard"] = true
			}
			if !x.null {
				unesc := strings.NewReplacer(`\\`, "", `\*`, "", `\?`, "").Replace(x.s)
				if strings.Contains(unesc, "*") {
					opt.forms["wildcard *"] = true
				}
				if strings.Contains(unesc, "?") {
					opt.forms["wildcard ?"] = true
				}
			}
		}
	}
	for _, mod := range parts[1:] {
		switch mod {
		case "contains":
			pos = posContains
		case "startswith":
			pos = posStarts
		case "endswith":
			pos = posEnds
		case "all":
			fm.all = true
		case "cased":
			fm.cased = true
		case "neq":
			fm.negate = true
		case "exists":
			fm.kind = kindExists
		case "re":
			re = true
		case "i", "m", "s":
			if !re {
				return nil, invalid(k, "modifier %q only follows re", mod)
			}
			reFlags += mod
		case "cidr":
			fm.kind = kindCIDR
		case "lt", "lte", "gt", "gte":
			fm.kind = kindCompare
			fm.cmp = map[string]int{"lt": cmpLT, "lte": cmpLTE, "gt": cmpGT, "gte": cmpGTE}[mod]
		case "minute", "hour", "day", "week", "month", "year":
			fm.timeOf = map[string]int{"minute": timeMinute, "hour": timeHour, "day": timeDay, "week": timeWeek, "month": timeMonth, "year": timeYear}[mod]
			if fm.kind != kindCompare {
				fm.kind = kindCompare
				fm.cmp = cmpEQ
			}
		case "fieldref":
			fm.kind = kindFieldRef
		case "utf16le", "wide", "utf16be", "utf16":
			for i := range vals {
				vals[i] = value{s: encodeUTF16(vals[i].s, mod), literal: true}
			}
		case "base64", "base64offset":
			if mod == "base64" {
				base64Kind = 1
				for i := range vals {
					vals[i] = value{s: base64.StdEncoding.EncodeToString([]byte(vals[i].s)), literal: true}
				}
			} else {
				base64Kind = 2
				var nv []value
				for _, x := range vals {
					for _, s := range base64Offsets(x.s) {
						nv = append(nv, value{s: s, literal: true})
					}
				}
				vals = nv
			}
		case "windash":
			var nv []value
			for _, x := range vals {
				for _, s := range windash(x.s) {
					nv = append(nv, value{s: s, literal: x.literal})
				}
			}
			if len(nv) > 4096 {
				return nil, invalid(k, "windash: too many permutations")
			}
			vals = nv
		case "expand":
			var nv []value
			for _, x := range vals {
				ex, e := expand(x, opt.Placeholders, k)
				if e != nil {
					return nil, e
				}
				nv = append(nv, ex...)
			}
			vals = nv
		default:
			return nil, invalid(k, "unknown modifier %q", mod)
		}
	}
	if base64Kind == 2 && pos != posContains {
		return nil, invalid(k, "base64offset must be combined with contains")
	}
	if fm.all && len(vals) < 2 {
		// the specification forbids it; evaluated as the single value
		fm.all = false
	}
	if re {
		if fm.kind != kindPattern {
			return nil, invalid(k, "re cannot be combined with %s", k.Value)
		}
		fm.kind = kindRegex
	}
	switch fm.kind {
	case kindExists:
		if len(vals) != 1 || vals[0].null {
			return nil, invalid(v, "exists takes one boolean")
		}
		b, err := strconv.ParseBool(vals[0].s)
		if err != nil {
			return nil, invalid(v, "exists takes true or false, not %q", vals[0].s)
		}
		fm.exists = b
	case kindRegex:
		for _, x := range vals {
			src := x.s
			if reFlags != "" {
				src = "(?" + reFlags + ")" + src
			}
			rx, err := regexp.Compile(src)
			if err != nil {
				return nil, invalid(v, "field %s: regular expression %q: %v", field, x.s, err)
			}
			fm.res = append(fm.res, rx)
			// literals one of which a match holds: checked on the value
			// before the expression runs
			var lits []string
			fold := false
			if re, err := syntax.Parse(rx.String(), syntax.Perl); err == nil {
				lits = literalsOfRegex(re)
				fold = foldsCase(re)
			}
			fm.reLits = append(fm.reLits, lits)
			fm.reFold = append(fm.reFold, fold)
		}
	case kindCIDR:
		for _, x := range vals {
			p, err := netip.ParsePrefix(strings.TrimSpace(x.s))
			if err != nil {
				return nil, invalid(v, "field %s: %q is not a CIDR prefix", field, x.s)
			}
			fm.cidrs = append(fm.cidrs, p.Masked())
		}
	case kindCompare:
		for _, x := range vals {
			f, err := strconv.ParseFloat(x.s, 64)
			if err != nil || x.null {
				return nil, invalid(v, "field %s: %q is not a number", field, x.s)
			}
			fm.nums = append(fm.nums, f)
		}
	case kindFieldRef:
		for _, x := range vals {
			if x.null || x.s == "" {
				return nil, invalid(v, "fieldref needs a field name")
			}
			fm.refs = append(fm.refs, strings.Split(x.s, "."))
		}
		fm.refPos = pos
	default:
		for _, x := range vals {
			if x.null {
				fm.null = true
				continue
			}
			s := x.s
			if x.literal {
				s = escapeWildcards(s)
			}
			switch pos {
			case posContains:
				s = "*" + s + "*"
			case posStarts:
				s = s + "*"
			case posEnds:
				s = "*" + s
			}
			fm.pats = append(fm.pats, compilePattern(s, fm.cased))
		}
		fm.splitMulti()
	}
	return fm, nil
}

// splitMulti gathers the matcher's "contains" patterns into one search
// when there are enough of them (any value matching, not all).
func (fm *fieldMatcher) splitMulti() {
	if fm.all {
		return
	}
	fm.anchored = len(fm.pats) > 0
	for _, p := range fm.pats {
		fm.anchored = fm.anchored && p.op <= opSuffix
	}
	var lits []string
	var rest []*pattern
	for _, p := range fm.pats {
		if p.op == opContains && p.lit != "" {
			lits = append(lits, p.lit)
		} else {
			rest = append(rest, p)
		}
	}
	if m := newMultiContains(lits); m != nil {
		fm.multi, fm.rest = m, rest
	}
}

func scalarValue(n *yaml.Node) value {
	if n.Tag == "!!null" {
		return value{null: true}
	}
	return value{s: n.Value}
}

func escapeWildcards(s string) string {
	if !strings.ContainsAny(s, `*?\`) {
		return s
	}
	var b strings.Builder
	for _, c := range s {
		if c == '*' || c == '?' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func encodeUTF16(s, mod string) string {
	u := utf16.Encode([]rune(s))
	var b []byte
	if mod == "utf16" {
		b = append(b, 0xFF, 0xFE)
	}
	for _, c := range u {
		if mod == "utf16be" {
			b = binary.BigEndian.AppendUint16(b, c)
		} else {
			b = binary.LittleEndian.AppendUint16(b, c)
		}
	}
	return string(b)
}

// base64Offsets gives the three encodings of s at byte offsets 0, 1 and 2
// of a longer base64 text, without the characters that depend on the
// surrounding bytes.
func base64Offsets(s string) []string {
	start := [3]int{0, 2, 3}
	endTrim := [3]int{0, 3, 2}
	var out []string
	for i := 0; i < 3; i++ {
		enc := base64.StdEncoding.EncodeToString(append([]byte(strings.Repeat(" ", i)), s...))
		end := len(enc) - endTrim[(len(s)+i)%3]
		if start[i] >= end {
			continue
		}
		out = append(out, enc[start[i]:end])
	}
	return out
}

func windash(s string) []string {
	// positions of dashes at the start of a word
	var pos []int
	rs := []rune(s)
	for i, c := range rs {
		if (i == 0 || rs[i-1] == ' ' || rs[i-1] == '\t') && isDash(c) {
			pos = append(pos, i)
		}
	}
	if len(pos) == 0 {
		return []string{s}
	}
	if len(pos) > 5 {
		pos = pos[:5]
	}
	var out []string
	var rec func(k int)
	rec = func(k int) {
		if k == len(pos) {
			out = append(out, string(rs))
			return
		}
		orig := rs[pos[k]]
		for _, d := range windashChars {
			rs[pos[k]] = []rune(d)[0]
			rec(k + 1)
		}
		rs[pos[k]] = orig
	}
	rec(0)
	return out
}

func isDash(c rune) bool {
	for _, d := range windashChars {
		if []rune(d)[0] == c {
			return true
		}
	}
	return false
}

var placeholderRE = regexp.MustCompile(`%([A-Za-z0-9_.-]+)%`)

func expand(x value, ph map[string][]string, k *yaml.Node) ([]value, *perr) {
	m := placeholderRE.FindStringSubmatchIndex(x.s)
	if m == nil {
		return []value{x}, nil
	}
	name := x.s[m[2]:m[3]]
	vals, ok := ph[name]
	if !ok {
		return nil, unsupported(k, "placeholder %%%s%% has no value (set rules.placeholders.%s)", name, name)
	}
	var out []value
	for _, v := range vals {
		rest, e := expand(value{s: x.s[:m[0]] + v + x.s[m[1]:], literal: x.literal}, ph, k)
		if e != nil {
			return nil, e
		}
		out = append(out, rest...)
		if len(out) > 4096 {
			return nil, invalid(k, "expand: too many values")
		}
	}
	return out, nil
}

// literalValues reports the exact, case-insensitive values a field must
// take for the matcher to match (lowercased), or ok=false.
func (fm *fieldMatcher) literalValues() (vals []string, ok bool) {
	if fm.kind != kindPattern || fm.negate || fm.all || fm.null || len(fm.pats) == 0 {
		return nil, false
	}
	for _, p := range fm.pats {
		if p.op != opEqual {
			return nil, false
		}
		vals = append(vals, strings.ToLower(p.lit))
	}
	sort.Strings(vals)
	return vals, true
}

// form notes a form the detection uses.
func (d *detection) form(f string) {
	if d.forms != nil {
		d.forms[f] = true
	}
}

// FormModifiers are the value modifiers the evaluator knows, as Forms
// names them (the flags of re as re|i, re|m, re|s).
var FormModifiers = []string{"contains", "startswith", "endswith", "all", "cased", "exists", "neq",
	"re", "re|i", "re|m", "re|s", "cidr", "base64", "base64offset", "utf16le", "utf16be", "utf16", "wide",
	"windash", "lt", "lte", "gt", "gte", "fieldref", "minute", "hour", "day", "week", "month", "year", "expand"}

// FormConditions are the condition forms and value kinds Forms names.
var FormConditions = []string{"and", "or", "not", "parentheses", "1 of X*", "all of X*", "1 of them", "all of them",
	"keywords", "null", "wildcard *", "wildcard ?", "escaped wildcard", "value list", "list of maps"}

// Forms lists the modifiers, value kinds and condition forms a
// single-event rule's detection uses, sorted (nil for correlations).
func (r *Rule) Forms() []string {
	if r.det == nil {
		return nil
	}
	return sortedKeys(r.det.forms)
}
