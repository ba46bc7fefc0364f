package escape

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// hostile holds every class the table neutralises.
var hostile = []string{
	"plain text",
	"\x1b[2J\x1b]0;pwned\x07", "line1\r\nline2", "nul\x00", "del\x7f", "c1\u009b31m", "bad\xffutf8",
	"zw\u200bsp\u200cnj\u200djoin\u200elrm\u200frlm", "bidi\u202aa\u202bb\u202cc\u202dd\u202eevil",
	"iso\u2066a\u2067b\u2068c\u2069d", "wj\u2060x\u2061y", "bom\ufeffx", "ls\u2028ps\u2029", "shy\u00adx", "tag\U000E0041x",
	"<!channel> <@U123> <#C1> <https://evil|click> &amp; *b* _i_ ~s~ `c`", "ping @channel @HERE @everyone",
	`back\slash | pipe = eq " quote ] bracket`, "=cmd()", "+1", "-1", "@SUM(A1)", "\tx", "é漢✓",
}

func TestTable(t *testing.T) {
	tests := []struct {
		c       Context
		in, out string
	}{
		{Slack, "<!channel> & <@U1|x>", "&lt;!channel&gt; &amp; &lt;@U1|x&gt;"},
		{Slack, "*b* _i_ ~s~ `c`", "＊b＊ ＿i＿ ～s～ ｀c｀"},
		{Slack, "ping @channel and @HERE", "ping ＠channel and ＠HERE"},
		{Slack, "a\r\nb\x00", "a␍␊b␀"},
		{Slack, "bidi\u202eevil zw\u200bx bom\ufeff c1\u0085 bad\xff", "bidi\uFFFDevil zw\uFFFDx bom\uFFFD c1\uFFFD bad\uFFFD"},
		{CEFHeader, `a|b\c` + "\r\n\x01\u202e=", `a\|b\\c\r\n` + "\uFFFD\uFFFD="},
		{CEFExtension, `k=v\x` + "\n\u200b|", `k\=v\\x\n` + "\uFFFD|"},
		{SDParam, `a"b]c\` + "\r\n\u2066", `a\"b\]c\\` + "\uFFFD\uFFFD\uFFFD"},
		{JSON, "a\x1b\u202e\"", `a\x1B\u{202E}"`},
		{Terminal, "evil\x1b[31m\r\n\u202egnp.exe\\\xff", `evil\x1B[31m\x0D\x0A\u{202E}gnp.exe\\\xFF`},
		{Terminal, "c1\u009b zw\u200b bom\ufeff", `c1\x9B zw\u{200B} bom\u{FEFF}`},
		{CSV, "=cmd()", "'=cmd()"},
		{CSV, "@SUM(A1)", "'@SUM(A1)"},
		{CSV, "\t=1", `'\x09=1`},
		{CSV, "a\r\nb\u202e", `a\x0D\x0Ab\u{202E}`},
		{CSV, "ok, \"quoted\"", "ok, \"quoted\""},
		{Log, "a\x00b\r\nc\x7f\xff\u202e", "a␀b␍␊c␡\uFFFD\uFFFD"},
		{Log, "plain", "plain"},
	}
	for _, tt := range tests {
		if got := String(tt.c, tt.in); got != tt.out {
			t.Errorf("String(%s, %q) = %q, want %q", tt.c, tt.in, got, tt.out)
		}
	}
}

func TestClean(t *testing.T) {
	if got := Clean(CEFExtension, "a=b\r\n\x01\u202e"); got != "a=b\r\n\uFFFD\uFFFD" {
		t.Errorf("Clean(cef-extension) = %q", got)
	}
	if got := Clean(SDParam, "a\"\r\n"); got != "a\"\uFFFD\uFFFD" {
		t.Errorf("Clean(sd) = %q", got)
	}
	if got := Clean(Slack, "<@U1> *x*"); got != "<@U1> *x*" {
		t.Errorf("Clean(slack) changed syntax: %q", got)
	}
}

func TestBounded(t *testing.T) {
	got := Bounded(Slack, strings.Repeat("<", 10), 12)
	if got != "&lt;&lt;…" {
		t.Errorf("Bounded = %q", got)
	}
	if got := Bounded(Slack, "abc", 3); got != "abc" {
		t.Errorf("exact fit cut: %q", got)
	}
	if got := Bounded(Terminal, "ab\x1b", 4); got != "ab…" && len(got) > 4 {
		t.Errorf("Bounded split an escape: %q", got)
	}
}

// TestHostileEveryContext runs every hostile sample through every context
// with the fuzz target's checks, so they run without -fuzz too.
func TestHostileEveryContext(t *testing.T) {
	for _, c := range Contexts() {
		for _, s := range hostile {
			check(t, c, s)
		}
	}
}

// FuzzEscape: in every context no control or invisible character and no
// invalid UTF-8 survives, the context's syntax characters survive only
// escaped, and the visible text is preserved (every printable character
// that is not syntax comes out, in order).
func FuzzEscape(f *testing.F) {
	for _, s := range hostile {
		f.Add(s, 40)
	}
	f.Fuzz(func(t *testing.T, s string, max int) {
		for _, c := range Contexts() {
			check(t, c, s)
			if max = max % 4096; max < 0 {
				max = -max
			}
			b := Bounded(c, s, max+3)
			if len(b) > max+3 || !utf8.ValidString(b) {
				t.Fatalf("Bounded(%s, %q, %d) = %q: over the bound or invalid", c, s, max+3, b)
			}
		}
	})
}

func check(t *testing.T, c Context, s string) {
	t.Helper()
	out := String(c, s)
	if !utf8.ValidString(out) {
		t.Fatalf("String(%s, %q) = %q is not valid UTF-8", c, s, out)
	}
	for _, r := range out {
		if Invisible(r) {
			t.Fatalf("String(%s, %q) = %q keeps %U", c, s, out, r)
		}
	}
	switch c {
	case Slack:
		if strings.ContainsAny(out, "<>*_~`") || strings.Contains(strings.ToLower(out), "@channel") ||
			strings.Contains(strings.ToLower(out), "@here") || strings.Contains(strings.ToLower(out), "@everyone") {
			t.Fatalf("String(slack, %q) = %q keeps markup or a broadcast", s, out)
		}
	case CSV:
		if out != "" && strings.IndexByte("=+-@", out[0]) >= 0 {
			t.Fatalf("String(csv, %q) = %q starts a formula", s, out)
		}
	}
	// Visible text preserved: the printable, non-syntax runes of s are a
	// subsequence of out.
	rest := out
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		if (r == utf8.RuneError && size <= 1) || Invisible(r) || Syntax(c, r) {
			continue
		}
		j := strings.IndexRune(rest, r)
		if j < 0 {
			t.Fatalf("String(%s, %q) = %q lost the visible %q", c, s, out, r)
		}
		rest = rest[j+utf8.RuneLen(r):]
	}
}
