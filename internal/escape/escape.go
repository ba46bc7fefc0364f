// Package escape owns making attacker-controlled text inert in every
// place auditwatch writes it: Slack mrkdwn, CEF header fields and
// extension values, RFC 5424 structured-data values, JSON string values,
// a terminal, a CSV cell and one line of a log. Every log field is
// attacker-controlled, so every output calls String (or Bounded) with its
// context instead of carrying its own escaper.
//
// One table (rules) says what each context neutralises. Two steps run on
// every rune:
//
//  1. Invisible characters — C0 and C1 controls, DEL, zero-width and
//     bidirectional controls (U+200B–U+200F, U+202A–U+202E,
//     U+2060–U+2069, U+FEFF), line and paragraph separators, other Unicode
//     format characters, invisible fillers — and invalid UTF-8 are turned
//     into something visible, in the context's style: control pictures
//     (␊, ␀; U+FFFD for the rest), U+FFFD, or a visible code (\x1B,
//     \u{202E}).
//  2. The context's own syntax is escaped: Slack's & < > (so no
//     <!channel>, <@U…> or <url|text> link can be formed) and its
//     formatting characters, broadcast names (@channel, @here, @everyone),
//     CEF's \ | = and line breaks, RFC 5424's \ " ], the terminal's \ (so
//     codes are unambiguous), and formula-leading CSV cells (= + - @),
//     which get a leading '.
//
// Visible text is preserved: every printable character that is not part
// of the context's syntax comes out unchanged and in order.
package escape

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Context is an output context.
type Context int

// The output contexts.
const (
	// Slack is a value inside Slack mrkdwn (Block Kit text or the text
	// fallback).
	Slack Context = iota
	// CEFHeader is an ArcSight CEF header field.
	CEFHeader
	// CEFExtension is a CEF extension value.
	CEFExtension
	// SDParam is an RFC 5424 SD-PARAM value (between the quotes).
	SDParam
	// JSON is a JSON string value, before encoding/json adds its own
	// escapes for " and \.
	JSON
	// Terminal is text printed on a terminal (tables, stderr messages).
	Terminal
	// CSV is one CSV cell (RFC 4180 quoting is left to encoding/csv).
	CSV
	// Log is one line of a log record or error message.
	Log
	numContexts
)

// style is how a context makes an invisible character visible.
type style int

const (
	// pictures: C0 controls become their control picture (U+2400+c), DEL
	// U+2421, everything else U+FFFD.
	pictures style = iota
	// replacement: U+FFFD.
	replacement
	// codes: \xHH for C0, DEL, C1 and invalid bytes, \u{X} for the rest.
	codes
)

// rule is what one context neutralises.
type rule struct {
	name string
	// invisible is how invisible characters and invalid UTF-8 are shown.
	invisible style
	// keepLineBreaks passes CR and LF to the syntax step (CEF escapes them
	// as \r and \n) instead of treating them as invisible.
	keepLineBreaks bool
	// syntax maps the context's special characters to their escape.
	syntax map[rune]string
	// broadcasts: @channel, @here and @everyone get a full-width ＠.
	broadcasts bool
	// formula: a cell starting with = + - or @ gets a leading '.
	formula bool
}

// rules is the table: one row per context.
var rules = [numContexts]rule{
	Slack: {name: "slack", invisible: pictures, broadcasts: true, syntax: map[rune]string{
		'&': "&amp;", '<': "&lt;", '>': "&gt;",
		// Formatting characters become their full-width forms, so a value
		// can neither open bold/italic/strike/code spans nor close ours.
		'*': "＊", '_': "＿", '~': "～", '`': "｀",
	}},
	CEFHeader: {name: "cef-header", invisible: replacement, keepLineBreaks: true, syntax: map[rune]string{
		'\\': `\\`, '|': `\|`, '\r': `\r`, '\n': `\n`,
	}},
	CEFExtension: {name: "cef-extension", invisible: replacement, keepLineBreaks: true, syntax: map[rune]string{
		'\\': `\\`, '=': `\=`, '\r': `\r`, '\n': `\n`,
	}},
	SDParam: {name: "rfc5424-sd", invisible: replacement, syntax: map[rune]string{
		'\\': `\\`, '"': `\"`, ']': `\]`,
	}},
	JSON:     {name: "json", invisible: codes},
	Terminal: {name: "terminal", invisible: codes, syntax: map[rune]string{'\\': `\\`}},
	CSV:      {name: "csv", invisible: codes, formula: true},
	Log:      {name: "log", invisible: pictures},
}

// String returns s made inert for c.
func String(c Context, s string) string {
	return Bounded(c, s, 0)
}

// Bounded is String cut to at most max bytes (0: no bound): a cut value
// ends with "…" and never splits an escape or a rune.
func Bounded(c Context, s string, max int) string {
	r := &rules[c]
	if !r.needs(s) && (max <= 0 || len(s) <= max) {
		return s
	}
	limit := max
	if limit <= 0 {
		limit = int(^uint(0) >> 1)
	} else if full := Bounded(c, s, 0); len(full) <= limit {
		return full
	}
	var b strings.Builder
	b.Grow(min(len(s)+16, limit))
	if r.formula && formulaLead(s) {
		b.WriteByte('\'')
	}
	var buf [16]byte
	for i := 0; i < len(s); {
		ch, size := utf8.DecodeRuneInString(s[i:])
		piece := r.piece(s, i, ch, size, buf[:0])
		if b.Len()+len(piece) > limit-len("…") {
			// Room only for the ellipsis, unless this is the last piece and fits.
			if i+size == len(s) && b.Len()+len(piece) <= limit {
				b.Write(piece)
				return b.String()
			}
			if b.Len()+len("…") <= limit {
				b.WriteString("…")
			}
			return b.String()
		}
		b.Write(piece)
		i += size
	}
	return b.String()
}

// Clean is only the first step of String: invisible characters made
// visible, the context's syntax left as it is. It is what a receiver reads
// back after undoing the context's own escaping (a CEF parser, a JSON
// decoder).
func Clean(c Context, s string) string {
	r := rules[c]
	r.syntax, r.broadcasts, r.formula = nil, false, false
	if !r.needs(s) {
		return s
	}
	var b strings.Builder
	var buf [16]byte
	for i := 0; i < len(s); {
		ch, size := utf8.DecodeRuneInString(s[i:])
		b.Write(r.piece(s, i, ch, size, buf[:0]))
		i += size
	}
	return b.String()
}

// needs reports whether String changes s.
func (r *rule) needs(s string) bool {
	if r.formula && formulaLead(s) {
		return true
	}
	for i := 0; i < len(s); {
		ch, size := utf8.DecodeRuneInString(s[i:])
		if ch == utf8.RuneError && size <= 1 {
			return true
		}
		if _, ok := r.syntax[ch]; ok {
			return true
		}
		if Invisible(ch) && !(r.keepLineBreaks && (ch == '\r' || ch == '\n')) {
			return true
		}
		if r.broadcasts && ch == '@' && broadcastName(s[i+1:]) {
			return true
		}
		i += size
	}
	return false
}

// piece is what the rune ch at s[i:i+size] becomes.
func (r *rule) piece(s string, i int, ch rune, size int, buf []byte) []byte {
	switch {
	case ch == utf8.RuneError && size <= 1:
		if r.invisible == codes {
			return appendHex(append(buf, `\x`...), uint64(s[i]), 2)
		}
		return append(buf, "\uFFFD"...)
	}
	if e, ok := r.syntax[ch]; ok {
		return append(buf, e...)
	}
	if Invisible(ch) && !(r.keepLineBreaks && (ch == '\r' || ch == '\n')) {
		switch r.invisible {
		case pictures:
			switch {
			case ch < 0x20:
				return utf8.AppendRune(buf, 0x2400+ch)
			case ch == 0x7f:
				return utf8.AppendRune(buf, 0x2421)
			}
			return append(buf, "\uFFFD"...)
		case replacement:
			return append(buf, "\uFFFD"...)
		default:
			if ch < 0xa0 {
				return appendHex(append(buf, `\x`...), uint64(ch), 2)
			}
			buf = appendHex(append(buf, `\u{`...), uint64(ch), 4)
			return append(buf, '}')
		}
	}
	if r.broadcasts && ch == '@' && broadcastName(s[i+1:]) {
		return append(buf, "＠"...)
	}
	return append(buf, s[i:i+size]...)
}

func appendHex(b []byte, v uint64, width int) []byte {
	h := strings.ToUpper(strconv.FormatUint(v, 16))
	for n := len(h); n < width; n++ {
		b = append(b, '0')
	}
	return append(b, h...)
}

// Invisible reports whether r is a character that controls a terminal or
// a renderer, or shows nothing: C0 and C1 controls, DEL, zero-width and
// bidirectional controls, line and paragraph separators, Unicode format
// characters and invisible fillers.
func Invisible(r rune) bool {
	switch {
	case r < 0x20, r == 0x7f, r >= 0x80 && r <= 0x9f:
		return true
	case r >= 0x200b && r <= 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x2060 && r <= 0x2069,
		r == 0xfeff, r == 0x2028, r == 0x2029, r == 0x061c, r == 0x00ad, r == 0x180e,
		r == 0x115f, r == 0x1160, r == 0x3164, r == 0xffa0:
		return true
	case r < 0x600:
		return false
	}
	return unicode.Is(unicode.Cf, r)
}

// broadcastName reports whether rest starts with a name Slack broadcasts to.
func broadcastName(rest string) bool {
	for _, w := range []string{"channel", "here", "everyone"} {
		if len(rest) >= len(w) && strings.EqualFold(rest[:len(w)], w) {
			return true
		}
	}
	return false
}

// formulaLead reports whether a spreadsheet would run s as a formula (its
// first character is = + - or @; tab and CR are escaped anyway).
func formulaLead(s string) bool {
	return s != "" && strings.IndexByte("=+-@\t\r", s[0]) >= 0
}

// String is the context's name in the table ("slack", "cef-header", …).
func (c Context) String() string {
	if c < 0 || c >= numContexts {
		return "context(" + strconv.Itoa(int(c)) + ")"
	}
	return rules[c].name
}

// Contexts lists every context, for tests and docs.
func Contexts() []Context {
	cs := make([]Context, numContexts)
	for i := range cs {
		cs[i] = Context(i)
	}
	return cs
}

// Syntax reports whether r is one of c's special characters, which String
// rewrites even though they are visible.
func Syntax(c Context, r rune) bool {
	_, ok := rules[c].syntax[r]
	return ok || (rules[c].broadcasts && r == '@')
}
