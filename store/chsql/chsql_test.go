package chsql

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"auditwatch/schema"
)

// decodeLiteral is an independent reader of ClickHouse's single-quoted
// string literal. It returns the value and the number of bytes the literal
// spans, the way the server's lexer reads it.
func decodeLiteral(t *testing.T, s string) (string, int) {
	t.Helper()
	if s == "" || s[0] != '\'' {
		t.Fatalf("literal %q does not start with a quote", s)
	}
	var b []byte
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '\'':
			return string(b), i + 1
		case '\\':
			if i+1 >= len(s) {
				t.Fatalf("literal %q ends inside an escape", s)
			}
			i++
			if s[i] != 'x' || i+2 >= len(s) {
				t.Fatalf("literal %q uses escape \\%c (QuoteString only writes \\xHH)", s, s[i])
			}
			v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				t.Fatalf("literal %q: bad hex escape: %v", s, err)
			}
			b = append(b, byte(v))
			i += 2
		default:
			if c < 0x20 || c >= 0x7f {
				t.Fatalf("literal %q carries raw byte %#x", s, c)
			}
			b = append(b, c)
		}
	}
	t.Fatalf("literal %q is not terminated", s)
	return "", 0
}

func FuzzQuoteString(f *testing.F) {
	for _, s := range []string{"", "'", "\\", "\\'", "'; DROP TABLE t; --", "\x00", "\xff\xfe", "é", "{x:String}", "a\nb\tc\r"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		lit := QuoteString(s)
		got, n := decodeLiteral(t, lit)
		if n != len(lit) {
			t.Fatalf("literal of %q ends at byte %d of %d: the rest would be SQL", s, n, len(lit))
		}
		if got != s {
			t.Fatalf("literal of %q reads back as %q", s, got)
		}
		bound, err := Bind("SELECT {v:String} AS v", Params{Str("v", s)})
		if err != nil || bound != "SELECT "+lit+" AS v" {
			t.Fatalf("Bind = %q, %v", bound, err)
		}
	})
}

func TestBindChecks(t *testing.T) {
	if _, err := Bind("SELECT {a:String}", nil); err == nil {
		t.Error("missing parameter accepted")
	}
	if _, err := Bind("SELECT 1", Params{Str("a", "x")}); err == nil {
		t.Error("unused parameter accepted")
	}
	if _, err := Bind("SELECT {a:UInt64}", Params{Str("a", "1")}); err == nil {
		t.Error("type mismatch accepted")
	}
	if _, err := Bind("SELECT {a:UInt64}", Params{{Name: "a", Type: "UInt64", Value: "1 OR 1"}}); err == nil {
		t.Error("non-numeric UInt64 accepted")
	}
	got, err := Bind("LIMIT {n:UInt64}", Params{U64("n", 7)})
	if err != nil || got != "LIMIT 7" {
		t.Errorf("Bind = %q, %v", got, err)
	}
}

func TestIPRange(t *testing.T) {
	tests := []struct{ in, lo, hi string }{
		{"10.0.0.0/24", "10.0.0.0", "10.0.0.255"},
		{"10.0.0.7", "10.0.0.7", "10.0.0.7"},
		{"2001:db8::/32", "2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"},
	}
	for _, tc := range tests {
		lo, hi, err := IPRange(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		if lo != IP16(tc.lo) || hi != IP16(tc.hi) {
			t.Errorf("IPRange(%s) = %x..%x", tc.in, lo, hi)
		}
	}
	if _, _, err := IPRange("10.0.0.0/33"); err == nil || !strings.Contains(err.Error(), "10.0.0.0/33") {
		t.Errorf("bad CIDR error = %v", err)
	}
}

func TestEventTSVEscapes(t *testing.T) {
	ev := schema.Event{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), ID: "x\ty\nz\\", Policies: []string{"a'b", "c\td"}, SourceIP: "10.0.0.1"}
	line := string(AppendEventTSV(nil, &ev))
	if strings.Count(line, "\t") != len(EventColumns)-1 || strings.Count(line, "\n") != 1 {
		t.Fatalf("row has %d tabs and %d newlines: %q", strings.Count(line, "\t"), strings.Count(line, "\n"), line)
	}
}

func TestAppendDayTime(t *testing.T) {
	for _, tm := range []time.Time{time.Date(2026, 11, 28, 1, 2, 3, 0, time.UTC), time.Date(1999, 1, 9, 23, 59, 59, 0, time.FixedZone("x", 3600)), time.Unix(-5, 0)} {
		got := string(appendDayTime(nil, tm))
		c := ClampTime(tm)
		want := c.Format("2006-01-02") + "\t" + c.Format(tsLayout)
		if got != want {
			t.Errorf("appendDayTime(%v) = %q, want %q", tm, got, want)
		}
	}
}

// FuzzAppendEventTSV: whatever the attacker-controlled fields hold, a row
// keeps exactly its columns (no raw tab or newline escapes a field) and
// every escaped field decodes back to its value.
func FuzzAppendEventTSV(f *testing.F) {
	f.Add("p", "secret/x", "10.0.0.1", "ua", "pol")
	f.Add("a\tb", "c\nd", "::1", "\\", "'")
	f.Add("\x00", "\r\n", "not-an-ip", "\xff", "]['")
	f.Fuzz(func(t *testing.T, principal, resource, ip, ua, pol string) {
		ev := schema.Event{Time: time.Unix(1700000000, 0), ID: "id", Principal: principal, Resource: resource, SourceIP: ip, UserAgent: ua, Policies: []string{pol, pol}}
		line := AppendEventTSV(nil, &ev)
		if line[len(line)-1] != '\n' || strings.Count(string(line), "\n") != 1 {
			t.Fatalf("row has a raw newline inside: %q", line)
		}
		fields := strings.Split(string(line[:len(line)-1]), "\t")
		if len(fields) != len(EventColumns) {
			t.Fatalf("row has %d fields, want %d: %q", len(fields), len(EventColumns), line)
		}
		for i, c := range EventColumns {
			want := map[string]string{"principal": principal, "resource": resource, "user_agent": ua, "source_ip": ip}[c]
			if want == "" && c != "principal" && c != "resource" && c != "user_agent" && c != "source_ip" {
				continue
			}
			if got := unescapeTSV(t, fields[i]); got != want {
				t.Fatalf("column %s reads back %q, want %q", c, got, want)
			}
		}
	})
}

func unescapeTSV(t *testing.T, s string) string {
	var b []byte
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b = append(b, s[i])
			continue
		}
		i++
		if i >= len(s) {
			t.Fatalf("field %q ends in a lone backslash", s)
		}
		m := map[byte]byte{'\\': '\\', 't': '\t', 'n': '\n', 'r': '\r', '0': 0, 'b': '\b', 'f': '\f', '\'': '\''}
		c, ok := m[s[i]]
		if !ok {
			t.Fatalf("field %q has unknown escape \\%c", s, s[i])
		}
		b = append(b, c)
	}
	return string(b)
}
