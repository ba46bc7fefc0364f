package store

import (
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"

	"auditwatch/internal/escape"
	"auditwatch/internal/resname"
)

// FormatCommands prints, for the credentials and blast-radius queries,
// the revoke and rotate commands of the answer, one per line, values
// single-quoted for a POSIX shell. A value that cannot be quoted safely
// (control or format characters) gets a comment instead of a command.
const FormatCommands = "commands"

// CommandsFor reports whether --format commands applies to a query.
func CommandsFor(name string) bool { return name == "credentials" || name == "blast-radius" }

// WriteCommands writes the revoke/rotate commands for r, the answer of
// query name for a (the principal is a.Principal). now dates the AWS
// session revocation.
func WriteCommands(w io.Writer, name string, a QueryArgs, r *Result, now time.Time) error {
	if !CommandsFor(name) {
		return fmt.Errorf("--format commands applies to credentials and blast-radius, not %s", name)
	}
	col := map[string]int{}
	for i, c := range r.Columns {
		col[c] = i
	}
	var b strings.Builder
	principal := a.Principal
	for _, row := range r.Rows {
		kind, _ := row[col["kind"]].(string)
		value, _ := row[col["value"]].(string)
		if kind == "principal" && principal == "" {
			principal = value
		}
	}
	for _, row := range r.Rows {
		kind, _ := row[col["kind"]].(string)
		value, _ := row[col["value"]].(string)
		q, ok := shellQuote(value)
		if !ok {
			fmt.Fprintf(&b, "# %s %s: not printable as a shell word; see --format json\n", kind, escape.String(escape.Terminal, value))
			continue
		}
		switch kind {
		case "access_key":
			b.WriteString(revokeKey(principal, value, q, now))
		case "token_accessor":
			if strings.HasPrefix(value, "hmac-sha256:") {
				fmt.Fprintf(&b, "auditwatch query token-accessor --hmac %s   # the audit device HMACs accessors: find it, then vault token revoke -accessor <it>\n", q)
			} else {
				fmt.Fprintf(&b, "vault token revoke -accessor %s\n", q)
			}
		case "resource":
			ev, _ := row[col["events"]].(uint64)
			fl, _ := row[col["failures"]].(uint64)
			if ev > fl { // read at least once: rotate it
				b.WriteString(rotate(value, q))
			}
		}
	}
	if b.Len() == 0 {
		b.WriteString("# nothing to revoke or rotate in this answer\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// revokeKey deactivates an IAM user's access key; a temporary (ASIA…)
// key of a role is revoked with the role's sessions (what the console's
// "Revoke active sessions" writes: deny tokens issued before now).
func revokeKey(principal, key, qkey string, now time.Time) string {
	_, res, _ := strings.Cut(principal, ":iam::")
	_, res, _ = strings.Cut(res, ":")
	switch {
	case strings.HasPrefix(res, "user/"):
		if qu, ok := shellQuote(res[strings.LastIndex(res, "/")+1:]); ok {
			return fmt.Sprintf("aws iam update-access-key --user-name %s --access-key-id %s --status Inactive\n", qu, qkey)
		}
	case strings.HasPrefix(res, "role/"):
		if qr, ok := shellQuote(res[strings.LastIndex(res, "/")+1:]); ok {
			doc := `{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":["*"],"Resource":["*"],"Condition":{"DateLessThan":{"aws:TokenIssueTime":"` +
				now.UTC().Format(time.RFC3339) + `"}}}]}`
			return fmt.Sprintf("aws iam put-role-policy --role-name %s --policy-name AWSRevokeOlderSessions --policy-document '%s'   # revokes %s and every other session of the role issued before now\n", qr, doc, key)
		}
	}
	return fmt.Sprintf("# access key %s of %s: deactivate it in IAM (aws iam update-access-key --access-key-id %s --status Inactive --user-name <user>)\n", key, escape.String(escape.Terminal, principal), qkey)
}

// rotate is the rotate command of a resource the blast radius names.
func rotate(res, q string) string {
	switch {
	case strings.HasPrefix(res, "arn:aws:secretsmanager:") || (!strings.Contains(res, "/") && !strings.HasPrefix(res, "arn:")):
		return fmt.Sprintf("aws secretsmanager rotate-secret --secret-id %s\n", q)
	case strings.HasPrefix(res, "auth/") || strings.HasPrefix(res, "sys/") || strings.HasPrefix(res, "arn:"):
		return ""
	case strings.Contains(res, "/creds/"):
		return fmt.Sprintf("vault lease revoke -prefix %s\n", q)
	case strings.HasSuffix(res, "/"):
		return "" // a listing
	}
	// vault kv takes the logical path, not the KV v2 API path.
	c := resname.Candidates(res)
	if lq, ok := shellQuote(c[len(c)-1]); ok {
		q = lq
	}
	return fmt.Sprintf("vault kv put %s @rotated.json   # write the new value (prepare rotated.json), then update its consumers\n", q)
}

// shellQuote single-quotes s for a POSIX shell; false when s holds a
// character a terminal or shell could misread.
func shellQuote(s string) (string, bool) {
	if s == "" || len(s) > 1024 {
		return "", false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029' || r == unicode.ReplacementChar {
			return "", false
		}
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'", true
}
