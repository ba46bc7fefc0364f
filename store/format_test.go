package store

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func FuzzTerminalSafe(f *testing.F) {
	for _, s := range []string{"plain", "\x1b[2J\x1b]0;pwned\x07", "a\rb", "\u202egnp.exe", "\xff", "\u009b31m", "back\\slash"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := TerminalSafe(s)
		for _, r := range out {
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u202e' || r == '\u2028' {
				t.Fatalf("TerminalSafe(%q) = %q keeps control rune %U", s, out, r)
			}
		}
		if !strings.Contains(s, "\\") && !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r >= 0x7f }) && out != s {
			t.Fatalf("printable ASCII %q altered to %q", s, out)
		}
	})
}

func TestWriteResult(t *testing.T) {
	r := &Result{Columns: []string{"principal", "events", "last_seen"},
		Rows: [][]any{{"evil\x1b[31m\r\n", uint64(3), time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}, {"=cmd()", uint64(1), time.Unix(0, 0)},
			{"\u202egnp.exe\u0085", uint64(2), time.Unix(0, 0)}, {"-2+3", uint64(0), time.Unix(0, 0)}}}
	var tb, js, cs bytes.Buffer
	for f, b := range map[string]*bytes.Buffer{FormatTable: &tb, FormatJSON: &js, FormatCSV: &cs} {
		if err := WriteResult(b, r, f); err != nil {
			t.Fatal(err)
		}
	}
	if strings.ContainsAny(tb.String(), "\x1b\r") || !strings.Contains(tb.String(), `evil\x1B[31m\x0D\x0A`) {
		t.Errorf("table not escaped:\n%s", tb.String())
	}
	if !strings.Contains(js.String(), `"events": 3`) || !strings.Contains(js.String(), `"last_seen": "2026-01-02T03:04:05Z"`) {
		t.Errorf("json:\n%s", js.String())
	}
	if !strings.Contains(cs.String(), "'=cmd()") || !strings.Contains(cs.String(), "'-2+3") || !strings.HasPrefix(cs.String(), "principal,events,last_seen\r\n") {
		t.Errorf("csv:\n%s", cs.String())
	}
	if strings.Count(cs.String(), "\r\n") != 5 || strings.ContainsAny(strings.ReplaceAll(cs.String(), "\r\n", ""), "\x1b\r\n\u202e\u0085") {
		t.Errorf("csv has raw control characters or extra records:\n%q", cs.String())
	}
	if strings.ContainsAny(js.String(), "\x1b\u202e\u0085") || !strings.Contains(js.String(), `\u202egnp.exe\u0085`) {
		t.Errorf("json keeps raw control or bidi characters:\n%q", js.String())
	}
	if err := WriteResult(&tb, r, "xml"); err == nil {
		t.Error("unknown format accepted")
	}
}
