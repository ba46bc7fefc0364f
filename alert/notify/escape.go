package notify

import (
	"fmt"
	"unicode/utf16"
	"unicode/utf8"

	"auditwatch/internal/escape"
)

// InertJSON rewrites every invisible character (internal/escape's
// Invisible: C1 controls, zero-width and bidi controls, line and paragraph
// separators, format characters) that encoding/json left raw in b as a
// \uXXXX escape. The JSON value is unchanged — a consumer decodes the
// same strings — but no byte sequence in the payload can reorder or hide
// text in a SIEM's viewer. encoding/json already escapes C0 controls.
func InertJSON(b []byte) []byte {
	clean := true
	for i := 0; i < len(b); {
		if b[i] < utf8.RuneSelf {
			i++
			continue
		}
		r, n := utf8.DecodeRune(b[i:])
		if escape.Invisible(r) {
			clean = false
			break
		}
		i += n
	}
	if clean {
		return b
	}
	out := make([]byte, 0, len(b)+32)
	for i := 0; i < len(b); {
		if b[i] < utf8.RuneSelf {
			out = append(out, b[i])
			i++
			continue
		}
		r, n := utf8.DecodeRune(b[i:])
		if !escape.Invisible(r) {
			out = append(out, b[i:i+n]...)
		} else if r > 0xffff {
			r1, r2 := utf16.EncodeRune(r)
			out = fmt.Appendf(out, `\u%04x\u%04x`, r1, r2)
		} else {
			out = fmt.Appendf(out, `\u%04x`, r)
		}
		i += n
	}
	return out
}
