package main

import (
	"strings"
	"testing"
)

// TestStderrIsRedacted: what a command prints on stderr without the
// logger (here the error naming a config "file" that is a URL with a
// token) passes the one redaction layer too.
func TestStderrIsRedacted(t *testing.T) {
	code, _, stderr := runCmd(t, "check-config", "https://h.example/x?token=stderr-query-secret-5")
	if code != 2 || !strings.Contains(stderr, "(from --config)") {
		t.Fatalf("check-config of a URL: exit %d\n%s", code, stderr)
	}
	if strings.Contains(stderr, "stderr-query-secret-5") || !strings.Contains(stderr, "REDACTED") {
		t.Errorf("stderr keeps the token:\n%s", stderr)
	}
}

// The layer on stderr masks secrets, not prose: help text that talks
// about tokens is printed as written.
func TestStderrKeepsProse(t *testing.T) {
	code, _, stderr := runCmd(t, "query", "-h")
	if code != 0 || !strings.Contains(stderr, "Vault token accessors") || strings.Contains(stderr, "REDACTED") {
		t.Errorf("query -h: exit %d\n%s", code, stderr)
	}
}
