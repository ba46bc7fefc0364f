package main

import (
	"auditwatch/internal/testenv"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"auditwatch/ingest"
)

// TestRunStoresEventsAndFindings runs the built binary on the OpenBao
// scenario with the embedded chDB storage and reads back through the
// runbook queries (while it runs, through its query endpoint on TCP with
// a token; after, from the store): every event of the password spray's
// address and one row per finding's dedupe key. The run carries known
// secrets (secretRun: the query token, failing alert outputs' tokens) and
// none appears in its logs, files, metrics or the queries' output.
func TestRunStoresEventsAndFindings(t *testing.T) {
	t.Parallel()
	lib := os.Getenv("CHDB_LIB_PATH")
	if lib == "" {
		testenv.Missing(t, "CHDB_LIB_PATH is not set (scripts/setup/20-clickhouse.sh exports it): libchdb.so (embedded storage) not available")
	}
	if _, err := os.Stat(lib); err != nil {
		t.Fatalf("CHDB_LIB_PATH: %v", err)
	}
	root := findRoot(t)
	scen := filepath.Join(root, "testdata", "openbao-scenario", "audit.log")
	work := t.TempDir()
	drop := filepath.Join(work, "drop")
	os.MkdirAll(drop, 0o755)
	raw, err := os.ReadFile(scen)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(drop, "audit.log"), raw, 0o644)
	findings := filepath.Join(work, "findings.jsonl")
	cfgPath := filepath.Join(work, "run.yaml")
	sec := newSecretRun(t)
	httpAddr := freeAddr(t)
	cfg := fmt.Sprintf(`sources:
  - {name: d, type: dir, format: vault, dir: {path: %q, poll_interval: 200ms, settle_time: 100ms}}
state: {dir: %q, checkpoint_interval: 200ms, idle_drain: 1s}
detectors:
  learn_until: %s
  unexpected_ip: {learning_period: 1m}
  first_time_access: {learning_period: 1m}
  access_volume_spike: {learning_period: 1m}
storage:
  backend: chdb
  database: runtest
  chdb: {path: %q}
  query: {listen: %q, token: {env: %s}}
files: {findings: %q}
logging: {level: info, format: text}
http: {listen: %q}
alerts:
  outputs:
%s  default_outputs: [%s]
`, drop, filepath.Join(work, "state"), scenarioLearnUntil, filepath.Join(work, "chdb"), freeAddr(t), faultQueryTokenEnv, findings,
		httpAddr, sec.OutputsYAML(), strings.Join(sec.OutputNames(), ", "))
	os.WriteFile(cfgPath, []byte(cfg), 0o644)

	places := map[string]string{}
	query := func(args ...string) []map[string]any {
		t.Helper()
		cmd := sec.Command(append([]string{"query"}, args...)...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		places[fmt.Sprintf("query %d output", len(places))] = out.String() + errb.String()
		if err != nil {
			t.Fatalf("query %v: %v\n%s", args, err, errb.String())
		}
		var rows []map[string]any
		if err := json.Unmarshal(out.Bytes(), &rows); err != nil {
			t.Fatalf("query %v: %v\n%s", args, err, out.String())
		}
		return rows
	}
	p := sec.Start("run", "--config", cfgPath)
	fs := waitFindings(t, p, findings, 35, 3*time.Second, 90*time.Second)
	since := "2026-11-27T00:00:00Z"
	// through the running process's query endpoint (TCP, with the token)
	live := query("findings", "--config", cfgPath, "--since", since, "--format", "json")
	places["metrics"] = httpGet(t, "http://"+httpAddr+"/metrics")
	p.stop(t)
	places["run's log"] = p.stderr.String()
	keys := map[string]bool{}
	for _, f := range fs {
		keys[f.DedupeKey] = true
	}
	if rows := query("findings", "--config", cfgPath, "--since", since, "--format", "json"); len(rows) != len(keys) || len(live) != len(keys) {
		t.Errorf("findings query: %d rows (while running: %d), want one per dedupe key (%d)", len(rows), len(live), len(keys))
	}
	want := 0
	r := ingest.NewReader(bytes.NewReader(raw), scen, ingest.DefaultOptions())
	for {
		ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err == nil && ev.SourceIP == "203.0.113.200" {
			want++
		}
	}
	got := 0
	for _, row := range query("ip", "--ip", "203.0.113.200", "--config", cfgPath, "--since", since, "--format", "json") {
		n, _ := row["events"].(float64)
		got += int(n)
	}
	if want == 0 || got != want {
		t.Errorf("ip query: %d stored events from 203.0.113.200, want %d", got, want)
	}
	sec.Grep(places, work, cfgPath)
}
