package slack

import "auditwatch/internal/escape"

// Escape (internal/escape, Slack context) makes an attacker-controlled value inert in Slack mrkdwn and in a
// message's text fallback, and bounds it to max bytes (0: no bound):
//
//   - & < > become &amp; &lt; &gt;, so no <!channel>, <@U…>, <#C…> or
//     <url|text> link can be formed;
//   - the formatting characters * _ ~ ` become their full-width forms
//     (＊ ＿ ～ ｀), so a value can neither open bold/italic/strike/code
//     spans nor close the code spans we put it in;
//   - "@channel", "@here" and "@everyone" get a full-width ＠, so clients
//     that link bare names don't ping anyone;
//   - control characters become their Unicode control pictures (␀ ␍ ␊),
//     C1 controls, zero-width and bidirectional controls and invalid UTF-8
//     become U+FFFD, so a value cannot break lines, hide text or reorder
//     what is displayed;
//   - a cut value ends with "…" and never splits an entity or a rune.
func Escape(s string, max int) string { return escape.Bounded(escape.Slack, s, max) }
