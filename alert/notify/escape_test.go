package notify

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"auditwatch/internal/escape"
)

// FuzzInertJSON: the rewritten JSON decodes to the same value, and no
// invisible character is left raw in it.
func FuzzInertJSON(f *testing.F) {
	for _, s := range []string{"plain", "bidi\u202eevil", "zw\u200b\u2060x", "nl\u2028ps\u2029", "c1\u0085", "emoji 😀 \U000e0001 tag", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := json.Marshal(map[string]string{"v": s})
		if err != nil {
			t.Fatalf("encoding/json refused a string: %v", err) // it never does: invalid UTF-8 becomes U+FFFD
		}
		out := InertJSON(b)
		var want, got map[string]string
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("InertJSON(%q) = %q: not JSON: %v", b, out, err)
		}
		if got["v"] != want["v"] {
			t.Fatalf("value changed: %q -> %q", want["v"], got["v"])
		}
		for i := 0; i < len(out); {
			r, n := utf8.DecodeRune(out[i:])
			if r >= 0x80 && escape.Invisible(r) {
				t.Fatalf("invisible %U left raw in %q", r, out)
			}
			i += n
		}
	})
}

func TestRedactKeepsClassification(t *testing.T) {
	base := Retryable(ReasonServer, 0, errors.New(`post "https://hooks.slack.com/services/T0/B0/SECRETTOKEN123": EOF`))
	err := Redact(base, URLSecrets("https://hooks.slack.com/services/T0/B0/SECRETTOKEN123")...)
	if strings.Contains(err.Error(), "SECRETTOKEN123") || !strings.Contains(err.Error(), Redacted) {
		t.Errorf("Redact = %q", err)
	}
	if d := Classify(err); !d.Retry || d.Reason != ReasonServer {
		t.Errorf("classification lost: %+v", d)
	}
	plain := errors.New("post: connection refused")
	if Redact(nil, "x") != nil || Redact(plain, "") != plain {
		t.Error("Redact of nil or with no secret changed the error")
	}
	// The process-wide layer masks a Slack webhook path even when the
	// caller names no secret.
	if got := Redact(base, "").Error(); strings.Contains(got, "SECRETTOKEN123") {
		t.Errorf("Redact without secrets kept the webhook token: %q", got)
	}
}
