package main

import (
	"bytes"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"auditwatch/identity"
	it "auditwatch/identity/identitytest"
)

// TestRunCorrelatesLinkedFindings runs the built binary on the week of
// Vault-issued keys of TestReplayLinksVaultIssuedKeys: the
// credential_exfiltration finding the identity stage raises (the detect
// stage's Enrich hook, beside the detectors) passes the correlation stage
// like every detector's finding. Run gives every finding the incident id
// replay gives it, and the exfiltration finding has one. The run carries
// known secrets (secretRun, the audit-hash token among them) that appear
// nowhere it writes.
func TestRunCorrelatesLinkedFindings(t *testing.T) {
	t.Parallel()
	fv := &it.FakeVault{}
	srv := httptest.NewServer(fv)
	defer srv.Close()
	sec := newSecretRun(t)
	sec.SecretEnv("AW_TEST_AUDIT_HASH_TOKEN", it.VaultToken)
	work := t.TempDir()
	vault, ct := it.Week(func(d int) bool { return d%2 == 0 })
	// The keys' issue reaches run before their uses (the linker sees
	// events in arrival order, and the dir source reads files
	// concurrently): the CloudTrail file is dropped once the Vault file's
	// events have gone through.
	drop := filepath.Join(work, "drop")
	must(t, os.MkdirAll(drop, 0o755))
	vp, cp := filepath.Join(work, "1-vault-audit.log"), filepath.Join(work, "2-cloudtrail.json")
	must(t, os.WriteFile(vp, vault, 0o600))
	must(t, os.WriteFile(cp, ct, 0o600))
	events := filepath.Join(work, "events.jsonl")
	findings := filepath.Join(work, "findings.jsonl")
	cfgPath := filepath.Join(work, "run.yaml")
	httpAddr := freeAddr(t)
	must(t, os.WriteFile(cfgPath, []byte(fmt.Sprintf(`sources:
  - name: drop
    type: dir
    dir: {path: %q, poll_interval: 200ms, settle_time: 100ms}
state: {dir: %q, checkpoint_interval: 200ms, idle_drain: 1s}
identity:
  audit_hash:
    address: %s
    device: file
    token: {env: AW_TEST_AUDIT_HASH_TOKEN}
files: {findings: %q, events: %q}
http: {listen: %q}
logging: {level: warn, format: text}
shutdown_timeout: 10s
%s`, drop, filepath.Join(work, "state"), srv.URL, findings, events, httpAddr, sec.AlertsYAML(""))), 0o600))

	// the built binary: the audit-hash token is in its environment only
	code, stdout, stderr := sec.Run("replay", "--config", cfgPath, vp, cp)
	if code != 0 {
		t.Fatalf("replay exit %d: %s", code, stderr)
	}
	want := parseFindings(t, []byte(stdout))
	p := sec.Start("run", "--config", cfgPath)
	must(t, os.WriteFile(filepath.Join(drop, "1-vault-audit.log"), vault, 0o600))
	vaultLines := bytes.Count(vault, []byte("\n"))
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(events)
		// request and response entries are one event: at least half the lines
		if n := bytes.Count(b, []byte("\n")); n > 0 && n >= vaultLines/2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the Vault file's events did not go through within 30s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(time.Second)
	must(t, os.WriteFile(filepath.Join(drop, "2-cloudtrail.json"), ct, 0o600))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("run stderr:\n%s", p.stderr)
		}
	})
	got := waitFindings(t, p, findings, len(want), 3*time.Second, 30*time.Second)
	sec.WaitDeadLetters(work, 30*time.Second)
	sec.ScrapeMetrics(httpAddr)
	p.stop(t)
	sec.Grep(map[string]string{}, work, cfgPath)

	inc := map[string]string{}
	for _, f := range want {
		inc[f.ID] = f.IncidentID
	}
	exfil := 0
	for _, f := range got {
		if f.IncidentID == "" {
			t.Errorf("%s finding %s has no incident id", f.Detector, f.ID)
		}
		if w, ok := inc[f.ID]; !ok {
			t.Errorf("run finding %s (%s) not raised by replay", f.ID, f.Detector)
		} else if w != f.IncidentID {
			t.Errorf("%s finding %s: incident %q in run, %q in replay", f.Detector, f.ID, f.IncidentID, w)
		}
		if f.Detector == identity.DetectorExfiltration {
			exfil++
		}
	}
	if exfil != 1 || len(got) != len(want) {
		t.Fatalf("run: %d findings (%d credential_exfiltration), replay: %d", len(got), exfil, len(want))
	}
}
