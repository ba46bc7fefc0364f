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

// TestDeadletterListAndResend writes a dead-letter file as the alert
// stage does (a finding and an event batch that a webhook refused), lists
// it, resends it to the now-working webhook, and resends again: the second
// run sends nothing (idempotent). --output selects one output's records.
func TestDeadletterListAndResend(t *testing.T) {
	var mu sync.Mutex
	var bodies []string
	down := true
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if down {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		bodies = append(bodies, string(b))
	}))
	defer hook.Close()
	work := t.TempDir()
	state := filepath.Join(work, "state")
	cfgPath := filepath.Join(work, "cfg.yaml")
	cfg := fmt.Sprintf(`state: {dir: %q}
alerts:
  outputs:
    - {name: hook, type: webhook, webhook: {url: %q}}
    - {name: other, type: webhook, webhook: {url: %q}}
  default_outputs: [hook]
  event_outputs: [hook]
  retry: {initial: 1ms, max: 2ms, max_attempts: 2}
logging: {level: warn, format: text}
`, state, hook.URL, hook.URL)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(state, "alert"), 0o700); err != nil {
		t.Fatal(err)
	}
	dlPath := filepath.Join(state, "alert", "dead-letter.jsonl")
	dl, err := deadletter.Open(dlPath)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	f := schema.Finding{ID: "f-dead-1", Revision: 2, Detector: schema.DetectorUnexpectedIP, Severity: schema.SeverityHigh,
		Summary: "s", Time: now, DedupeKey: "k1"}
	for _, rec := range []deadletter.Record{
		{Time: now, Output: "hook", Reason: "rejected", Error: "HTTP 400", Attempts: 1, Finding: &f},
		{Time: now, Output: "hook", Reason: "rejected", Error: "HTTP 400", Attempts: 1,
			Events: []schema.Event{{ID: "e1", Time: now, Source: schema.SourceVault}, {ID: "e2", Time: now, Source: schema.SourceVault}}},
		{Time: now, Output: "other", Reason: "rejected", Error: "HTTP 400", Attempts: 1, Finding: &f},
	} {
		if err := dl.Write(rec); err != nil {
			t.Fatal(err)
		}
	}
	dl.Close()

	var out, errb bytes.Buffer
	if code := run([]string{"deadletter", "list", "--config", cfgPath, "--output", "hook"}, nil, &out, &errb); code != 0 {
		t.Fatalf("list: exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "finding f-dead-1 rev 2") || !strings.Contains(out.String(), "2 events") ||
		!strings.Contains(out.String(), "2 records") {
		t.Errorf("list output:\n%s", out.String())
	}

	// Still failing: the records are dead-lettered again, exit 3.
	out.Reset()
	if code := run([]string{"deadletter", "resend", "--config", cfgPath, "--output", "hook"}, nil, &out, &errb); code != 3 {
		t.Fatalf("resend against a failing output: exit %d, want 3: %s %s", code, out.String(), errb.String())
	}
	mu.Lock()
	down = false
	mu.Unlock()
	for i, want := range []int{2, 2} { // the second run must send nothing new
		out.Reset()
		errb.Reset()
		if code := run([]string{"deadletter", "resend", "--config", cfgPath, "--output", "hook"}, nil, &out, &errb); code != 0 {
			t.Fatalf("resend %d: exit %d: %s %s", i+1, code, out.String(), errb.String())
		}
		mu.Lock()
		n := len(bodies)
		mu.Unlock()
		if n != want {
			t.Errorf("after resend %d the webhook got %d requests, want %d (%s)", i+1, n, want, out.String())
		}
	}
	if !strings.Contains(out.String(), "resent 0 findings and 0 events") || !strings.Contains(out.String(), "already delivered") {
		t.Errorf("second resend said: %s", out.String())
	}
	mu.Lock()
	joined := strings.Join(bodies, "\n")
	mu.Unlock()
	if !strings.Contains(joined, "f-dead-1") || !strings.Contains(joined, "e2") {
		t.Errorf("resent bodies lack the finding or the events: %s", joined)
	}
	// The other output's record was not touched by --output hook.
	out.Reset()
	if code := run([]string{"deadletter", "resend", "--config", cfgPath, "--output", "other"}, nil, &out, &errb); code != 0 {
		t.Fatalf("resend other: exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "resent 1 findings") {
		t.Errorf("resend --output other: %s", out.String())
	}
	if code := run([]string{"deadletter", "resend", "--config", cfgPath, "--output", "nope"}, nil, &out, &errb); code != 2 {
		t.Errorf("unknown --output: exit %d, want 2", code)
	}
}
