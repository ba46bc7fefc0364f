package slack

import (
	"strings"
	"unicode/utf8"
)

// Escape makes an attacker-controlled value inert in Slack mrkdwn and in a
// message's text fallback, and bounds it to max bytes (0: no bound):
//
//   - & < > become &amp; &lt; &gt;, so no <!channel>, <@U…>, <#C…> or
//     <url|text> link can be formed;
//   - the formatting characters * _ ~ ` become their full-width forms
//     (＊ ＿ ～ ｀), so a value can neither open bold/italic/strike/code
//     spans nor close the code spans we put it in;
//   - "@channel", "@here" and "@everyone" get a zero-width joiner after the
//     @, so clients that link bare names don't ping anyone;
//   - control characters become their Unicode control pictures (␀ ␍ ␊),
//     C1 controls, bidirectional overrides and invalid UTF-8 become U+FFFD,
//     so a value cannot break lines or reorder what is displayed;
//   - a cut value ends with "…" and never splits an entity or a rune.
func Escape(s string, max int) string {
	var b strings.Builder
	b.Grow(min(len(s)+16, max+8))
	limit := max
	if limit <= 0 {
		limit = int(^uint(0) >> 1)
	}
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		var piece string
		switch {
		case r == utf8.RuneError && size <= 1:
			piece = "\uFFFD"
		case r == '&':
			piece = "&amp;"
		case r == '<':
			piece = "&lt;"
		case r == '>':
			piece = "&gt;"
		case r == '*':
			piece = "＊"
		case r == '_':
			piece = "＿"
		case r == '~':
			piece = "～"
		case r == '`':
			piece = "｀"
		case r == '@' && mentionWord(s[i+1:]):
			piece = "@\u200d"
		case r < 0x20:
			piece = string(rune(0x2400 + r))
		case r == 0x7f:
			piece = "\u2421"
		case r >= 0x80 && r <= 0x9f, r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069,
			r == 0x200e, r == 0x200f, r == 0x061c:
			piece = "\uFFFD"
		default:
			piece = s[i : i+size]
		}
		if b.Len()+len(piece) > limit-len("…") {
			// Room only for the ellipsis, unless this is the last piece and fits.
			if i+size == len(s) && b.Len()+len(piece) <= limit {
				b.WriteString(piece)
				return b.String()
			}
			b.WriteString("…")
			return b.String()
		}
		b.WriteString(piece)
		i += size
	}
	return b.String()
}

func mentionWord(rest string) bool {
	for _, w := range []string{"channel", "here", "everyone"} {
		if len(rest) >= len(w) && strings.EqualFold(rest[:len(w)], w) {
			return true
		}
	}
	return false
}
