package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// brokenIdentityState makes a state directory under dir whose identity
// link store cannot open (its directory is a file): the enrichment's
// set-up fails after the detector state's.
func brokenIdentityState(t *testing.T, dir string) string {
	t.Helper()
	state := filepath.Join(dir, "state")
	if err := os.MkdirAll(state, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(state, "identity"), []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	return state
}

// TestRunSetupFailureStopsWhatStarted: `run` opens its set-up (detector
// state, sinks, stream, enrichment, watch, trail) as lifecycle components
// in order; when one fails — here the enrichment, whose link store's
// directory is a file — the command fails naming it, and what had
// started is stopped: the detector state's database is closed (its file
// lock released) and the HTTP endpoint no longer listens.
func TestRunSetupFailureStopsWhatStarted(t *testing.T) {
	dir := t.TempDir()
	state := brokenIdentityState(t, dir)
	addr := freeAddr(t)
	cfg := filepath.Join(dir, "run.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`sources:
  - name: live
    type: filetail
    filetail: {path: %q}
state: {dir: %q}
files: {findings: %q}
http: {listen: %q}
logging: {level: info, format: text}
`, filepath.Join(dir, "audit.log"), state, filepath.Join(dir, "findings.jsonl"), addr)), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCmd(t, "run", "--config", cfg)
	if code != 1 || !strings.Contains(stderr, "enrichment: start:") {
		t.Fatalf("run with a broken set-up: exit %d\n%s", code, stderr)
	}
	db, err := bolt.Open(filepath.Join(state, "detect", "embedded", "0", "detect.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatalf("the detector state was left open after the failed set-up: %v\n%s", err, stderr)
	}
	db.Close()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("the HTTP endpoint still listens after the failed set-up: %v", err)
	}
	ln.Close()
}

// TestReplaySetupFailureStopsWhatStarted: replay opens its detector
// state, detectors and enrichment as job components in order; when the
// enrichment fails (its link store's directory is a file), the command
// fails naming it and the detector state opened before it is closed (its
// database file lock released).
func TestReplaySetupFailureStopsWhatStarted(t *testing.T) {
	dir := t.TempDir()
	state := brokenIdentityState(t, dir)
	in := filepath.Join(dir, "audit.log")
	if err := os.WriteFile(in, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := replay(t, t.Context(), "--state", state, in)
	if code != 2 || !strings.Contains(stderr, "identity") {
		t.Fatalf("replay with a broken set-up: exit %d\n%s", code, stderr)
	}
	db, err := bolt.Open(filepath.Join(state, "detect.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatalf("the detector state was left open after the failed set-up: %v\n%s", err, stderr)
	}
	db.Close()
}

// TestBacktestSetupFailureStopsWhatStarted: backtest from the store opens
// its export file, then the store; when the store does not open, the
// command fails and the export file it had created is removed.
func TestBacktestSetupFailureStopsWhatStarted(t *testing.T) {
	dir := t.TempDir()
	tmp := filepath.Join(dir, "tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TMPDIR", tmp)
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "new.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("storage: {backend: chdb, chdb: {path: %q}}\n", filepath.Join(notDir, "chdb"))), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCmd(t, "backtest", "--config", cfg)
	if code != 1 || !strings.Contains(stderr, "reading stored events") {
		t.Fatalf("backtest with a store that does not open: exit %d\n%s", code, stderr)
	}
	left, err := os.ReadDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range left {
		t.Errorf("left behind after the failed set-up: %s", e.Name())
	}
}
