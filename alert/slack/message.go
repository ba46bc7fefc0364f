package slack

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"auditwatch/alert/notify"
	"auditwatch/internal/runbook"
	"auditwatch/schema"
)

var severityEmoji = map[schema.Severity]string{
	schema.SeverityCritical: ":red_circle:",
	schema.SeverityHigh:     ":large_orange_circle:",
	schema.SeverityMedium:   ":large_yellow_circle:",
	schema.SeverityLow:      ":large_blue_circle:",
	schema.SeverityInfo:     ":white_circle:",
}

// message is what one alert renders to: Block Kit blocks and the plain
// text fallback (notifications, screen readers, clients without blocks).
type message struct {
	Blocks []slack.Block
	Text   string
}

// render builds the message for a (every attacker-controlled value goes
// through Escape). The layout answers, in order: what happened and how bad,
// who, what resource, from where, why it is unusual, the evidence, and the
// command to paste to investigate.
func render(a notify.Alert, maxField int) message {
	f := a.Finding
	e := func(s string) string { return Escape(s, maxField) }
	sev := strings.ToUpper(e(string(f.Severity)))
	title := fmt.Sprintf("%s %s: %s", severityEmoji[f.Severity], sev, e(detectorTitle(f.Detector)))
	if a.Update {
		title = fmt.Sprintf("%s (repeat %d, %d events so far)", title, a.Repeat, a.GroupCount)
	}
	who := e(f.Principal)
	if f.PrincipalName != "" && f.PrincipalName != f.Principal {
		who = e(f.PrincipalName) + "\n" + code(e(f.Principal))
	}
	where := dash(e(f.SourceIP))
	what := dash(e(f.Resource))
	when := f.Time.UTC().Format(time.RFC3339)
	if !f.FirstTime.IsZero() && !f.LastTime.IsZero() && !f.FirstTime.Equal(f.LastTime) {
		when = f.FirstTime.UTC().Format(time.RFC3339) + " → " + f.LastTime.UTC().Format(time.RFC3339)
	}
	origin := e(f.Source)
	if f.Account != "" {
		origin += " / " + e(f.Account)
	}
	fields := []*slack.TextBlockObject{
		mrkdwn("*Who*\n" + dash(who)),
		mrkdwn("*What*\n" + what),
		mrkdwn("*Where from*\n" + where),
		mrkdwn("*When*\n" + when),
		mrkdwn(fmt.Sprintf("*Events*\n%d", max(f.Count, 1))),
		mrkdwn("*Source*\n" + dash(origin)),
	}
	blocks := []slack.Block{
		slack.NewSectionBlock(mrkdwn("*"+title+"*\n"+dash(e(f.Summary))), nil, nil),
		slack.NewSectionBlock(nil, fields, nil),
		slack.NewSectionBlock(mrkdwn("*Why this is unusual*\n"+dash(e(f.Reason))), nil, nil),
	}
	if attrs := attributes(f, maxField); attrs != "" {
		blocks = append(blocks, slack.NewSectionBlock(mrkdwn("*Details*\n"+attrs), nil, nil))
	}
	blocks = append(blocks,
		slack.NewSectionBlock(mrkdwn("*Investigate*\n```"+Runbook(f)+"```"), nil, nil),
		slack.NewContextBlock("", mrkdwn(evidence(f, maxField))),
	)
	text := fmt.Sprintf("%s %s: %s — who: %s, from: %s, resource: %s", sev, e(detectorTitle(f.Detector)),
		dash(e(f.Summary)), dash(e(f.Principal)), where, what)
	if a.Update {
		text = fmt.Sprintf("Repeat %d (%d events so far): %s", a.Repeat, a.GroupCount, text)
	}
	return message{Blocks: blocks, Text: text}
}

// renderBatch builds one thread reply for several queued updates of one
// incident (bot mode, when Slack's rate limit is behind the findings):
// the latest rendered in full, preceded by one line per update it
// carries, each naming its finding id and revision.
func renderBatch(as []notify.Alert, maxField int) message {
	last := as[len(as)-1]
	m := render(last, maxField)
	var b strings.Builder
	fmt.Fprintf(&b, "%d updates in one message (Slack's rate limit):", len(as))
	var text strings.Builder
	fmt.Fprintf(&text, "%d updates: ", len(as))
	for i, a := range as {
		f := a.Finding
		fmt.Fprintf(&b, "\n• repeat %d: %s · finding %s rev %d", a.Repeat, notify.Truncate(dash(Escape(f.Summary, maxField)), 200),
			code(Escape(f.ID, 80)), f.Revision)
		if i > 0 {
			text.WriteString("; ")
		}
		fmt.Fprintf(&text, "finding %s rev %d", Escape(f.ID, 80), f.Revision)
	}
	m.Blocks = append([]slack.Block{slack.NewContextBlock("", mrkdwn(b.String()))}, m.Blocks...)
	m.Text = text.String() + " — latest: " + m.Text
	return m
}

// renderParentUpdate is the first message of a thread once repeats came
// in: the original alert with the running count in its title.
func renderParentUpdate(a notify.Alert, maxField int) message {
	first := a
	first.Update = false
	m := render(first, maxField)
	note := fmt.Sprintf("%d alerts, %d events since %s — see thread", a.Repeat, a.GroupCount, a.GroupStart.UTC().Format(time.RFC3339))
	m.Blocks = append(m.Blocks, slack.NewContextBlock("", mrkdwn(note)))
	m.Text = m.Text + " (" + note + ")"
	return m
}

func attributes(f schema.Finding, maxField int) string {
	keys := notify.SortedAttributeKeys(f.Attributes)
	if len(keys) == 0 {
		return ""
	}
	// a Sigma rule's title, author (its licence requires it shown) and
	// ATT&CK techniques first, then who is behind a Vault-issued key and
	// where the address is
	first := []string{"rule_title", "author", "techniques", "license", "key_issue", "aws_principal", "country", "as_org"}
	slices.SortStableFunc(keys, func(a, b string) int {
		ia, ib := slices.Index(first, a), slices.Index(first, b)
		if ia < 0 {
			ia = len(first)
		}
		if ib < 0 {
			ib = len(first)
		}
		return ia - ib
	})
	var b strings.Builder
	for i, k := range keys {
		if i == 8 {
			fmt.Fprintf(&b, "…and %d more", len(keys)-i)
			break
		}
		fmt.Fprintf(&b, "%s: %s\n", Escape(k, 64), code(Escape(f.Attributes[k], maxField)))
	}
	return strings.TrimRight(b.String(), "\n")
}

func evidence(f schema.Finding, maxField int) string {
	var b strings.Builder
	b.WriteString("Evidence: ")
	if len(f.EventIDs) == 0 {
		b.WriteString("none listed")
	}
	for i, id := range f.EventIDs {
		if i == 10 {
			fmt.Fprintf(&b, " …and %d more", len(f.EventIDs)-i)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(code(Escape(id, 80)))
	}
	fmt.Fprintf(&b, " · finding %s rev %d", code(Escape(f.ID, 80)), f.Revision)
	return notify.Truncate(b.String(), 2900)
}

// Runbook returns the commands an on-call engineer pastes to investigate
// f (internal/runbook: the runbook's query catalog), already escaped for a
// Slack code block. Values are single-quoted for the shell; a command with
// a value that cannot be quoted safely for both the shell and Slack
// (control characters, backticks, very long) is left out.
func Runbook(f schema.Finding) string {
	var lines []string
cmds:
	for _, c := range runbook.Investigate(f) {
		line := "auditwatch query " + c.Query
		for _, fl := range c.Flags {
			qv, ok := shellQuote(fl.Value)
			if !ok {
				continue cmds
			}
			line += " --" + fl.Name + " " + qv
		}
		lines = append(lines, line)
	}
	return strings.Join(lines, "\n")
}

// shellQuote single-quotes v for a POSIX shell and escapes it for Slack,
// refusing values a code block cannot show faithfully.
func shellQuote(v string) (string, bool) {
	if len(v) > 512 || strings.ContainsAny(v, "`\r\n") {
		return "", false
	}
	for _, r := range v {
		if r < 0x20 || r == 0x7f || r == 0xfffd || (r >= 0x80 && r <= 0x9f) || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) {
			return "", false
		}
	}
	q := "'" + strings.ReplaceAll(v, "'", `'\''`) + "'"
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")
	return r.Replace(q), true
}

func detectorTitle(d string) string {
	switch d {
	case schema.DetectorUnexpectedIP:
		return "secret access from an unexpected IP"
	case schema.DetectorFirstTimeAccess:
		return "first-time access to a secret"
	case schema.DetectorAuthFailureSpike:
		return "authentication failure spike"
	case schema.DetectorPrivilegedUse:
		return "privileged operation"
	case schema.DetectorAccessVolumeSpike:
		return "secret access volume spike"
	case schema.DetectorCredentialExfiltration:
		return "Vault-issued AWS key used from a new network"
	case schema.DetectorCredentialAfterLease:
		return "AWS key used after its Vault lease ended"
	case schema.DetectorCredentialMisuse:
		return "Vault role's AWS key used by another principal"
	case schema.DetectorNewLocation:
		return "first use of a country or network"
	}
	return d
}

func mrkdwn(s string) *slack.TextBlockObject {
	// verbatim: Slack must not auto-link URLs or names in our text.
	return slack.NewTextBlockObject(slack.MarkdownType, notify.Truncate(s, 2900), false, true)
}

func code(s string) string {
	if s == "" {
		return s
	}
	return "`" + s + "`"
}

func dash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}
