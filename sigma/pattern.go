package sigma

import (
	"strings"
	"unicode/utf8"
)

// pattern ops, from the cheapest.
const (
	opEqual = iota
	opPrefix
	opSuffix
	opContains
	opAny  // "*"
	opGlob // anything else
)

// pattern is a compiled Sigma string value: * matches any run of
// characters, ? one character, \* \? and \\ stand for themselves.
type pattern struct {
	op    int
	lit   string // the literal for the simple ops (lowercased unless cased)
	cased bool
	// asciiLit: lit is ASCII
	asciiLit bool
	// glob: tokens; a token is a literal, or "*" / "?" with wild set
	toks []tok
}

type tok struct {
	s    string
	star bool
	one  bool
}

func compilePattern(src string, cased bool) *pattern {
	var toks []tok
	var cur strings.Builder
	flush := func() {
		if cur.Len() > 0 {
			toks = append(toks, tok{s: cur.String()})
			cur.Reset()
		}
	}
	for i := 0; i < len(src); i++ {
		c := src[i]
		switch c {
		case '\\':
			if i+1 < len(src) && (src[i+1] == '*' || src[i+1] == '?' || src[i+1] == '\\') {
				cur.WriteByte(src[i+1])
				i++
			} else {
				cur.WriteByte('\\')
			}
		case '*':
			flush()
			if len(toks) == 0 || !toks[len(toks)-1].star {
				toks = append(toks, tok{star: true})
			}
		case '?':
			flush()
			toks = append(toks, tok{one: true})
		default:
			cur.WriteByte(c)
		}
	}
	flush()
	if !cased {
		for i := range toks {
			toks[i].s = strings.ToLower(toks[i].s)
		}
	}
	p := &pattern{cased: cased, op: opGlob, toks: toks}
	defer func() { p.asciiLit = isASCII(p.lit) }()
	lit := func(t tok) bool { return !t.star && !t.one }
	switch {
	case len(toks) == 0:
		p.op = opEqual
	case len(toks) == 1 && lit(toks[0]):
		p.op, p.lit = opEqual, toks[0].s
	case len(toks) == 1 && toks[0].star:
		p.op = opAny
	case len(toks) == 2 && lit(toks[0]) && toks[1].star:
		p.op, p.lit = opPrefix, toks[0].s
	case len(toks) == 2 && toks[0].star && lit(toks[1]):
		p.op, p.lit = opSuffix, toks[1].s
	case len(toks) == 3 && toks[0].star && lit(toks[1]) && toks[2].star:
		p.op, p.lit = opContains, toks[1].s
	}
	return p
}

func isASCII(s string) bool {
	i := 0
	for ; i+8 <= len(s); i += 8 {
		if word(s, i)&highBits != 0 {
			return false
		}
	}
	for ; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// highBits has the top bit of each byte of a word.
const highBits = 0x8080808080808080

// word is the 8 bytes of s from i (little-endian; the compiler makes it
// one load).
func word(s string, i int) uint64 {
	s = s[i : i+8]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// upperBits has the top bit of each byte of w, all of whose bytes are
// ASCII (below 0x80), that is an upper-case letter: adding 0x80-'A' sets
// it for bytes from 'A' up, adding 0x80-'Z'-1 for bytes past 'Z' (no
// byte carries into the next).
func upperBits(w uint64) uint64 {
	const ones = 0x0101010101010101
	return (w + ones*(0x80-'A')) &^ (w + ones*(0x80-'Z'-1)) & highBits
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// hasPrefixFold: lit is lowercase ASCII-compatible.
func hasPrefixFold(s, lit string) bool {
	if len(s) < len(lit) {
		return false
	}
	for i := 0; i < len(lit); i++ {
		if lowerASCII(s[i]) != lit[i] {
			return false
		}
	}
	return true
}

func indexFold(s, lit string) int {
	if len(lit) == 0 {
		return 0
	}
	first := lit[0]
	for i := 0; i+len(lit) <= len(s); i++ {
		if lowerASCII(s[i]) == first && hasPrefixFold(s[i:], lit) {
			return i
		}
	}
	return -1
}

// matchASCII is match for an ASCII value s whose ASCII-lowercased form
// is ls (the same result: for ASCII text, ASCII and Unicode lowercasing
// agree).
func (p *pattern) matchASCII(s, ls string) bool {
	if !p.cased {
		s = ls
	}
	switch p.op {
	case opAny:
		return true
	case opEqual:
		return s == p.lit
	case opPrefix:
		return strings.HasPrefix(s, p.lit)
	case opSuffix:
		return strings.HasSuffix(s, p.lit)
	case opContains:
		return strings.Contains(s, p.lit)
	}
	return globMatch(p.toks, s)
}

// match reports whether s matches the pattern.
func (p *pattern) match(s string) bool {
	if p.op == opAny {
		return true
	}
	if !p.cased {
		if isASCII(s) && isASCII(p.lit) {
			switch p.op {
			case opEqual:
				return len(s) == len(p.lit) && hasPrefixFold(s, p.lit)
			case opPrefix:
				return hasPrefixFold(s, p.lit)
			case opSuffix:
				return len(s) >= len(p.lit) && hasPrefixFold(s[len(s)-len(p.lit):], p.lit)
			case opContains:
				return indexFold(s, p.lit) >= 0
			}
		}
		s = strings.ToLower(s)
	}
	switch p.op {
	case opEqual:
		return s == p.lit
	case opPrefix:
		return strings.HasPrefix(s, p.lit)
	case opSuffix:
		return strings.HasSuffix(s, p.lit)
	case opContains:
		return strings.Contains(s, p.lit)
	}
	return globMatch(p.toks, s)
}

// globMatch matches tokens against s, backtracking to the last star.
func globMatch(toks []tok, s string) bool {
	ti, si := 0, 0
	starT, starS := -1, 0
	for {
		if ti < len(toks) {
			t := toks[ti]
			switch {
			case t.star:
				starT, starS = ti, si
				ti++
				continue
			case t.one:
				if si < len(s) {
					_, n := utf8.DecodeRuneInString(s[si:])
					si += n
					ti++
					continue
				}
			default:
				if strings.HasPrefix(s[si:], t.s) {
					si += len(t.s)
					ti++
					continue
				}
			}
		} else if si == len(s) {
			return true
		}
		// mismatch: backtrack
		if starT < 0 || starS >= len(s) {
			return false
		}
		_, n := utf8.DecodeRuneInString(s[starS:])
		starS += n
		ti, si = starT+1, starS
	}
}

// multiContains checks several "contains" literals of one matcher in one
// pass over an ASCII value: each position is tried only against the
// literals starting with its byte (a user-agent rule checking fourteen
// base64 forms reads the value once instead of fourteen times).
type multiContains struct {
	lits  []string
	first [256]uint8 // 1 + index into heads; 0: no literal starts with the byte
	heads [][]uint16
	min   int // the shortest literal's length
}

// minMulti: fewer contains literals are searched one by one.
const minMulti = 4

// newMultiContains returns nil when fewer than minMulti literals are given.
func newMultiContains(lits []string) *multiContains {
	if len(lits) < minMulti || len(lits) > 1<<16 {
		return nil
	}
	m := &multiContains{lits: lits, min: len(lits[0])}
	for k, l := range lits {
		m.min = min(m.min, len(l))
		c := l[0]
		if m.first[c] == 0 {
			if len(m.heads) == 255 {
				return nil
			}
			m.heads = append(m.heads, nil)
			m.first[c] = uint8(len(m.heads))
		}
		m.heads[m.first[c]-1] = append(m.heads[m.first[c]-1], uint16(k))
	}
	return m
}

// in reports whether s holds one of the literals.
func (m *multiContains) in(s string) bool {
	for i := 0; i+m.min <= len(s); i++ {
		h := m.first[s[i]]
		if h == 0 {
			continue
		}
		for _, k := range m.heads[h-1] {
			if strings.HasPrefix(s[i:], m.lits[k]) {
				return true
			}
		}
	}
	return false
}

// matchAnchored is match for the anchored ops (equal, prefix, suffix) on
// any value: an ASCII literal is compared with the value's bytes folding
// ASCII case, which is what lowercasing gives when the value is ASCII; a
// value that is not, or a literal that is not, takes match.
func (p *pattern) matchAnchored(s string) bool {
	if !isASCII(s) || !p.asciiLit {
		return p.match(s)
	}
	lit := p.lit
	switch p.op {
	case opEqual:
		if len(s) != len(lit) {
			return false
		}
	case opPrefix:
		if len(s) < len(lit) {
			return false
		}
		s = s[:len(lit)]
	case opSuffix:
		if len(s) < len(lit) {
			return false
		}
		s = s[len(s)-len(lit):]
	}
	if p.cased {
		return s == lit
	}
	return hasPrefixFold(s, lit)
}
