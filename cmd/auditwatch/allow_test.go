package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"auditwatch/internal/testenv"
	"auditwatch/schema"
)

// rootUse is a Vault audit request of the root token reading sys/mounts.
func rootUse(at time.Time, id, ip string) string {
	return fmt.Sprintf(`{"time":%q,"type":"request","auth":{"client_token":"hmac-sha256:5efe6e","accessor":"hmac-sha256:a5e7ee","display_name":"root","policies":["root"],"token_policies":["root"],"token_type":"service"},"request":{"id":%q,"operation":"read","mount_point":"sys/","mount_type":"system","client_token":"hmac-sha256:5efe6e","namespace":{"id":"root"},"path":"sys/mounts","remote_address":%q}}`+"\n",
		at.Format(time.RFC3339Nano), id, ip)
}

// TestAllowWhileRunHoldsTheStore: `auditwatch run` (the built binary,
// embedded chDB storage) raises a privileged_use finding for a root-token
// use; while run holds the store, `auditwatch allow --finding ID` looks it
// up through run's query endpoint and writes the entry; `query allows`
// lists it. The identical use an hour later (a new burst, which alerts
// without the entry) raises nothing, while a use from another network
// still alerts. With run stopped, allow reads the store directly. The
// runs carry known secrets (secretRun) that appear nowhere they write.
func TestAllowWhileRunHoldsTheStore(t *testing.T) {
	// Processes and files of its own, no environment changes: it waits
	// on the processes, so it runs beside other parallel tests.
	t.Parallel()
	lib := os.Getenv("CHDB_LIB_PATH")
	if lib == "" {
		testenv.Missing(t, "CHDB_LIB_PATH is not set (scripts/setup/20-clickhouse.sh exports it): libchdb.so (embedded storage) not available")
	}
	sec := newSecretRun(t)
	httpAddr := freeAddr(t)
	work := t.TempDir()
	live := filepath.Join(work, "vault-audit.log")
	must(t, os.WriteFile(live, nil, 0o644))
	findings := filepath.Join(work, "findings.jsonl")
	cfgPath := filepath.Join(work, "run.yaml")
	must(t, os.WriteFile(cfgPath, []byte(fmt.Sprintf(`sources:
  - {name: vault, type: filetail, format: vault, filetail: {path: %q, poll_interval: 50ms}}
state: {dir: %q, checkpoint_interval: 200ms, idle_drain: 1s}
storage: {backend: chdb, database: allowtest, chdb: {path: %q}}
files: {findings: %q}
http: {listen: %q}
logging: {level: warn, format: text}
shutdown_timeout: 10s
%s`, live, filepath.Join(work, "state"), filepath.Join(work, "chdb"), findings, httpAddr, sec.AlertsYAML(""))), 0o644))
	appendLine := func(s string) {
		f, err := os.OpenFile(live, os.O_APPEND|os.O_WRONLY, 0)
		must(t, err)
		_, err = f.WriteString(s)
		must(t, err)
		must(t, f.Close())
	}
	cli := sec.Run
	allowFinding := func(id string) {
		t.Helper()
		// The finding reaches the store at the next checkpoint.
		deadline := time.Now().Add(20 * time.Second)
		for {
			code, out, errs := cli("allow", "--config", cfgPath, "--finding", id, "--expires", "30d", "--comment", "break-glass host")
			if code == 0 {
				if !strings.Contains(out, "privileged_use") {
					t.Fatalf("allow output %q", out)
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("allow --finding %s: exit %d: %s", id, code, errs)
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
	t0 := time.Now().UTC().Add(-6 * time.Hour).Truncate(time.Second)

	p := sec.Start("run", "--config", cfgPath)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("run stderr:\n%s", p.stderr)
		}
	})
	appendLine(rootUse(t0, "use-1", "10.10.0.5"))
	fs := waitFindings(t, p, findings, 1, time.Second, 30*time.Second)
	if len(fs) != 1 || fs[0].Detector != schema.DetectorPrivilegedUse {
		t.Fatalf("first use: %+v", fs)
	}
	allowFinding(fs[0].ID)

	code, out, errs := cli("query", "allows", "--config", cfgPath, "--format", "json")
	if code != 0 {
		t.Fatalf("query allows: exit %d: %s", code, errs)
	}
	var rows []map[string]any
	must(t, json.Unmarshal([]byte(out), &rows))
	if len(rows) != 1 || rows[0]["finding"] != fs[0].ID || rows[0]["network"] != "10.10.0.0/24" ||
		rows[0]["resource"] != "sys/mounts" || rows[0]["comment"] != "break-glass host" || rows[0]["active"] != "true" {
		t.Fatalf("query allows: %s", out)
	}

	// An hour later (past the 30-minute cooldown: a new burst) the
	// identical use; another hour later a use from another network.
	appendLine(rootUse(t0.Add(time.Hour), "use-2", "10.10.0.5"))
	appendLine(rootUse(t0.Add(2*time.Hour), "use-3", "203.0.113.66"))
	fs = waitFindings(t, p, findings, 2, 2*time.Second, 30*time.Second)
	for _, f := range fs {
		for _, id := range f.EventIDs {
			if id == "use-2" {
				t.Errorf("the allowed use alerted: %+v", f)
			}
		}
	}
	if len(fs) != 2 || fs[1].SourceIP != "203.0.113.66" {
		t.Fatalf("after the allow entry: %d findings, want the first and the one from 203.0.113.66: %+v", len(fs), fs)
	}
	sec.WaitDeadLetters(work, 30*time.Second)
	sec.ScrapeMetrics(httpAddr)
	p.stop(t)

	// With run stopped, allow opens the store itself.
	allowFinding(fs[1].ID)
	code, out, errs = cli("query", "allows", "--config", cfgPath, "--format", "csv")
	if code != 0 || strings.Count(out, "privileged_use") != 2 || !strings.Contains(out, "203.0.113.0/24") {
		t.Fatalf("query allows after the second entry: exit %d: %s%s", code, out, errs)
	}
	sec.Grep(map[string]string{}, work, cfgPath)
}
