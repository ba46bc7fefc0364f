package redact

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	Register("s3cr3t-registered-value")
	tests := []struct{ in, gone, keep string }{
		{`Post "https://hooks.slack.com/services/T0001/B0002/XXXXXXXXXXXXXXXXXXXXXXXX": dial tcp: refused`, "XXXXXXXXXXXXXXXXXXXXXXXX", "hooks.slack.com"},
		{"https://user:pw-secret@example.com/api?token=abc123&x=1", "pw-secret", "example.com"},
		{"https://example.com/api?token=abc123&x=1", "abc123", "example.com/api"},
		{"https://example.com/hook/0a1b2c3d4e5f6a7b8c9d0e1f", "0a1b2c3d4e5f6a7b8c9d0e1f", "example.com/hook/"},
		{"Authorization: Splunk 11111111-2222-3333-4444-555555555555", "11111111-2222", "Authorization"},
		{"bearer eyJhbGciOi.payload.sig", "eyJhbGciOi", "bearer"},
		{"slack token xoxb-1234-5678-abcdefgh rejected", "xoxb-1234", "rejected"},
		{`{"password":"hunter2hunter2","user":"a"}`, "hunter2hunter2", `"user":"a"`},
		{"value s3cr3t-registered-value in text", "s3cr3t-registered-value", "in text"},
		{"design=fine plain text", "", "design=fine plain text"},
	}
	for _, tt := range tests {
		got := String(tt.in)
		if tt.gone != "" && strings.Contains(got, tt.gone) {
			t.Errorf("String(%q) = %q keeps %q", tt.in, got, tt.gone)
		}
		if !strings.Contains(got, tt.keep) {
			t.Errorf("String(%q) = %q lost %q", tt.in, got, tt.keep)
		}
	}
}

func TestErrorKeepsChain(t *testing.T) {
	base := errors.New("boom")
	ue := &url.Error{Op: "Post", URL: "https://hooks.slack.com/services/T1/B2/abcdefabcdefabcdefabcdef", Err: base}
	err := Error(fmt.Errorf("slack: %w", ue))
	if strings.Contains(err.Error(), "abcdefabcdef") || !errors.Is(err, base) {
		t.Fatalf("Error() = %q, Is(base) = %v", err, errors.Is(err, base))
	}
	if Error(nil) != nil {
		t.Fatal("Error(nil) != nil")
	}
}

func TestHeader(t *testing.T) {
	h := http.Header{"Authorization": {"Splunk abc"}, "X-Custom-Token": {"t"}, "Content-Type": {"application/json"}}
	got := Header(h)
	if got.Get("Authorization") != Mask || got.Get("X-Custom-Token") != Mask || got.Get("Content-Type") != "application/json" {
		t.Fatalf("Header = %v", got)
	}
	if h.Get("Authorization") != "Splunk abc" {
		t.Fatal("Header changed its argument")
	}
}

func TestHandler(t *testing.T) {
	Register("handler-secret-value-42")
	var buf bytes.Buffer
	log := slog.New(Handler(slog.NewJSONHandler(&buf, nil))).With("url", "https://x.example/?token=abcdef")
	log.Warn("post handler-secret-value-42 failed", "err", errors.New("Bearer handler-secret-value-42"),
		slog.Group("g", "v", "handler-secret-value-42"), "any", []string{"handler-secret-value-42"})
	out := buf.String()
	if strings.Contains(out, "handler-secret-value-42") || strings.Contains(out, "abcdef") {
		t.Fatalf("log keeps a secret: %s", out)
	}
	if !strings.Contains(out, Mask) {
		t.Fatalf("nothing masked: %s", out)
	}
}

// FuzzString: a registered secret never survives, whatever surrounds it.
func FuzzString(f *testing.F) {
	f.Add("prefix ", " suffix")
	f.Add("https://h/?a=", "&b=c")
	f.Add("\x00", "")
	const secret = "fuzz-registered-secret-99"
	Register(secret)
	f.Fuzz(func(t *testing.T, a, b string) {
		if got := String(a + secret + b); strings.Contains(got, secret) {
			t.Fatalf("String keeps the secret: %q", got)
		}
	})
}

func TestURLParts(t *testing.T) {
	for _, tt := range []struct {
		url        string
		want, keep []string
	}{
		{"https://hooks.slack.com/services/T0/B0/abcdefabcdef", []string{"/services/T0/B0/abcdefabcdef"}, nil},
		{"https://h.example/hook?token=q-secret-1&x=y", []string{"token=q-secret-1&x=y", "q-secret-1"}, []string{"/hook"}},
		{"https://u:pw-secret-2@h.example/api/v1/alerts", []string{"pw-secret-2"}, []string{"/api/v1/alerts"}},
		{"https://h.example/hook/0a1b2c3d4e5f6a7b8c9d", []string{"0a1b2c3d4e5f6a7b8c9d"}, nil},
	} {
		got := URLParts(tt.url)
		for _, w := range tt.want {
			if !slices.Contains(got, w) {
				t.Errorf("URLParts(%q) = %q, lacks %q", tt.url, got, w)
			}
		}
		for _, k := range tt.keep {
			if slices.Contains(got, k) {
				t.Errorf("URLParts(%q) = %q: %q is no credential", tt.url, got, k)
			}
		}
	}
	// Registered, the parts are masked without the URL around them (a
	// server echoing its request line).
	Register(URLParts("https://h.example/hook?token=echoed-query-secret")...)
	if got := String("request was: POST /hook?k=echoed-query-secret"); strings.Contains(got, "echoed-query-secret") {
		t.Errorf("String = %q", got)
	}
}

func TestWriter(t *testing.T) {
	Register("writer-secret-value-77")
	var out bytes.Buffer
	w := NewWriter(&out)
	// a secret split across writes, a line without a newline at the end
	for _, p := range []string{"auditwatch x: post https://h/?token=abc", "def: refused\nvalue writer-sec", "ret-value-77\r", "last writer-secret-value-77"} {
		if n, err := w.Write([]byte(p)); n != len(p) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if strings.Contains(out.String(), "last") {
		t.Fatalf("an incomplete line was passed on: %q", out.String())
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	if strings.Contains(got, "abcdef") || strings.Contains(got, "writer-secret-value-77") || !strings.Contains(got, "refused\n") || !strings.HasPrefix(got, "auditwatch x: post") || !strings.HasSuffix(got, "last "+Mask) {
		t.Fatalf("Writer passed on %q", got)
	}
	// a long line without a newline is passed on, bounded
	out.Reset()
	w.Write(bytes.Repeat([]byte("a"), maxHeld+10))
	if out.Len() < maxHeld {
		t.Fatalf("held %d bytes of an endless line", maxHeld+10-out.Len())
	}
}
