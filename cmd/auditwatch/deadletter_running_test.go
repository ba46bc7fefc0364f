package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"auditwatch/alert/deadletter"
	"auditwatch/schema"
)

// TestDeadletterResendWhileRunning: `deadletter resend` while `auditwatch
// run` holds the alert ledger. The command cannot open the ledger, hands
// the request to the running process through the resend spool and prints
// its answer; the running process delivers the finding and the event
// batch through its own outputs. A second resend sends nothing
// (idempotent), and the spool is left empty. The dead letters of the
// secret-bearing outputs (secretRun) are resent too and fail again
// against servers echoing the credentials: no secret appears in any log,
// answer, dead letter or metric.
func TestDeadletterResendWhileRunning(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; not run with -short")
	}
	t.Parallel()
	sec := newSecretRun(t)
	httpAddr := freeAddr(t)
	var mu sync.Mutex
	var bodies []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		bodies = append(bodies, string(b))
	}))
	defer hook.Close()
	work := t.TempDir()
	state := filepath.Join(work, "state")
	live := filepath.Join(work, "audit.log")
	if err := os.WriteFile(live, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(work, "cfg.yaml")
	cfg := fmt.Sprintf(`sources:
  - {name: live, type: filetail, format: vault, filetail: {path: %q}}
state: {dir: %q}
alerts:
  outputs:
    - {name: hook, type: webhook, webhook: {url: %q}}
%s  default_outputs: [hook]
  event_outputs: [hook]
http: {listen: %q}
logging: {level: info, format: text}
`, live, state, hook.URL, sec.OutputsYAML(), httpAddr)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(state, "alert"), 0o700); err != nil {
		t.Fatal(err)
	}
	dl, err := deadletter.Open(filepath.Join(state, "alert", "dead-letter.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	f := schema.Finding{ID: "f-dead-running", Revision: 1, Detector: schema.DetectorUnexpectedIP, Severity: schema.SeverityHigh,
		Summary: "s", Time: now, DedupeKey: "k1"}
	for _, rec := range []deadletter.Record{
		{Time: now, Output: "hook", Reason: "retries_exhausted", Error: "HTTP 503", Attempts: 8, Finding: &f},
		{Time: now, Output: "hook", Reason: "retries_exhausted", Error: "HTTP 503", Attempts: 8,
			Events: []schema.Event{{ID: "e1", Time: now, Source: schema.SourceVault}, {ID: "e2", Time: now, Source: schema.SourceVault}}},
	} {
		if err := dl.Write(rec); err != nil {
			t.Fatal(err)
		}
	}
	for i, o := range sec.OutputNames() {
		sf := f
		sf.ID = fmt.Sprintf("f-dead-secret-%d", i)
		if err := dl.Write(deadletter.Record{Time: now, Output: o, Reason: "retries_exhausted", Error: "HTTP 503", Attempts: 2, Finding: &sf}); err != nil {
			t.Fatal(err)
		}
	}
	dl.Close()

	p := sec.Start("run", "--config", cfgPath)
	// The running process holds the ledger once its router is open.
	ledger := filepath.Join(state, "alert", "ledger.db")
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, err := os.Stat(ledger); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("run opened no ledger:\n%s", p.log())
		}
	}
	for i, want := range []string{"resent 1 findings and 2 events", "resent 0 findings and 0 events; 0 failed again"} {
		var out, errb bytes.Buffer
		if code := run([]string{"deadletter", "resend", "--config", cfgPath, "--output", "hook", "--wait", "60s"}, nil, &out, &errb); code != 0 {
			t.Fatalf("resend %d while running: exit %d: %s %s", i+1, code, out.String(), errb.String())
		}
		if !strings.Contains(errb.String(), "held by a running stage") || !strings.Contains(out.String(), want) {
			t.Errorf("resend %d while running said %q / %q, want the running stage's answer %q", i+1, out.String(), errb.String(), want)
		}
	}
	// the secret-bearing outputs' letters fail again (the built binary:
	// their credentials are in its environment only)
	for _, o := range sec.OutputNames() {
		// exit 3: some failed again
		code, out, errb := sec.Run("deadletter", "resend", "--config", cfgPath, "--output", o, "--wait", "60s")
		if want := "resent 0 findings and 0 events; 1 failed again"; code != 3 || !strings.Contains(out, want) {
			t.Errorf("resend of %s while running: exit %d, said %q / %q, want %q", o, code, out, errb, want)
		}
	}
	sec.ScrapeMetrics(httpAddr)
	mu.Lock()
	got := append([]string(nil), bodies...)
	mu.Unlock()
	joined := strings.Join(got, "\n")
	if len(got) != 2 || !strings.Contains(joined, "f-dead-running") || !strings.Contains(joined, "e2") {
		t.Errorf("webhook got %d requests, want the finding and the event batch once each:\n%s", len(got), joined)
	}
	p.stop(t)
	left, _ := filepath.Glob(filepath.Join(state, "alert", "resend", "*"))
	if len(left) != 0 {
		t.Errorf("resend spool not empty after the answers: %v", left)
	}
	if !strings.Contains(p.log(), "resending dead letters on request") {
		t.Errorf("the running process did not log the resend:\n%s", p.log())
	}
	sec.Grep(map[string]string{}, work, cfgPath)
}
