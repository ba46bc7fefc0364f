package slack

import (
	"strings"
	"testing"
	"unicode/utf8"

	"auditwatch/alert/notify"
	"auditwatch/alert/notify/notifytest"
)

// FuzzEscape checks Escape's guarantees on any input: no character that
// Slack parses as markup or mention survives, no control character, valid
// UTF-8, and the bound holds.
func FuzzEscape(f *testing.F) {
	for _, h := range notifytest.Hostile {
		f.Add(h, 64)
	}
	f.Add(notifytest.HostileValue(), 300)
	f.Add("\xff\xfe<\x00", 5)
	f.Fuzz(func(t *testing.T, s string, max int) {
		if max < 8 || max > 4096 {
			max = 8 + (max%4096+4096)%4096
		}
		got := Escape(s, max)
		if len(got) > max {
			t.Fatalf("Escape(%q, %d) is %d bytes", s, max, len(got))
		}
		if !utf8.ValidString(got) {
			t.Fatalf("Escape(%q) is not valid UTF-8: %q", s, got)
		}
		if strings.ContainsAny(got, "<>*_~`\r\n\x00\x7f") {
			t.Fatalf("Escape(%q) = %q keeps markup or a control character", s, got)
		}
		for _, r := range got {
			if r < 0x20 || (r >= 0x80 && r <= 0x9f) || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) {
				t.Fatalf("Escape(%q) = %q keeps %U", s, got, r)
			}
		}
		for i := strings.IndexByte(got, '&'); i >= 0; {
			rest := got[i:]
			if !strings.HasPrefix(rest, "&amp;") && !strings.HasPrefix(rest, "&lt;") && !strings.HasPrefix(rest, "&gt;") {
				t.Fatalf("Escape(%q) = %q has a bare or split entity", s, got)
			}
			j := strings.IndexByte(got[i+1:], '&')
			if j < 0 {
				break
			}
			i += j + 1
		}
		if strings.Contains(strings.ToLower(got), "@channel") || strings.Contains(strings.ToLower(got), "@here") {
			t.Fatalf("Escape(%q) = %q keeps a broadcast name", s, got)
		}
		// Rendering a finding made of s never fails and stays within Slack's limits.
		fd := notifytest.Finding()
		fd.Summary, fd.Principal, fd.Resource = s, s, s
		m := render(notify.Alert{Finding: fd}, 300)
		if len(m.Text) > 40000 {
			t.Fatalf("text fallback %d bytes", len(m.Text))
		}
	})
}

func BenchmarkRender(b *testing.B) {
	a := notify.Alert{Finding: notify.BoundFinding(notifytest.HostileFinding(), 2048, 20, 32)}
	b.ReportAllocs()
	for b.Loop() {
		_ = render(a, 300)
	}
}
