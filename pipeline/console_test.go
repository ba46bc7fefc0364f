package pipeline

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"auditwatch/schema"
)

func TestConsoleFormatsAndEscapes(t *testing.T) {
	at := time.Date(2026, 11, 28, 0, 30, 26, 0, time.UTC)
	fs := []schema.Finding{
		{Time: at, Severity: schema.SeverityMedium, Detector: schema.DetectorFirstTimeAccess,
			Principal: "eb8d", PrincipalName: "billing-worker", SourceIP: "10.20.2.21",
			Summary: "billing-worker accessed secret/payments/db for the first time"},
		{Time: at, Severity: schema.SeverityHigh, Detector: schema.DetectorAuthFailureSpike,
			SourceIP: "203.0.113.200", Summary: "49 failed authentications", Revision: 4, Count: 49, Late: true},
		{Time: at, Severity: schema.SeverityCritical, Detector: schema.DetectorPrivilegedUse,
			PrincipalName: "evil\x1b]0;owned\x07\nFORGED LINE", Summary: "root\rused"},
	}
	var buf bytes.Buffer
	if err := NewConsole(&buf).WriteFindings(context.Background(), fs); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	want := []string{
		"2026-11-28 00:30:26Z  MEDIUM   first_time_access    billing-worker from 10.20.2.21: billing-worker accessed secret/payments/db for the first time",
		"2026-11-28 00:30:26Z  HIGH     auth_failure_spike   (anonymous) from 203.0.113.200: 49 failed authentications [update 4, 49 events] [late]",
		`2026-11-28 00:30:26Z  CRITICAL privileged_use       evil\x1B]0;owned\x07\x0AFORGED LINE: root\x0Dused`,
	}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), buf.String())
	}
	for i := range want {
		if lines[i] != want[i] {
			t.Errorf("line %d:\n got %q\nwant %q", i, lines[i], want[i])
		}
	}
	if strings.ContainsAny(buf.String(), "\x1b\x07\r") {
		t.Fatal("control characters reached the terminal")
	}
}
