package sigma

import (
	"encoding/binary"
	"regexp/syntax"
	"strings"
)

// Prefilters: most records match no rule, and parsing a record costs as
// much as normalizing it. So before reading a record, each candidate rule
// that runs on every record of its source (no index key places it) is
// checked against the record's text: a rule whose condition needs one of
// some literals (a value it compares, lowercased) cannot match a record
// whose text holds none of them. Each literal is looked for at most once
// per record, however many rules need it.
//
// Sound because of what the text of a record the prefilter is used on
// shows (others are evaluated without it):
//   - no backslash: JSON escapes (\uXXXX, \/, \") would hide a value's
//     decoded form; such records are evaluated in full;
//   - only ASCII bytes: Unicode case folding maps some non-ASCII letters to
//     ASCII ones (K KELVIN SIGN to k, LONG S to s), so a value could match
//     a lowercased literal its bytes do not hold; such records are
//     evaluated in full;
//   - a value compared as text is a string's content, a number or boolean
//     as written, or an object or array rendered compactly: a literal holds
//     none of the characters between JSON tokens (structural), so it lies
//     within one token, whose text the record shows as rendered;
//   - values under modifiers are compiled to their transformed forms
//     (base64, base64offset, windash, utf16: non-ASCII forms give no
//     literal), wildcard patterns give their longest literal run, cased
//     values and case-folding expressions their lowercased literal.

// maxAlternatives bounds a prefilter's literals.
const maxAlternatives = 16

// structural characters: a literal holding one could span JSON tokens,
// whose raw spacing need not match the compact rendering rules compare
// (an object value renders as {"a":1} whatever the spacing of its text).
const structural = "\"{}[],: \t\r\n"

// usableLiteral reports whether a lowercased literal can be looked for in
// the lowercased raw text.
func usableLiteral(s string) bool {
	return len(s) >= 2 && isASCII(s) && !strings.ContainsAny(s, structural)
}

// literalOf: the longest run of s without structural characters, usable
// as a literal ("" when none is). s is lowercased.
func literalOf(s string) string {
	best := ""
	for len(s) > 0 {
		i := strings.IndexAny(s, structural)
		run := s
		if i >= 0 {
			run, s = s[:i], s[i+1:]
		} else {
			s = ""
		}
		if len(run) > len(best) {
			best = run
		}
	}
	if !usableLiteral(best) {
		return ""
	}
	return best
}

// commonWords are values nearly every audit record holds (Vault
// operations, record types): a requirement made of them selects nothing,
// so another one of the same AND is preferred.
var commonWords = map[string]bool{
	"create": true, "read": true, "update": true, "delete": true, "list": true,
	"patch": true, "request": true, "response": true, "true": true, "false": true,
	"aws": true, "amazonaws": true, "com": true, "arn": true,
}

// weight of a requirement's literal for choosing between requirements:
// its length, or 1 for a common word.
func weight(s string) int {
	if commonWords[s] {
		return 1
	}
	return len(s)
}

// better picks the more selective of two requirements: the one whose
// shortest literal is longer; nil means no requirement.
func better(a, b []string) []string {
	if a == nil {
		return b
	}
	if b == nil {
		return a
	}
	ma, mb := minLen(a), minLen(b)
	if ma != mb {
		if ma > mb {
			return a
		}
		return b
	}
	if len(a) <= len(b) {
		return a
	}
	return b
}

func minLen(a []string) int {
	m := 1 << 30
	for _, s := range a {
		m = min(m, weight(s))
	}
	return m
}

func union(parts ...[]string) []string {
	set := map[string]bool{}
	for _, p := range parts {
		if p == nil {
			return nil
		}
		for _, s := range p {
			set[s] = true
		}
	}
	if len(set) == 0 || len(set) > maxAlternatives {
		return nil
	}
	// a literal holding another is found whenever that one is: drop it
	for a := range set {
		for b := range set {
			if a != b && strings.Contains(a, b) {
				delete(set, a)
				break
			}
		}
	}
	return sortedKeys(set)
}

// literalsOfCond: one of these literals appears in the text of every
// record the condition matches (nil: no such set known).
func literalsOfCond(n node) []string {
	switch n := n.(type) {
	case *selNode:
		return literalsOfSel(n.sel)
	case *andNode:
		var best []string
		for _, k := range n.kids {
			best = better(best, literalsOfCond(k))
		}
		return best
	case *orNode:
		parts := make([][]string, len(n.kids))
		for i, k := range n.kids {
			parts[i] = literalsOfCond(k)
		}
		return union(parts...)
	case *ofNode:
		parts := make([][]string, len(n.sels))
		for i, s := range n.sels {
			parts[i] = literalsOfSel(s.sel)
		}
		if n.need == 0 {
			var best []string
			for _, p := range parts {
				best = better(best, p)
			}
			return best
		}
		return union(parts...)
	}
	return nil // not: anything may match
}

func literalsOfSel(sel *selection) []string {
	if sel.keywords != nil {
		parts := make([][]string, len(sel.keywords))
		for i, p := range sel.keywords {
			parts[i] = literalsOfPattern(p)
		}
		return union(parts...)
	}
	parts := make([][]string, len(sel.alts))
	for i, alt := range sel.alts {
		var best []string
		for _, fm := range alt {
			best = better(best, fm.literals())
		}
		parts[i] = best
	}
	return union(parts...)
}

// literals: one of these appears in the text of a record the matcher
// matches.
func (fm *fieldMatcher) literals() []string {
	if fm.negate {
		return nil
	}
	switch fm.kind {
	case kindPattern:
		if fm.null || len(fm.pats) == 0 {
			return nil
		}
		if fm.all {
			var best []string
			for _, p := range fm.pats {
				best = better(best, literalsOfPattern(p))
			}
			return best
		}
		parts := make([][]string, len(fm.pats))
		for i, p := range fm.pats {
			parts[i] = literalsOfPattern(p)
		}
		return union(parts...)
	case kindRegex:
		parts := make([][]string, len(fm.res))
		for i, rx := range fm.res {
			re, err := syntax.Parse(rx.String(), syntax.Perl)
			if err != nil {
				return nil
			}
			parts[i] = literalsOfRegex(re)
		}
		if fm.all {
			var best []string
			for _, p := range parts {
				best = better(best, p)
			}
			return best
		}
		return union(parts...)
	}
	return nil
}

// literalsOfPattern: the longest literal run of a wildcard pattern.
func literalsOfPattern(p *pattern) []string {
	best := ""
	for _, t := range p.toks {
		if !t.star && !t.one && len(t.s) > len(best) {
			best = t.s
		}
	}
	best = literalOf(strings.ToLower(best))
	if best == "" {
		return nil
	}
	return []string{best}
}

// literalsOfRegex: literals one of which every match contains.
func literalsOfRegex(re *syntax.Regexp) []string {
	switch re.Op {
	case syntax.OpLiteral:
		s := literalOf(strings.ToLower(string(re.Rune)))
		if s == "" {
			return nil
		}
		return []string{s}
	case syntax.OpCapture, syntax.OpPlus:
		return literalsOfRegex(re.Sub[0])
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return literalsOfRegex(re.Sub[0])
		}
	case syntax.OpConcat:
		var best []string
		for _, s := range re.Sub {
			best = better(best, literalsOfRegex(s))
		}
		return best
	case syntax.OpAlternate:
		parts := make([][]string, len(re.Sub))
		for i, s := range re.Sub {
			parts[i] = literalsOfRegex(s)
		}
		return union(parts...)
	}
	return nil
}

// pathSegmentKeys: for a matcher on request.path, the first path segments
// (lowercased) a matching path can have, or ok=false.
func pathSegmentKeys(fm *fieldMatcher) ([]string, bool) {
	if fm.negate || fm.all || fm.null {
		return nil, false
	}
	set := map[string]bool{}
	switch fm.kind {
	case kindPattern:
		if len(fm.pats) == 0 {
			return nil, false
		}
		for _, p := range fm.pats {
			if len(p.toks) == 0 || p.toks[0].star || p.toks[0].one {
				return nil, false
			}
			lit := strings.ToLower(p.toks[0].s)
			seg, _, found := strings.Cut(lit, "/")
			if !found && !(p.op == opEqual) {
				return nil, false
			}
			set[seg] = true
		}
	case kindRegex:
		for _, rx := range fm.res {
			src := rx.String()
			if !strings.HasPrefix(src, "^") {
				return nil, false
			}
			prefix, _ := rx.LiteralPrefix()
			seg, _, found := strings.Cut(strings.ToLower(prefix), "/")
			if !found {
				return nil, false
			}
			set[seg] = true
		}
	default:
		return nil, false
	}
	return sortedKeys(set), true
}

// firstSegment of a Vault request path, lowercased into buf.
func firstSegment(path string, buf []byte) (string, []byte) {
	seg, _, _ := strings.Cut(path, "/")
	buf = buf[:0]
	for i := 0; i < len(seg); i++ {
		buf = append(buf, lowerASCII(seg[i]))
	}
	return b2s(buf), buf
}

// byteRarity: how often each byte occurs in audit records, per 10,000
// bytes of compact JSON, measured over the public CloudTrail and Vault
// corpus (../shared/testdata) with the letters counted in both cases. A
// literal is searched for by its rarest byte (a letter in both cases).
// Bytes not listed occur less than once in 2,000; upper-case letters (as
// in keys searched in the raw text) count as rare.
var byteRarity = func() (r [256]uint16) {
	for _, e := range []struct {
		c byte
		n uint16
	}{
		{'"', 1041},
		{'e', 794},
		{'a', 558},
		{'t', 520},
		{'s', 422},
		{'r', 387},
		{':', 378},
		{'n', 371},
		{'i', 337},
		{'c', 322},
		{'o', 315},
		{'d', 274},
		{',', 252},
		{'2', 252},
		{'1', 220},
		{'-', 213},
		{'0', 206},
		{'m', 206},
		{'u', 199},
		{'p', 179},
		{'l', 175},
		{'3', 174},
		{'7', 150},
		{'8', 143},
		{'b', 140},
		{'4', 136},
		{'f', 131},
		{'6', 131},
		{'5', 127},
		{'9', 122},
		{'.', 119},
		{'v', 103},
		{'h', 88},
		{'y', 83},
		{'}', 74},
		{'{', 74},
		{'g', 72},
		{'w', 67},
		{'/', 64},
		{'k', 60},
		{' ', 50},
		{'z', 39},
		{'q', 36},
		{'j', 23},
		{'x', 22},
		{'+', 12},
		{'|', 8},
		{')', 7},
		{'(', 7},
		{'_', 110},
	} {
		r[e.c] = e.n
	}
	return r
}()

// containsLit reports whether text holds lit, searching for lit's rarest
// byte and checking the rest around it.
func containsLit(text, lit string) bool {
	a := 0
	for i := 1; i < len(lit); i++ {
		if byteRarity[lit[i]] < byteRarity[lit[a]] {
			a = i
		}
	}
	c := lit[a]
	for off := a; off < len(text); {
		j := strings.IndexByte(text[off:], c)
		if j < 0 {
			return false
		}
		pos := off + j - a
		if pos+len(lit) <= len(text) && text[pos:pos+len(lit)] == lit {
			return true
		}
		off += j + 1
	}
	return false
}

// asciiText reports whether b is all ASCII, reading eight bytes at a time.
func asciiText(b []byte) bool {
	var high uint64
	i := 0
	for ; i+32 <= len(b); i += 32 {
		high |= binary.LittleEndian.Uint64(b[i:]) | binary.LittleEndian.Uint64(b[i+8:]) |
			binary.LittleEndian.Uint64(b[i+16:]) | binary.LittleEndian.Uint64(b[i+24:])
	}
	for ; i+8 <= len(b); i += 8 {
		high |= binary.LittleEndian.Uint64(b[i:])
	}
	for ; i < len(b); i++ {
		high |= uint64(b[i])
	}
	return high&0x8080808080808080 == 0
}

// foldsCase reports whether an expression matches some part case-
// insensitively.
func foldsCase(re *syntax.Regexp) bool {
	if re.Flags&syntax.FoldCase != 0 {
		return true
	}
	for _, s := range re.Sub {
		if foldsCase(s) {
			return true
		}
	}
	return false
}

// reMatch runs expression i of fm on s, after checking its literals on
// the value (ls: s lowercased when s is ASCII, else "").
func (fm *fieldMatcher) reMatch(i int, s, ls string) bool {
	if lits := fm.reLits[i]; lits != nil && (!fm.reFold[i] || isASCII(s)) {
		found := false
		for _, l := range lits {
			if ls != "" || s == "" {
				found = strings.Contains(ls, l)
			} else {
				found = indexFold(s, l) >= 0
			}
			if found {
				break
			}
		}
		if !found {
			return false
		}
	}
	return fm.res[i].MatchString(s)
}

// hasQuoted reports whether text holds k between double quotes (as a
// key or string would be written without escapes), searching for k's
// rarest byte.
func hasQuoted(text, k string) bool {
	if k == "" {
		return strings.Contains(text, `""`)
	}
	a := 0
	for i := 1; i < len(k); i++ {
		if byteRarity[k[i]] < byteRarity[k[a]] {
			a = i
		}
	}
	c := k[a]
	for off := a; off < len(text); {
		j := strings.IndexByte(text[off:], c)
		if j < 0 {
			return false
		}
		pos := off + j - a
		if pos >= 1 && pos+len(k) < len(text) && text[pos-1] == '"' && text[pos+len(k)] == '"' && text[pos:pos+len(k)] == k {
			return true
		}
		off += j + 1
	}
	return false
}
