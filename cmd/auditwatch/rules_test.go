package main

import (
	"bytes"
	"os"
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

// rules test runs each rule file's examples; a rule unsupported here (an
// expand placeholder without a value) has its examples skipped with the
// reason, and --config supplies the placeholders so they run; a wrong
// example fails with its file and line.
func TestRulesTestExamples(t *testing.T) {
	testdata := filepath.Join("..", "..", "rules", "testdata")
	expandTests := filepath.Join(testdata, "test_only_minute_expand.tests.jsonl")
	var out, errb bytes.Buffer
	if code := run([]string{"rules", "test", testdata}, nil, &out, &errb); code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out.String(), errb.String())
	}
	for _, want := range []string{
		"skip " + expandTests + ": ", "placeholder %breakglass_users% has no value",
		"\n1 passed (8 examples), 0 failed, 0 without examples, 1 skipped (unsupported)\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "auditwatch.yaml")
	os.WriteFile(cfg, []byte("rules:\n  placeholders:\n    breakglass_users: [breakglass-1, breakglass-2]\n"), 0o600)
	out.Reset()
	if code := run([]string{"rules", "test", "--config", cfg, testdata}, nil, &out, &errb); code != 0 {
		t.Fatalf("with --config: exit %d\n%s%s", code, out.String(), errb.String())
	}
	for _, want := range []string{"ok   " + expandTests + " (3 examples)", "\n2 passed (11 examples), 0 failed, 0 without examples\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("with --config: output lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if code := run([]string{"rules", "check", "--config", cfg, testdata}, nil, &out, &errb); code != 0 || strings.TrimSpace(out.String()) != "2 loaded, 0 unsupported, 0 invalid" {
		t.Errorf("check --config: exit %d, output %q", code, out.String())
	}

	// a wrong example fails, naming its file and line
	rule, err := os.ReadFile(filepath.Join(testdata, "test_only_minute_expand.yml"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "r.yml"), rule, 0o600)
	os.WriteFile(filepath.Join(dir, "r.tests.jsonl"), []byte(`{"match": false, "note": "wrongly expected quiet", "record": {"time": "2026-11-28T10:17:00Z", "type": "response", "auth": {"client_token": "hmac-sha256:x", "display_name": "breakglass-2"}, "request": {"id": "m1", "operation": "read", "path": "secret/data/x"}, "response": {}}}`+"\n"), 0o600)
	out.Reset()
	if code := run([]string{"rules", "test", "--config", cfg, filepath.Join(dir, "r.yml")}, nil, &out, &errb); code != 1 {
		t.Fatalf("wrong example: exit %d, want 1\n%s%s", code, out.String(), errb.String())
	}
	if want := "FAIL " + filepath.Join(dir, "r.tests.jsonl") + ":1: want no finding"; !strings.Contains(out.String(), want) {
		t.Errorf("wrong example: output lacks %q:\n%s", want, out.String())
	}
}
