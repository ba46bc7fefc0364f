package sigma

import (
	"bytes"
	"errors"
	"fmt"
	"hash/maphash"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"auditwatch/schema"
)

// Set is a compiled, indexed rule set. It is immutable once built and
// safe for concurrent use (evaluation state lives in the caller's Parser
// and Correlator).
type Set struct {
	Rules []*Rule // every loaded rule, single-event and correlation, in load order
	// Problems are the unsupported rules that were skipped (invalid ones
	// make Load fail).
	Problems []*Problem

	single []*Rule // single-event rules that raise findings or feed correlations
	corrs  []*Rule // correlation rules
	// index: per source, the rules that need a given literal value of the
	// index field, and those that run on every record
	idx [3]index
	// feeds: for each single-event rule, the correlations it feeds
	feeds map[*Rule][]*Rule
	// pre: per single rule, the literals (positions in lits) one of which
	// a matching record's text holds (nil: none known, or not checked)
	pre  [][]int
	lits []string
	// plan: per single rule, its literals grouped by the byte searched
	// for; unsafe: some literal of the rule holds a letter a non-ASCII
	// character lowercases or folds to (holdsOne)
	plan   [][]anchorGroup
	unsafe []bool
	// uaOnly: per single rule, every field it reads is userAgent (a
	// CloudTrail record's user agent, which the reader's normalized event
	// gives Wants: see uaField)
	uaOnly []bool
	// need2: per single rule, the values of a second field of its source
	// (sub2) one of which its condition needs (nil: none); checked from
	// the normalized event, for rules the index does not place
	need2 [][]string
	// hot: per single rule, what matchEvent reads of it side by side
	hot []hotRule
	// noPrefilter evaluates every candidate (differential tests)
	noPrefilter bool
	// memo: hits found by Wants, for Evaluator.Process
	memo *hitMemo
	// bare: hits of records Wants let go uncopied, for Evaluator.Process
	bare *bareMemo
	// marks: hits Wants writes on the event itself
	marks marks
	// parser: a Parser for Wants
	parser atomic.Pointer[Parser]
}

type index struct {
	name   string
	field  []string
	byVal  map[string][]int // lowercased value → positions in single
	always []int
}

// LoadError is returned by Load when some rules are invalid: the set is
// rejected as a whole.
type LoadError struct{ Problems []*Problem }

func (e *LoadError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "sigma: %d invalid rule(s)", len(e.Problems))
	for i, p := range e.Problems {
		if i == 5 {
			fmt.Fprintf(&b, "; and %d more", len(e.Problems)-5)
			break
		}
		b.WriteString("; ")
		b.WriteString(p.Error())
	}
	return b.String()
}

// IsRuleFile reports whether a path names a rule file (.yml or .yaml).
func IsRuleFile(p string) bool {
	ext := strings.ToLower(filepath.Ext(p))
	return ext == ".yml" || ext == ".yaml"
}

// Files expands paths (files and folders, recursively) to rule files,
// sorted within each folder.
func Files(paths []string) ([]string, error) {
	var out []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("sigma: rules path: %w", err)
		}
		if !st.IsDir() {
			out = append(out, p)
			continue
		}
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			// hidden folders, and testdata (rules that exist only to be
			// tested: given by their own path, they load)
			if d.IsDir() && path != p && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
				return filepath.SkipDir
			}
			if !d.IsDir() && IsRuleFile(path) {
				out = append(out, path)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("sigma: rules path %s: %w", p, err)
		}
	}
	return out, nil
}

// maxRuleFile bounds one rule file's size.
const maxRuleFile = 4 << 20

// licenseOf finds a licence declared by a LICENSE file in the rule's
// folder or one above it (up to the root given).
func licenseOf(file string, cache map[string]string) string {
	dir := filepath.Dir(file)
	var visited []string
	found := ""
	for i := 0; i < 4; i++ {
		if l, ok := cache[dir]; ok {
			found = l
			break
		}
		visited = append(visited, dir)
		for _, n := range []string{"LICENSE", "LICENSE.md", "LICENSE.txt"} {
			b, err := os.ReadFile(filepath.Join(dir, n))
			if err != nil {
				continue
			}
			if bytes.Contains(b, []byte("Detection Rule License")) {
				found = "DRL-1.1"
			} else {
				first, _, _ := bytes.Cut(bytes.TrimSpace(b), []byte("\n"))
				found = strings.TrimSpace(strings.TrimLeft(string(first), "# "))
			}
			break
		}
		if found != "" {
			break
		}
		up := filepath.Dir(dir)
		if up == dir {
			break
		}
		dir = up
	}
	for _, d := range visited {
		cache[d] = found
	}
	return found
}

// Result is the outcome of loading rule files: the rules, and every
// problem by kind.
type Result struct {
	Rules       []*Rule
	Invalid     []*Problem
	Unsupported []*Problem
	// FileOf counts rules per file (for reports).
	Files []string
}

// ParseFiles reads and parses rule files, without building a set.
func ParseFiles(files []string, opt Options) *Result {
	res := &Result{Files: files}
	lic := map[string]string{}
	for _, f := range files {
		st, err := os.Stat(f)
		if err == nil && st.Size() > maxRuleFile {
			res.Invalid = append(res.Invalid, &Problem{File: f, Kind: KindInvalid, Msg: fmt.Sprintf("file is larger than %d bytes", maxRuleFile)})
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			res.Invalid = append(res.Invalid, &Problem{File: f, Kind: KindInvalid, Msg: err.Error()})
			continue
		}
		o := opt
		if o.License == "" {
			o.License = licenseOf(f, lic)
		}
		rules, probs := ParseFile(f, b, o)
		res.Rules = append(res.Rules, rules...)
		for _, p := range probs {
			if p.Kind == KindInvalid {
				res.Invalid = append(res.Invalid, p)
			} else {
				res.Unsupported = append(res.Unsupported, p)
			}
		}
	}
	return res
}

// Load reads rule files and folders and builds a Set. Any invalid rule
// rejects the whole set (a *LoadError); unsupported rules are skipped and
// listed in Set.Problems.
func Load(paths []string, opt Options) (*Set, error) {
	files, err := Files(paths)
	if err != nil {
		return nil, err
	}
	res := ParseFiles(files, opt)
	if len(res.Invalid) > 0 {
		return nil, &LoadError{Problems: res.Invalid}
	}
	return Build(res.Rules, res.Unsupported)
}

// Build indexes parsed rules into a Set, resolving correlation
// references. A reference to a missing rule is invalid; to a rule that was
// skipped as unsupported makes the correlation unsupported too.
func Build(rules []*Rule, skipped []*Problem) (*Set, error) {
	s, invalids := build(rules, skipped)
	if len(invalids) > 0 {
		return nil, &LoadError{Problems: invalids}
	}
	return s, nil
}

// Check parses rule files and folders and builds what is valid, reporting
// every problem (rules check): the set holds the loaded rules even when
// some are invalid.
func Check(paths []string, opt Options) (*Set, *Result, error) {
	files, err := Files(paths)
	if err != nil {
		return nil, nil, err
	}
	res := ParseFiles(files, opt)
	s, invalids := build(res.Rules, res.Unsupported)
	res.Invalid = append(res.Invalid, invalids...)
	res.Unsupported = s.Problems
	sortProblems(res.Invalid)
	sortProblems(res.Unsupported)
	return s, res, nil
}

func build(rules []*Rule, skipped []*Problem) (*Set, []*Problem) {
	s := &Set{Problems: skipped, feeds: map[*Rule][]*Rule{}, memo: newHitMemo(), bare: newBareMemo()}
	byRef := map[string]*Rule{}
	dup := map[string]bool{}
	var invalids []*Problem
	for _, r := range rules {
		for _, k := range []string{r.ID, r.Name} {
			if k == "" {
				continue
			}
			if o, ok := byRef[k]; ok && o != r {
				dup[k] = true
				invalids = append(invalids, &Problem{File: r.File, Line: r.Line, Kind: KindInvalid, Rule: r.Title, Msg: fmt.Sprintf("id or name %q is also used by %s:%d", k, o.File, o.Line)})
			}
			byRef[k] = r
		}
	}
	skippedRef := map[string]*Problem{}
	for _, p := range skipped {
		skippedRef[p.Rule] = p
	}
	// resolve correlations; a correlation that depends on an unsupported
	// rule is itself unsupported (repeat until stable for chains)
	keep := map[*Rule]bool{}
	for _, r := range rules {
		keep[r] = true
	}
	for changed := true; changed; {
		changed = false
		for _, r := range rules {
			if !keep[r] || r.Correlation == nil {
				continue
			}
			c := r.Correlation
			c.rules = c.rules[:0]
			for _, ref := range c.RuleRefs {
				t, ok := byRef[ref]
				if !ok || !keep[t] {
					if !ok {
						invalids = append(invalids, &Problem{File: r.File, Line: r.Line, Kind: KindInvalid, Rule: r.Title, Msg: fmt.Sprintf("correlation refers to rule %q, which is not loaded", ref)})
					} else {
						s.Problems = append(s.Problems, &Problem{File: r.File, Line: r.Line, Kind: KindUnsupported, Rule: r.Title, Msg: fmt.Sprintf("refers to rule %q, which is skipped", ref)})
					}
					keep[r] = false
					changed = true
					break
				}
				if t == r {
					invalids = append(invalids, &Problem{File: r.File, Line: r.Line, Kind: KindInvalid, Rule: r.Title, Msg: "correlation refers to itself"})
					keep[r] = false
					break
				}
				c.rules = append(c.rules, t)
			}
		}
	}
	for _, r := range rules {
		if !keep[r] {
			continue
		}
		s.Rules = append(s.Rules, r)
		if r.Correlation != nil {
			s.corrs = append(s.corrs, r)
		}
	}
	// cycles: a correlation chain must end in single-event rules
	corrs := s.corrs[:0]
	for _, r := range s.corrs {
		if cyclic(r, map[*Rule]bool{}) {
			invalids = append(invalids, &Problem{File: r.File, Line: r.Line, Kind: KindInvalid, Rule: r.Title, Msg: "correlation chain refers back to itself"})
			continue
		}
		corrs = append(corrs, r)
	}
	s.corrs = corrs
	for _, r := range s.Rules {
		r.referenced, r.generated = false, false
	}
	for _, c := range s.corrs {
		for _, t := range c.Correlation.rules {
			t.referenced = true
			if c.Correlation.Generate {
				t.generated = true
			}
			s.feeds[t] = append(s.feeds[t], c)
		}
		cc := c.Correlation
		cc.groupBy = nil
		if cc.Field != "" {
			cc.field = strings.Split(cc.Field, ".")
		}
		// per input: its group-by paths and value_count field (aliases
		// resolved), split once
		cc.inPaths, cc.inField = nil, nil
		for _, t := range cc.rules {
			cc.inPaths = append(cc.inPaths, cc.groupFields(t))
			cc.inField = append(cc.inField, fieldPath(cc, t))
		}
	}
	for _, r := range s.Rules {
		if r.det != nil {
			s.single = append(s.single, r)
		}
	}
	s.buildIndex()
	s.marks = newMarks(s)
	return s, invalids
}

func cyclic(r *Rule, seen map[*Rule]bool) bool {
	if seen[r] {
		return true
	}
	if r.Correlation == nil {
		return false
	}
	seen[r] = true
	for _, t := range r.Correlation.rules {
		if cyclic(t, seen) {
			return true
		}
	}
	delete(seen, r)
	return false
}

// index fields per source, tried in order: a rule is indexed by the
// values its condition pins the field to.
var indexFields = map[int][]string{
	srcCloudTrail: {"eventName", "eventSource"},
	srcVault:      {"request.path"},
}

// keysOf gives the index keys a matcher pins for a field.
func keysOf(field string) func(fm *fieldMatcher) ([]string, bool) {
	if field == "request.path" {
		// Vault paths: by first segment (sys, auth, secret …)
		return func(fm *fieldMatcher) ([]string, bool) {
			if fm.field != field {
				return nil, false
			}
			return pathSegmentKeys(fm)
		}
	}
	return func(fm *fieldMatcher) ([]string, bool) {
		if fm.field != field {
			return nil, false
		}
		return fm.literalValues()
	}
}

// second index fields, read from the normalized event: CloudTrail's
// service (eventSource up to its first dot, as in Action), a Vault
// request's operation (Action after "vault:").
var secondFields = map[int]string{
	srcCloudTrail: "eventSource",
	srcVault:      "request.operation",
}

func (s *Set) buildIndex() {
	s.indexRules()
	s.need2 = make([][]string, len(s.single))
	for src, f := range secondFields {
		keys := keysOf(f)
		for _, i := range s.idx[src].always {
			vals, ok := requiredValues(s.single[i].det.cond, keys)
			if !ok {
				continue
			}
			set := map[string]bool{}
			for _, v := range vals {
				if f == "eventSource" {
					v, _, _ = strings.Cut(v, ".")
				}
				set[v] = true
			}
			s.need2[i] = sortedKeys(set)
		}
	}
	// prefilters: for the rules that run on every record of their source
	// (an index key makes the others rare) and keyword rules (they read
	// every string of the record)
	s.pre = make([][]int, len(s.single))
	s.lits = nil
	id := map[string]int{}
	always := map[int]bool{}
	for _, ix := range s.idx {
		for _, i := range ix.always {
			always[i] = true
		}
	}
	for i, r := range s.single {
		if !always[i] && !hasKeywords(r.det) {
			continue
		}
		lits := literalsOfCond(r.det.cond)
		if src := sourceOf(r.LogSource); !hasKeywords(r.det) && readsOnly(r.det.cond, leading[src]) &&
			(readsOnly(r.det.cond, first[src]) || !cheapPlan(lits)) {
			// the fields lie at the start of the record: reading them
			// costs less than searching the text, unless the rule reads
			// past the first members (CloudTrail's userAgent lies behind
			// the whole userIdentity object) and a pass or two for rare
			// bytes settles it
			continue
		}
		if len(lits) > maxChecked && !hasKeywords(r.det) {
			// more text searches than evaluating the rule costs
			continue
		}
		for _, l := range lits {
			k, ok := id[l]
			if !ok {
				k = len(s.lits)
				id[l] = k
				s.lits = append(s.lits, l)
			}
			s.pre[i] = append(s.pre[i], k)
		}
	}
	s.plan = make([][]anchorGroup, len(s.single))
	s.unsafe = make([]bool, len(s.single))
	s.uaOnly = make([]bool, len(s.single))
	for i, r := range s.single {
		s.uaOnly[i] = sourceOf(r.LogSource) == srcCloudTrail && readsOnlyUA(r.det)
	}
	for i, pre := range s.pre {
		if pre != nil {
			s.plan[i] = planAnchors(pre, s.lits)
			for _, k := range pre {
				s.unsafe[i] = s.unsafe[i] || strings.ContainsAny(s.lits[k], "iks")
			}
		}
	}
	s.hot = make([]hotRule, len(s.single))
	for i, r := range s.single {
		s.hot[i] = hotRule{need2: s.need2[i], pre: s.pre[i] != nil, uaOnly: s.uaOnly[i], r: r, det: r.det, cond: r.det.cond}
	}
}

// hotRule is what matchEvent reads of a candidate rule for every record,
// side by side in one array (need2, pre, uaOnly and the rule's condition),
// rather than from five places in memory.
type hotRule struct {
	need2       []string
	pre, uaOnly bool
	r           *Rule
	det         *detection
	cond        node
}

// leading: per source, the top-level members records begin with (as
// CloudTrail and Vault write them): the lazy reader reaches them without
// skipping much.
var leading = map[int]map[string]bool{
	srcCloudTrail: {"eventVersion": true, "userIdentity": true, "eventTime": true, "eventSource": true, "eventName": true, "awsRegion": true, "sourceIPAddress": true, "userAgent": true},
	srcVault:      {"time": true, "type": true, "auth": true},
}

// first: per source, the members at the very start of a record, which
// the lazy reader reaches without skipping anything large.
var first = map[int]map[string]bool{
	srcCloudTrail: {"eventVersion": true, "userIdentity": true},
	srcVault:      {"time": true, "type": true, "auth": true},
}

// cheapPlan reports whether literals are found or ruled out in a record's
// text by at most two passes for rare bytes, without checking the text
// for non-ASCII bytes first (no literal with i, k or s).
func cheapPlan(lits []string) bool {
	if len(lits) == 0 || len(lits) > 4 {
		return false
	}
	pre := make([]int, len(lits))
	for k, l := range lits {
		if strings.ContainsAny(l, "iks") {
			return false
		}
		pre[k] = k
	}
	plan := planAnchors(pre, lits)
	if len(plan) > 2 {
		return false
	}
	for _, g := range plan {
		if byteRarity[g.c] > maxCheapFreq {
			return false
		}
	}
	return true
}

// maxCheapFreq: an anchor byte occurring at most this often per 10,000
// bytes (about 14 times in a CloudTrail record) is rare enough.
const maxCheapFreq = 100

// readsOnly reports whether the condition, outside its negations (read
// only when the rest matched), reads only fields under the given
// top-level members, with no expression that runs without checking its
// literals on the value first.
func readsOnly(n node, top map[string]bool) bool {
	switch n := n.(type) {
	case *selNode:
		return selReadsOnly(n.sel, top)
	case *andNode:
		for _, k := range n.kids {
			if !readsOnly(k, top) {
				return false
			}
		}
		return true
	case *orNode:
		for _, k := range n.kids {
			if !readsOnly(k, top) {
				return false
			}
		}
		return true
	case *ofNode:
		for _, sl := range n.sels {
			if !selReadsOnly(sl.sel, top) {
				return false
			}
		}
		return true
	case *notNode:
		return true
	}
	return false
}

func selReadsOnly(sel *selection, top map[string]bool) bool {
	if sel.keywords != nil {
		return false
	}
	for _, alt := range sel.alts {
		if len(alt) > 0 && alt[0].kind == kindPattern && !alt[0].negate && !alt[0].null && len(alt[0].path) > 0 && top[alt[0].path[0]] {
			// matchers run cheapest first: this one, on a leading field,
			// settles most records
			continue
		}
		for _, fm := range alt {
			if len(fm.path) == 0 || !top[fm.path[0]] || fm.kind == kindFieldRef || (fm.kind == kindRegex && !fm.reChecked()) {
				return false
			}
		}
	}
	return true
}

// reChecked: every expression checks its literals on the value before
// running.
func (fm *fieldMatcher) reChecked() bool {
	for _, l := range fm.reLits {
		if l == nil {
			return false
		}
	}
	return true
}

// maxChecked bounds the literals of a field rule's prefilter: each is a
// search of the record's text.
const maxChecked = 8

func (s *Set) indexRules() {
	for _, src := range []int{srcCloudTrail, srcVault} {
		var rules []int
		for i, r := range s.single {
			if sourceOf(r.LogSource) == src {
				rules = append(rules, i)
			}
		}
		// pick the field that indexes the most rules
		best := index{always: rules}
		bestN := 0
		for _, f := range indexFields[src] {
			ix := index{field: strings.Split(f, "."), name: f, byVal: map[string][]int{}}
			n := 0
			keys := keysOf(f)
			for _, i := range rules {
				vals, ok := requiredValues(s.single[i].det.cond, keys)
				if !ok {
					ix.always = append(ix.always, i)
					continue
				}
				n++
				for _, v := range vals {
					ix.byVal[v] = append(ix.byVal[v], i)
				}
			}
			if n > bestN {
				best, bestN = ix, n
			}
		}
		s.idx[src] = best
	}
}

// readsOnlyUA reports whether every field a detection reads (in any of
// its selections) is the top-level userAgent.
func readsOnlyUA(d *detection) bool {
	for _, sel := range d.sels {
		if sel.keywords != nil {
			return false
		}
		for _, alt := range sel.alts {
			for _, fm := range alt {
				if len(fm.path) != 1 || fm.path[0] != uaField || fm.kind == kindFieldRef {
					return false
				}
			}
		}
	}
	return true
}

// hasKeywords reports whether a detection has keyword selections.
func hasKeywords(d *detection) bool {
	for _, sel := range d.sels {
		if sel.keywords != nil {
			return true
		}
	}
	return false
}

// requiredValues: the index keys the condition pins (any of them), or
// ok=false when the condition does not pin the field.
func requiredValues(n node, keys func(*fieldMatcher) ([]string, bool)) ([]string, bool) {
	switch n := n.(type) {
	case *selNode:
		return selRequired(n.sel, keys)
	case *andNode:
		var best []string
		found := false
		for _, k := range n.kids {
			if v, ok := requiredValues(k, keys); ok && (!found || len(v) < len(best)) {
				best, found = v, true
			}
		}
		return best, found
	case *orNode:
		return unionRequired(n.kids, keys)
	case *ofNode:
		kids := make([]node, len(n.sels))
		for i, s := range n.sels {
			kids[i] = s
		}
		if n.need == 0 {
			return requiredValues(&andNode{kids: kids}, keys)
		}
		return unionRequired(kids, keys)
	}
	return nil, false
}

func unionRequired(kids []node, keys func(*fieldMatcher) ([]string, bool)) ([]string, bool) {
	set := map[string]bool{}
	for _, k := range kids {
		v, ok := requiredValues(k, keys)
		if !ok {
			return nil, false
		}
		for _, x := range v {
			set[x] = true
		}
	}
	return sortedKeys(set), true
}

func selRequired(sel *selection, keys func(*fieldMatcher) ([]string, bool)) ([]string, bool) {
	if sel.keywords != nil || len(sel.alts) == 0 {
		return nil, false
	}
	set := map[string]bool{}
	for _, alt := range sel.alts {
		found := false
		for _, fm := range alt {
			if v, ok := keys(fm); ok {
				for _, x := range v {
					set[x] = true
				}
				found = true
				break
			}
		}
		if !found {
			return nil, false
		}
	}
	return sortedKeys(set), true
}

// Hit is one single-event rule matching a record.
type Hit struct {
	Rule *Rule
	// Standalone is true when the rule raises a finding on its own (it is
	// not only an input of a correlation).
	Standalone bool
}

// Match evaluates every single-event rule that can match the record and
// appends the hits to out, in load order.
func (s *Set) Match(rec *Record, out []Hit) []Hit {
	if rec.src == srcNone {
		return out
	}
	ix := &s.idx[rec.src]
	var cand []int
	if ix.byVal != nil {
		if v, ok := rec.indexValue(ix.field); ok && v == "" {
			// not a plain string: every rule of the source is a candidate
			return s.matchAll(rec, out)
		} else if ok {
			if ix.name == "request.path" {
				v, rec.buf = firstSegment(v, rec.buf)
			}
			cand = ix.byVal[v]
		}
	}
	// merge cand and always in order
	a, c := ix.always, cand
	for len(a) > 0 || len(c) > 0 {
		var i int
		if len(c) == 0 || (len(a) > 0 && a[0] < c[0]) {
			i, a = a[0], a[1:]
		} else {
			i, c = c[0], c[1:]
		}
		r := s.single[i]
		if r.det.cond.eval(rec, r.det) {
			out = append(out, Hit{Rule: r, Standalone: !r.referenced || r.generated})
		}
	}
	return out
}

func (rec *Record) indexValue(path []string) (string, bool) {
	v, rest, ok := rec.root(path)
	if ok && len(rest) > 0 {
		v = v.Get(rest...)
	}
	if !ok || v == nil {
		return "", false
	}
	b, err := v.StringBytes()
	if err != nil {
		// present but not a string (a list …): no index
		return "", true
	}
	if isASCII(b2s(b)) {
		// lowercase into scratch without allocating when already lower
		lower := true
		for _, c := range b {
			if 'A' <= c && c <= 'Z' {
				lower = false
				break
			}
		}
		if lower {
			return b2s(b), true
		}
		rec.buf = rec.buf[:0]
		for _, c := range b {
			rec.buf = append(rec.buf, lowerASCII(c))
		}
		return b2s(rec.buf), true
	}
	return strings.ToLower(string(b)), true
}

// matchAll evaluates every single-event rule of the record's source.
func (s *Set) matchAll(rec *Record, out []Hit) []Hit {
	for _, r := range s.single {
		if sourceOf(r.LogSource) == rec.src && r.det.cond.eval(rec, r.det) {
			out = append(out, Hit{Rule: r, Standalone: !r.referenced || r.generated})
		}
	}
	return out
}

// Correlations lists the set's correlation rules.
func (s *Set) Correlations() []*Rule { return s.corrs }

// Feeds lists the correlation rules a rule feeds.
func (s *Set) Feeds(r *Rule) []*Rule { return s.feeds[r] }

// Stats counts rules by kind.
func (s *Set) Stats() (single, correlation int) { return len(s.single), len(s.corrs) }

// sortProblems orders problems by file and line.
func sortProblems(ps []*Problem) {
	sort.SliceStable(ps, func(i, j int) bool {
		if ps[i].File != ps[j].File {
			return ps[i].File < ps[j].File
		}
		return ps[i].Line < ps[j].Line
	})
}

// SortProblems orders problems by file and line.
func SortProblems(ps []*Problem) { sortProblems(ps) }

// MatchEvent is Match for an event carrying its original record (Raw):
// it picks the candidate rules from the normalized event (CloudTrail's
// eventName, a Vault path's first segment), drops those whose literals
// the record's text lacks, and parses the record only when some rule is
// left. rec is nil when nothing needed parsing.
func (s *Set) MatchEvent(ev *schema.Event, p *Parser, out []Hit) (hits []Hit, rec *Record, err error) {
	return s.matchEvent(ev, ev.Raw, p, out, false)
}

// matchEvent is MatchEvent for ev's record raw; with servedUA, ev is the
// event the reader normalized from raw itself (Wants): a CloudTrail record's userAgent
// is then read from ev.UserAgent when that is not empty (see uaField).
func (s *Set) matchEvent(ev *schema.Event, raw []byte, p *Parser, out []Hit, servedUA bool) (hits []Hit, rec *Record, err error) {
	src := srcNone
	switch ev.Source {
	case schema.SourceCloudTrail:
		src = srcCloudTrail
	case schema.SourceVault:
		src = srcVault
	}
	ix := &s.idx[src]
	if src != srcNone && len(ix.always) == 0 && len(ix.byVal) == 0 {
		// no rule reads this source (SigmaHQ's CloudTrail rules on a
		// Vault record): nothing to match, and the record's text is not
		// searched for escapes nor read (a record no rule reads is not
		// checked for being malformed, escapes or not)
		return out, nil, nil
	}
	key, keyed := "", src != srcNone
	if keyed && ix.byVal != nil {
		key, keyed = eventKey(ev, ix.name, p)
	}
	// (a wrapped record needs no check of its own: LookupEvents' string
	// has escapes, and EventBridge's detail shows the record's text)
	if !keyed || bytes.IndexByte(raw, '\\') >= 0 {
		// the full way: parse, then index and evaluate from the record
		if rec, err = p.Parse(raw, ev.Source); err != nil {
			return out, nil, err
		}
		return s.Match(rec, out), rec, nil
	}
	var cand []int
	if ix.byVal != nil {
		cand = ix.byVal[key]
	}
	key2, key2ok := secondKey(ev, p)
	p.cands = p.cands[:0]
	p.ascii = 0
	if p.preSet != s {
		// statistics are per set
		p.preSet = s
		p.preStat = append(p.preStat[:0], make([]preStat, len(s.single))...)
	}
	if len(p.found) < len(s.lits) {
		p.found = make([]uint8, len(s.lits))
	} else {
		clear(p.found[:len(s.lits)])
	}
	ua, uit, spans := "", "", schema.Spans{}
	if servedUA && src == srcCloudTrail {
		ua, uit, spans = ev.UserAgent, servedType(ev), ev.Spans
	}
	a, c := ix.always, cand
	for len(a) > 0 || len(c) > 0 {
		var i int
		if len(c) == 0 || (len(a) > 0 && a[0] < c[0]) {
			i, a = a[0], a[1:]
		} else {
			i, c = c[0], c[1:]
		}
		h := &s.hot[i]
		if need := h.need2; need != nil && key2ok && !s.noPrefilter && !slices.Contains(need, key2) {
			continue
		}
		if ua != "" && h.uaOnly {
			// evaluated on the event's user agent: cheaper than any
			// search of the record's text
			p.cands = append(p.cands, i)
			continue
		}
		if h.pre && !s.noPrefilter && p.usePre(i) {
			held, known := s.holdsOne(p, i, raw, key)
			if known {
				p.preStat[i].checks++
				if !held {
					continue
				}
				p.preStat[i].passed++
			}
		}
		p.cands = append(p.cands, i)
	}
	if len(p.cands) == 0 {
		return out, nil, nil
	}
	var ok bool
	if rec, ok = p.parseLazy(raw, ev.Source); !ok {
		if rec, err = p.Parse(raw, ev.Source); err != nil {
			return out, nil, err
		}
	} else {
		rec.ua, rec.uit, rec.spans = ua, uit, spans
	}
	n := len(out)
	for _, i := range p.cands {
		if h := &s.hot[i]; h.cond.eval(rec, h.det) {
			r := h.r
			out = append(out, Hit{Rule: r, Standalone: !r.referenced || r.generated})
		}
	}
	if rec.bad {
		return out[:n], nil, errMalformed
	}
	return out, rec, nil
}

// preStat counts, per rule and Parser, the records a prefilter checked
// and let through.
type preStat struct{ checks, passed uint32 }

// adaptive prefilters: after preTrial checks, a rule whose prefilter lets
// more than 1 record in preKeep through is evaluated without it (its
// literals are common in this traffic: the searches cost more than they
// save). Results are the same either way.
const (
	preTrial = 1024
	preKeep  = 4
)

// usePre reports whether rule i's prefilter still runs for this Parser.
func (p *Parser) usePre(i int) bool {
	st := p.preStat[i]
	return st.checks < preTrial || st.passed*preKeep <= st.checks
}

// holdsOne reports whether the record's text (without escapes) may hold
// one of rule i's literals in any letter case; known is false when the
// text cannot tell (a literal with i, k or s in a record with non-ASCII
// bytes: Unicode lowercasing maps U+0130 to i and U+212A to k, and case
// folding U+017F to s; no other non-ASCII character lowercases or folds
// to ASCII, so other literals are searched in any record). Each literal
// is searched at most once per record (p.found: 0 not yet, 1 found, 2
// absent), in the raw text for both cases of its anchor byte, the
// literals sharing an anchor in one pass (planAnchors).
func (s *Set) holdsOne(p *Parser, i int, raw []byte, key string) (held, known bool) {
	pre := s.pre[i]
	for _, k := range pre {
		switch {
		case p.found[k] == 1:
			return true, true
		case p.found[k] == 0 && s.lits[k] == key:
			// the index key is the record's own value
			p.found[k] = 1
			return true, true
		}
	}
	if s.unsafe[i] {
		if p.ascii == 0 {
			p.ascii = 2
			if asciiText(raw) {
				p.ascii = 1
			}
		}
		if p.ascii == 2 {
			return true, false
		}
	}
	text := b2s(raw)
	for _, g := range s.plan[i] {
		open := false
		for _, k := range g.lits {
			open = open || p.found[k] == 0
		}
		if !open {
			continue
		}
		// the anchor's occurrences in either case, in order
		c, u := g.c, g.c
		if 'a' <= c && c <= 'z' {
			u = c - 'a' + 'A'
		}
		lo, up := indexFrom(text, c, 0), -1
		if u != c {
			up = indexFrom(text, u, 0)
		}
		for lo >= 0 || up >= 0 {
			var at int
			if up < 0 || (lo >= 0 && lo < up) {
				at, lo = lo, indexFrom(text, c, lo+1)
			} else {
				at, up = up, indexFrom(text, u, up+1)
			}
			for n, k := range g.lits {
				lit := s.lits[k]
				pos := at - g.offs[n]
				if p.found[k] == 0 && pos >= 0 && pos+len(lit) <= len(text) && hasPrefixFold(text[pos:], lit) {
					p.found[k] = 1
					return true, true
				}
			}
		}
		for _, k := range g.lits {
			if p.found[k] == 0 {
				p.found[k] = 2
			}
		}
	}
	return false, true
}

// indexFrom is the index of the first c in text at or after from (-1:
// none).
func indexFrom(text string, c byte, from int) int {
	if from >= len(text) {
		return -1
	}
	j := strings.IndexByte(text[from:], c)
	if j < 0 {
		return -1
	}
	return from + j
}

// anchorGroup is literals of a prefilter searched in one pass over the
// text: at each occurrence of c, each literal is compared where its own
// first c would be (offs).
type anchorGroup struct {
	c    byte
	lits []int // positions in Set.lits
	offs []int
}

// Anchor cost model: a pass over a record's text costs about what sixty
// anchor occurrences cost (one vectorized search each, and the compares),
// and a record is about 1,400 bytes (byteRarity counts per 10,000).
const (
	passCost  = 60
	recordLen = 1400
)

// planAnchors groups literals (lowercase) by anchor byte, greedily:
// the byte saving most (passes it spares, less its occurrences in a
// record) covers the literals holding it, until every literal is covered.
// One literal alone gets its rarest byte.
func planAnchors(pre []int, lits []string) []anchorGroup {
	var plan []anchorGroup
	left := append([]int(nil), pre...)
	for len(left) > 0 {
		best, bestScore := -1, 0
		for c := 0; c < 256; c++ {
			n := 0
			for _, k := range left {
				if strings.IndexByte(lits[k], byte(c)) >= 0 {
					n++
				}
			}
			if n == 0 {
				continue
			}
			score := n*passCost*10000 - int(byteRarity[c])*recordLen
			if best < 0 || score > bestScore {
				best, bestScore = c, score
			}
		}
		g := anchorGroup{c: byte(best)}
		rest := left[:0]
		for _, k := range left {
			if o := strings.IndexByte(lits[k], byte(best)); o >= 0 {
				g.lits = append(g.lits, k)
				g.offs = append(g.offs, o)
			} else {
				rest = append(rest, k)
			}
		}
		left = rest
		plan = append(plan, g)
	}
	return plan
}

var errMalformed = errors.New("sigma: record: malformed JSON")

// eventKey is the index key of a normalized event: CloudTrail's eventName
// (from Action, "<service>:<eventName>"), or the first segment of a Vault
// request path (Resource), lowercased.
func eventKey(ev *schema.Event, field string, p *Parser) (string, bool) {
	var v string
	switch {
	case field == "eventName" && ev.Source == schema.SourceCloudTrail:
		_, name, ok := strings.Cut(ev.Action, ":")
		if !ok || name == "" {
			return "", false
		}
		v = name
	case field == "request.path" && ev.Source == schema.SourceVault:
		v, _, _ = strings.Cut(ev.Resource, "/")
	default:
		return "", false
	}
	p.kbuf = p.kbuf[:0]
	for i := 0; i < len(v); i++ {
		if v[i] >= utf8.RuneSelf {
			return "", false
		}
		p.kbuf = append(p.kbuf, lowerASCII(v[i]))
	}
	return b2s(p.kbuf), true
}

// secondKey is the second index key of a normalized event, lowercased:
// CloudTrail's service (Action before ":"), a Vault request's operation
// (Action after "vault:"; not for KMIP requests, whose Action names their
// own operation, nor "unknown", written for a request without one).
func secondKey(ev *schema.Event, p *Parser) (string, bool) {
	var v string
	switch ev.Source {
	case schema.SourceCloudTrail:
		svc, _, ok := strings.Cut(ev.Action, ":")
		if !ok {
			return "", false
		}
		v = svc
	case schema.SourceVault:
		op, ok := strings.CutPrefix(ev.Action, "vault:")
		if !ok || op == "unknown" || strings.HasPrefix(op, "kmip:") {
			return "", false
		}
		v = op
	default:
		return "", false
	}
	p.k2buf = p.k2buf[:0]
	for i := 0; i < len(v); i++ {
		if v[i] >= utf8.RuneSelf {
			return "", false
		}
		p.k2buf = append(p.k2buf, lowerASCII(v[i]))
	}
	return b2s(p.k2buf), true
}

// Wants reports whether the caller must keep the original record raw of
// ev for the evaluator: some single-event rule matches it and its
// findings need the record (correlations read only records that hit a
// rule). A hit whose findings are made of the event alone (bareOK) is
// written on the event itself (ev.Mark, see marks), which the caller
// hands on with the event, and Wants says no; when the hits cannot be
// written so, they are
// remembered by the event's identity instead and Wants says no: the
// evaluator finds it when the event reaches it without a record (the hits
// of a CloudTrail record that feeds a correlation are remembered so too,
// and the record kept). With raw
// nil it answers from the normalized fields alone (the index). ev must be
// the event the reader normalized from raw itself: a CloudTrail record's
// userAgent is read from it (see uaField). Safe for concurrent use.
func (s *Set) Wants(ev *schema.Event, raw []byte) bool {
	if len(raw) == 0 {
		return s.mayMatch(ev)
	}
	// the parser of the last call (one reader: it stays in that core's
	// cache), else one from the pool
	p := s.parser.Swap(nil)
	if p == nil {
		p = parserPool.Get().(*Parser)
	}
	defer func() {
		if !s.parser.CompareAndSwap(nil, p) {
			parserPool.Put(p)
		}
	}()
	return s.wants(ev, raw, p)
}

// Wanter returns Wants with a Parser of its own, for one reader: not safe
// for concurrent use (one goroutine at a time, as ingest.Reader and
// Merger read), and it spares Wants' taking and giving back a shared
// Parser per record.
func (s *Set) Wanter() func(ev *schema.Event, raw []byte) bool {
	p := new(Parser)
	return func(ev *schema.Event, raw []byte) bool {
		if len(raw) == 0 {
			return s.mayMatch(ev)
		}
		return s.wants(ev, raw, p)
	}
}

// wants is Wants for a record's text, with the caller's Parser.
func (s *Set) wants(ev *schema.Event, raw []byte, p *Parser) bool {
	hits, _, err := s.matchEvent(ev, raw, p, p.hits[:0], true)
	p.hits = hits[:0]
	if err == nil && len(hits) > 0 {
		if bareEvent(ev) {
			// (encoded, every hit's rule feeds no correlation: bareOK)
			if bits, ok := s.marks.encode(hits); ok {
				// carried by the event to the evaluator: no record, no
				// shared map
				// (with the print of its id, read here where the id's
				// text was just written, for the burst it joins)
				ev.Mark = schema.Mark{Owner: s.marks.owner, Bits: bits, More: idPrint(clip(ev.ID))}
				return false
			}
		}
		if bareEvent(ev) && s.bare.put(ev, hits) {
			// remembered by the event's identity, not by a hash of the
			// record's text; when the findings need only the event's
			// fields (no hit feeds a correlation), the record is not
			// even copied or kept
			return !s.bareOK(ev, hits)
		}
		// the evaluation of the kept record need not run again
		s.memo.put(raw, hits)
	}
	// a record the rules cannot read is kept, so that it is counted
	return err != nil || len(hits) > 0
}

// hitMemo remembers the hits Wants found, by a seeded 64-bit hash of the
// record's text, for the evaluator that gets the kept record (replay reads
// and evaluates in different goroutines). An entry is taken out when the
// evaluator gets it, so the map holds only the records between reading and
// evaluation (the merge and reorder buffers) and stays small; a record
// read twice before its first evaluation is evaluated again by the second.
// Bounded: full (records read and never evaluated), it starts over (a
// record not found is evaluated again). Empty, lookups cost nothing (run
// keeps every record and never calls Wants).
type hitMemo struct {
	mu   sync.Mutex
	n    atomic.Int64
	m    map[uint64]memoHits
	seed maphash.Seed
}

// memoHits holds a record's hits: one or two inline (the usual case, no
// allocation), more in a slice.
type memoHits struct {
	n    int
	one  [2]Hit
	more []Hit
}

// maxMemo bounds the remembered records.
const maxMemo = 1 << 16

func newHitMemo() *hitMemo { return &hitMemo{m: map[uint64]memoHits{}, seed: maphash.MakeSeed()} }

func (m *hitMemo) put(raw []byte, hits []Hit) {
	h := maphash.Bytes(m.seed, raw)
	e := memoHits{n: len(hits)}
	if len(hits) <= len(e.one) {
		copy(e.one[:], hits)
	} else {
		e.more = append([]Hit(nil), hits...)
	}
	m.mu.Lock()
	if len(m.m) >= maxMemo {
		clear(m.m)
	}
	m.m[h] = e
	m.n.Store(int64(len(m.m)))
	m.mu.Unlock()
}

// take appends the hits remembered for raw to out and forgets them.
func (m *hitMemo) take(raw []byte, out []Hit) ([]Hit, bool) {
	if m.n.Load() == 0 {
		return out, false
	}
	h := maphash.Bytes(m.seed, raw)
	m.mu.Lock()
	e, ok := m.m[h]
	if ok {
		delete(m.m, h)
		m.n.Store(int64(len(m.m)))
	}
	m.mu.Unlock()
	if !ok {
		return out, false
	}
	if e.more != nil {
		return append(out, e.more...), true
	}
	return append(out, e.one[:e.n]...), true
}

var parserPool = sync.Pool{New: func() any { return new(Parser) }}

// mayMatch: some single-event rule may match the event, from the index.
func (s *Set) mayMatch(ev *schema.Event) bool {
	src := srcNone
	switch ev.Source {
	case schema.SourceCloudTrail:
		src = srcCloudTrail
	case schema.SourceVault:
		src = srcVault
	}
	if src == srcNone {
		return len(s.single) > 0
	}
	ix := &s.idx[src]
	if len(ix.always) > 0 {
		return true
	}
	if ix.byVal == nil {
		return false
	}
	var p Parser
	key, ok := eventKey(ev, ix.name, &p)
	if !ok {
		return true
	}
	return len(ix.byVal[key]) > 0
}
