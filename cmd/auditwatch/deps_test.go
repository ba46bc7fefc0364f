package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestProductionDepsHaveNoTestPackages fails when the production binary
// links a test-only package: the in-process Kafka broker (kfake), the
// testing and httptest packages, or one of our test helpers. The bench
// harness that needs kfake lives in cmd/auditwatch-bench.
func TestProductionDepsHaveNoTestPackages(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 50 {
		t.Fatalf("go list -deps listed %d packages; expected the full dependency list", len(deps))
	}
	for _, p := range deps {
		if testOnly(p) {
			t.Errorf("the production binary links the test-only package %s", p)
		}
	}
}

// testOnly tells a package that belongs in tests or test harnesses only.
func testOnly(p string) bool {
	switch p {
	case "testing", "net/http/httptest", "testing/fstest", "testing/iotest", "testing/synctest":
		return true
	}
	for _, bad := range []string{"/kfake", "/kafkatest", "/testenv", "auditwatch/internal/bench", "go.uber.org/goleak", "/jsonxtest"} {
		if strings.HasSuffix(p, bad) || strings.Contains(p, bad+"/") || p == bad {
			return true
		}
	}
	return strings.HasPrefix(p, "auditwatch/") && (strings.HasSuffix(p, "test") || strings.Contains(p, "/fake"))
}

func TestTestOnly(t *testing.T) {
	for p, want := range map[string]bool{
		"github.com/twmb/franz-go/pkg/kfake": true,
		"github.com/twmb/franz-go/pkg/kgo":   false,
		"testing":                            true,
		"internal/testlog":                   false, // the standard library's own
		"auditwatch/internal/testenv":        true,
		"auditwatch/internal/kafkatest":      true,
		"auditwatch/internal/bench":          true,
		"auditwatch/ingest/jsonx/jsonxtest":  true,
		"auditwatch/ingest/jsonx":            false,
		"net/http":                           false,
	} {
		if got := testOnly(p); got != want {
			t.Errorf("testOnly(%q) = %v, want %v", p, got, want)
		}
	}
}
