package store

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestWriteCommands(t *testing.T) {
	now := time.Date(2026, 12, 6, 21, 0, 0, 0, time.UTC)
	cred := &Result{Columns: []string{"kind", "value", "events"}, Rows: [][]any{
		{"access_key", "AKIAEXAMPLE", uint64(2)},
		{"token_accessor", "hmac-sha256:abc", uint64(3)},
		{"token_accessor", "2bb7clear", uint64(1)},
		{"token_accessor", "evil'; rm -rf /\x1b[31m", uint64(1)},
	}}
	var b bytes.Buffer
	if err := WriteCommands(&b, "credentials", QueryArgs{Principal: "arn:aws:iam::1:user/bob"}, cred, now); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"aws iam update-access-key --user-name 'bob' --access-key-id 'AKIAEXAMPLE' --status Inactive\n",
		"auditwatch query token-accessor --hmac 'hmac-sha256:abc'",
		"vault token revoke -accessor '2bb7clear'\n",
		"# token_accessor evil'; rm -rf /\\x1B[31m: not printable as a shell word",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("missing %q in\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), "\x1b") {
		t.Errorf("raw escape in commands:\n%q", b.String())
	}
	b.Reset()
	role := &Result{Columns: []string{"kind", "value", "events"}, Rows: [][]any{{"access_key", "ASIAEXAMPLE", uint64(1)}}}
	WriteCommands(&b, "credentials", QueryArgs{Principal: "arn:aws:iam::1:role/app"}, role, now)
	if !strings.Contains(b.String(), "aws iam put-role-policy --role-name 'app' --policy-name AWSRevokeOlderSessions") || !strings.Contains(b.String(), `"aws:TokenIssueTime":"2026-12-06T21:00:00Z"`) {
		t.Errorf("role session revoke:\n%s", b.String())
	}
	b.Reset()
	blast := &Result{Columns: []string{"kind", "value", "events", "failures"}, Rows: [][]any{
		{"resource", "secret/data/payments/db", uint64(3), uint64(0)},
		{"resource", "secret/data/hr/payroll", uint64(1), uint64(1)},
		{"resource", "database/creds/app", uint64(1), uint64(0)},
		{"resource", "it's-a-secret", uint64(1), uint64(0)},
		{"principal", "arn:aws:iam::1:user/bob", uint64(3), uint64(0)},
	}}
	WriteCommands(&b, "blast-radius", QueryArgs{}, blast, now)
	want := "vault kv put 'secret/payments/db' @rotated.json   # write the new value (prepare rotated.json), then update its consumers\n" +
		"vault lease revoke -prefix 'database/creds/app'\n" +
		"aws secretsmanager rotate-secret --secret-id 'it'\\''s-a-secret'\n"
	if b.String() != want {
		t.Errorf("blast-radius commands:\n%s\nwant\n%s", b.String(), want)
	}
	if err := WriteCommands(&b, "failures", QueryArgs{}, blast, now); err == nil {
		t.Error("commands for failures accepted")
	}
}
