package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"auditwatch/internal/testenv"
)

func TestRulesCheckSigmaHQ(t *testing.T) {
	dir := filepath.Join(testenv.SharedTestdata(t), "sigma", "cloudtrail")
	var out, errb bytes.Buffer
	if code := run([]string{"rules", "check", dir}, nil, &out, &errb); code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out.String(), errb.String())
	}
	if got := strings.TrimSpace(out.String()); got != "57 loaded, 0 unsupported, 0 invalid" {
		t.Errorf("output %q", got)
	}
}

func TestRulesCheckReportsFileAndLine(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"rules", "check", "testdata/rules-bad"}, nil, &out, &errb)
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s%s", code, out.String(), errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := []string{
		`testdata/rules-bad/bad.yml:7: invalid (rule "Broken rule"): unknown modifier "nosuchmodifier"`,
		`testdata/rules-bad/legacy.yml:8: unsupported (rule "Legacy count"): condition "selection | count() by userIdentity.arn > 10": the legacy aggregation syntax (| count() …) is not supported; use a correlation rule`,
		`1 loaded, 1 unsupported, 1 invalid`,
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", out.String(), strings.Join(want, "\n"))
	}
}
