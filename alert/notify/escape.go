package notify

import (
	"fmt"
	"net/url"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"auditwatch/internal/escape"
	"auditwatch/internal/redact"
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

// Redacted is the text that replaces a secret in an error message.
const Redacted = "[redacted]"

// Redact returns err with every occurrence of the non-empty secrets
// (tokens, webhook URLs and their paths) in its message replaced by
// [redacted], and then everything the process-wide layer
// (internal/redact: registered secrets, URL credentials, tokens) masks.
// The result still unwraps to err, so classification (Classify,
// errors.Is/As) is unchanged. A nil err stays nil.
func Redact(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	out := msg
	for _, s := range secrets {
		if len(s) >= 4 {
			out = strings.ReplaceAll(out, s, Redacted)
		}
	}
	out = redact.String(out)
	if out == msg {
		return err
	}
	return &redacted{msg: out, err: err}
}

type redacted struct {
	msg string
	err error
}

func (r *redacted) Error() string { return r.msg }
func (r *redacted) Unwrap() error { return r.err }

// URLSecrets returns the parts of a URL that may carry a credential: the
// whole URL, its path (Slack incoming webhooks keep their token there)
// and its query, for Redact.
func URLSecrets(raw string) []string {
	out := []string{raw}
	u, err := url.Parse(raw)
	if err != nil {
		return out
	}
	if len(u.Path) >= 8 {
		out = append(out, u.Path, strings.TrimPrefix(u.Path, "/"))
	}
	if u.RawQuery != "" {
		out = append(out, u.RawQuery)
	}
	if u.User != nil {
		out = append(out, u.User.String())
	}
	return out
}
