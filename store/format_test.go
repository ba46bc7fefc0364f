package store

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestWriteResult(t *testing.T) {
	r := &Result{Columns: []string{"principal", "events", "last_seen"},
		Rows: [][]any{{"evil\x1b[31m\r\n\u202e", uint64(3), time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}, {"=cmd()", uint64(1), time.Unix(0, 0)}}}
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
	if !strings.Contains(cs.String(), "'=cmd()") || !strings.HasPrefix(cs.String(), "principal,events,last_seen\r\n") ||
		strings.ContainsAny(strings.ReplaceAll(cs.String(), "\r\n", ""), "\x1b\r\u202e") || !strings.Contains(cs.String(), `evil\x1B[31m\x0D\x0A\u{202E}`) {
		t.Errorf("csv:\n%s", cs.String())
	}
	if strings.Count(cs.String(), "\r\n") != 3 {
		t.Errorf("csv records are not CRLF-terminated:\n%q", cs.String())
	}
	if strings.ContainsAny(js.String(), "\x1b\u202e") {
		t.Errorf("json keeps raw control or bidi characters:\n%q", js.String())
	}
	if err := WriteResult(&tb, r, "xml"); err == nil {
		t.Error("unknown format accepted")
	}
}
