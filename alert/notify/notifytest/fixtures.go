package notifytest

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"auditwatch/alert/notify"
	"auditwatch/schema"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden files")

// Golden compares got with testdata/<name>.golden, rewriting it under -update.
func Golden(t testing.TB, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (run go test -update after checking):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// Finding is an ordinary finding, fixed for golden files.
func Finding() schema.Finding {
	t0 := time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC)
	return schema.Finding{
		ID:            "4f1c2a9e8b7d6c5f4e3d2c1b0a998877",
		Detector:      schema.DetectorUnexpectedIP,
		Severity:      schema.SeverityHigh,
		Time:          t0,
		Principal:     "arn:aws:iam::123456789012:role/payments-api",
		PrincipalName: "payments-api",
		Resource:      "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/payments/db-AbCdEf",
		SourceIP:      "203.0.113.77",
		Source:        schema.SourceCloudTrail,
		Account:       "123456789012",
		Count:         3,
		EventIDs:      []string{"e7a1f0c2-0001", "e7a1f0c2-0002", "e7a1f0c2-0003"},
		Summary:       "payments-api read prod/payments/db from 203.0.113.77, an address it never used",
		Reason:        "203.0.113.77 is outside the principal's 30-day baseline (10.20.0.0/16) and not in the allow list",
		DedupeKey:     "unexpected_ip|arn:aws:iam::123456789012:role/payments-api|203.0.113.77",
		FirstTime:     t0.Add(-2 * time.Minute),
		LastTime:      t0,
		Attributes:    map[string]string{"baseline_cidrs": "10.20.0.0/16", "asn": "AS64500"},
	}
}

// Alert wraps Finding as a first alert.
func Alert() notify.Alert {
	f := Finding()
	return notify.Alert{Finding: f, Repeat: 1, GroupCount: f.Count, GroupStart: f.Time}
}

// Hostile strings every output must render inertly.
var Hostile = []string{"<!channel>", "<@U123>", "<https://evil|click>", "&", "|", "=", `\`, "\r\n", "\x00", "*bold* _it_ ~s~ `code`", "<!here> @channel"}

// HostileValue joins every hostile string with some text around them.
func HostileValue() string { return "x " + strings.Join(Hostile, " y ") + " z" }

// Big is a 10 KB field.
func Big() string { return strings.Repeat("A<&>|=\\", 10*1024/7+1)[:10*1024] }

// HostileFinding is a finding whose every attacker-influenced field
// carries the hostile strings, and one field 10 KB long.
func HostileFinding() schema.Finding {
	f := Finding()
	h := HostileValue()
	f.Principal = h
	f.PrincipalName = h
	f.Resource = Big()
	f.SourceIP = h
	f.Summary = h
	f.Reason = h
	f.DedupeKey = h
	f.EventIDs = []string{h, "<@U123>"}
	f.Attributes = map[string]string{"user_agent": h, "path": Big()}
	return f
}

// HostileEvent is an event built the same way.
func HostileEvent() schema.Event {
	h := HostileValue()
	return schema.Event{Time: time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC), Source: schema.SourceVault, ID: h,
		Principal: h, PrincipalName: h, Action: "vault:read", Resource: Big(), SourceIP: h, SourceIPRaw: h,
		UserAgent: h, Outcome: schema.OutcomeFailure, Error: h}
}
