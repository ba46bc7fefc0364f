package jsonx

import (
	"bytes"
	"encoding/binary"
	"math/bits"
)

// MaxLexDepth is the nesting depth beyond which the lexing helpers give
// up (fastjson's own limit), so a record they refuse still gets
// fastjson's verdict.
const MaxLexDepth = 300

// The lexing helpers below read one JSON text in place, for parsers that
// pick a few fields out of a record and must still refuse malformed
// JSON. They accept no more than fastjson.Parse does (often less: their
// callers hand anything refused to fastjson for the definitive verdict),
// and return -1 for anything they refuse.

// SkipWS returns the index of the first non-whitespace byte at or after i.
func SkipWS(b []byte, i int) int {
	if i < len(b) && b[i] > ' ' {
		return i
	}
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\t' || b[i] == '\r') {
		i++
	}
	return i
}

// String reads the string starting at b[i] == '"' and returns the index
// after its closing quote and whether it contains a backslash (then its
// content needs unescaping). end is -1 when the string is unterminated.
func String(b []byte, i int) (end int, escaped bool) {
	i++
	// most strings (keys, ids, times) end within a few words: test
	// eight bytes at a time
	for n := 0; n < 4 && i+8 <= len(b); n++ {
		x := binary.LittleEndian.Uint64(b[i:])
		q := x ^ (lows * '"')
		s := x ^ (lows * '\\')
		// a zero byte in q or s marks a match; the lowest marked byte is
		// exact (borrows only reach bytes above a match)
		mq := (q - lows) &^ q & highs
		if m := mq | ((s - lows) &^ s & highs); m != 0 {
			j := i + bits.TrailingZeros64(m)/8
			if mq&(m&-m) != 0 {
				// the first match is a quote: no borrow from a lower
				// match can have marked it
				return j + 1, false
			}
			return escapedString(b, j)
		}
		i += 8
	}
	// longer ones: find the closing quote candidate, then look for a
	// backslash before it (both vectorized by the runtime)
	q := bytes.IndexByte(b[i:], '"')
	if q < 0 {
		if bytes.IndexByte(b[i:], '\\') >= 0 {
			return -1, true
		}
		return -1, false
	}
	q += i
	if k := bytes.IndexByte(b[i:q], '\\'); k >= 0 {
		return escapedString(b, i+k)
	}
	return q + 1, false
}

// escapedString finishes String from the backslash at b[j].
func escapedString(b []byte, j int) (end int, escaped bool) {
	i := j + 2 // the escaped byte cannot end the string
	for {
		j := quoteOrBackslash(b, i)
		if j < 0 {
			return -1, true
		}
		if b[j] == '"' {
			return j + 1, true
		}
		i = j + 2
	}
}

// skipString is String without the escape report.
func skipString(b []byte, i int) int {
	end, _ := String(b, i)
	return end
}

const (
	lows  = 0x0101010101010101
	highs = 0x8080808080808080
)

// quoteOrBackslash returns the index of the first '"' or '\\' in b at or
// after i, or -1. It tests eight bytes at a time.
func quoteOrBackslash(b []byte, i int) int {
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		q := x ^ (lows * '"')
		s := x ^ (lows * '\\')
		// a zero byte in q or s marks a match; the lowest marked byte is
		// exact (borrows only reach bytes above a match)
		if m := ((q - lows) &^ q & highs) | ((s - lows) &^ s & highs); m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
	}
	for ; i < len(b); i++ {
		if c := b[i]; c == '"' || c == '\\' {
			return i
		}
	}
	return -1
}

// Skip reads the value starting at b[i] (no leading whitespace) nested at
// depth and returns the index after it, or -1.
func Skip(b []byte, i, depth int) int {
	if i >= len(b) || depth > MaxLexDepth {
		return -1
	}
	switch c := b[i]; c {
	case '"':
		return skipString(b, i)
	case '{':
		i = SkipWS(b, i+1)
		if i < len(b) && b[i] == '}' {
			return i + 1
		}
		for {
			if i >= len(b) || b[i] != '"' {
				return -1
			}
			if i = skipString(b, i); i < 0 {
				return -1
			}
			if i = SkipWS(b, i); i >= len(b) || b[i] != ':' {
				return -1
			}
			if i = Skip(b, SkipWS(b, i+1), depth+1); i < 0 {
				return -1
			}
			if i = SkipWS(b, i); i >= len(b) {
				return -1
			}
			if b[i] == '}' {
				return i + 1
			}
			if b[i] != ',' {
				return -1
			}
			i = SkipWS(b, i+1)
		}
	case '[':
		i = SkipWS(b, i+1)
		if i < len(b) && b[i] == ']' {
			return i + 1
		}
		for {
			if i = Skip(b, i, depth+1); i < 0 {
				return -1
			}
			if i = SkipWS(b, i); i >= len(b) {
				return -1
			}
			if b[i] == ']' {
				return i + 1
			}
			if b[i] != ',' {
				return -1
			}
			i = SkipWS(b, i+1)
		}
	case 't':
		return literal(b, i, "true")
	case 'f':
		return literal(b, i, "false")
	case 'n':
		return literal(b, i, "null")
	}
	j := i
	for j < len(b) {
		c := b[j]
		if (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E' {
			j++
			continue
		}
		break
	}
	if j == i || (j == i+1 && (b[i] == '-' || b[i] == '+')) {
		// nothing, or a lone sign (which fastjson refuses too)
		return -1
	}
	return j
}

func literal(b []byte, i int, lit string) int {
	if len(b)-i >= len(lit) && string(b[i:i+len(lit)]) == lit {
		return i + len(lit)
	}
	return -1
}

// Object calls fn for each member of the object starting at b[i] == '{'
// nested at depth, with the key's raw bytes (between the quotes), whether
// the key has escapes, and the index of the value's first byte (within b); fn
// returns the index after the value (-1 to give up). Object returns the
// index after the object, or -1.
func Object(b []byte, i, depth int, fn func(key []byte, escaped bool, v int) int) int {
	if i >= len(b) || b[i] != '{' || depth > MaxLexDepth {
		return -1
	}
	i = SkipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return -1
		}
		end, esc := String(b, i)
		if end < 0 {
			return -1
		}
		key := b[i+1 : end-1]
		if i = SkipWS(b, end); i >= len(b) || b[i] != ':' {
			return -1
		}
		if i = SkipWS(b, i+1); i >= len(b) {
			return -1
		}
		if i = fn(key, esc, i); i < 0 {
			return -1
		}
		if i = SkipWS(b, i); i >= len(b) {
			return -1
		}
		if b[i] == '}' {
			return i + 1
		}
		if b[i] != ',' {
			return -1
		}
		i = SkipWS(b, i+1)
	}
}

// Array calls fn for each element of the array starting at b[i] == '['
// nested at depth, with the element's index and the index of its first
// byte (always within b); fn returns the index after the element (-1 to give up). Array
// returns the index after the array, or -1.
func Array(b []byte, i, depth int, fn func(n, v int) int) int {
	if i >= len(b) || b[i] != '[' || depth > MaxLexDepth {
		return -1
	}
	i = SkipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1
	}
	for n := 0; ; n++ {
		if i >= len(b) {
			return -1
		}
		if i = fn(n, i); i < 0 {
			return -1
		}
		if i = SkipWS(b, i); i >= len(b) {
			return -1
		}
		if b[i] == ']' {
			return i + 1
		}
		if b[i] != ',' {
			return -1
		}
		i = SkipWS(b, i+1)
	}
}
