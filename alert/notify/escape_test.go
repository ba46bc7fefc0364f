package notify

import (
	"encoding/json"
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
