package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"auditwatch/internal/kafkatest"
	"auditwatch/schema"
)

// TestCanaryOnKafka runs `ingest`, `detect` and `alert` on kfake with a
// Vault canary: the ingest stage makes the reads and counts arrivals at
// the parser; the detect stage labels the canary events (kept from the
// detectors), counts them as arrived after detect, and calls the
// heartbeat. When the audit device stops writing, both stages raise
// pipeline_blind (stage "parser" and "detect") to the outputs; both
// resolve when writing resumes.
func TestCanaryOnKafka(t *testing.T) {
	brokers := kafkatest.NewCluster(t, 2, "events", "events-by-ip", "findings")
	work := t.TempDir()
	logPath := filepath.Join(work, "vault-audit.log")
	fv := &runVault{path: logPath}
	vsrv := httptest.NewServer(fv)
	defer vsrv.Close()
	fv.write("app", "secret/data/app/db", "10.0.0.5")
	var beats atomic.Int64
	hb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { beats.Add(1) }))
	defer hb.Close()
	// the stages run in process: the secrets are the test's environment
	sec := newSecretRun(t)
	const hbSecret = "hbKafkaCanaryHeartbeatSecret6e6e6e6e"
	sec.SetEnv("AW_TEST_HEARTBEAT_URL", hb.URL+"/ping/"+hbSecret)
	sec.Secret(hbSecret)
	sec.SecretEnv("AW_TEST_CANARY_TOKEN", canaryToken)
	sec.SetenvInProcess()
	findings := filepath.Join(work, "findings.jsonl")
	detectAddr := freeAddr(t)
	config := func(name, httpAddr string) string {
		path := filepath.Join(work, name+".yaml")
		must(t, os.WriteFile(path, []byte(fmt.Sprintf(`sources:
  - name: vault-file
    type: filetail
    format: vault
    filetail: {path: %q, poll_interval: 50ms, start_at: beginning}
%ssilence: {enabled: false}
canary:
  interval: 300ms
  check_interval: 100ms
  heartbeat_url: {env: AW_TEST_HEARTBEAT_URL}
  vault:
    address: %q
    token: {env: AW_TEST_CANARY_TOKEN}
    deadline: 1500ms
state: {dir: %q, checkpoint_interval: 100ms, idle_drain: 300ms}
files: {findings: %q}
http: {listen: %q}
logging: {level: info, format: text}
shutdown_timeout: 15s
%s`, logPath, kafkaStreamYAML(brokers[0], "100ms"), vsrv.URL, filepath.Join(work, "state-"+name), findings, httpAddr, sec.AlertsYAML(""))), 0o644))
		return path
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	run := startStages(ctx, cancel,
		stageSpec{"ingest", runIngest, config("ingest", freeAddr(t))},
		stageSpec{"detect", runDetect, config("detect", detectAddr)},
		stageSpec{"alert", runAlert, config("alert", freeAddr(t))})
	defer run.Stop()
	waitFor := func(what string, limit time.Duration, cond func() bool) {
		t.Helper()
		end := time.Now().Add(limit)
		for !cond() {
			if time.Now().After(end) {
				for _, r := range run.Stop() {
					t.Logf("%s exit %d:\n%s", r.name, r.code, r.log)
				}
				t.Fatalf("timed out after %v waiting for %s; findings %+v", limit, what, readFindings(t, findings))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	blind := func(stage string, rev int) bool {
		for _, f := range readFindings(t, findings) {
			if f.Detector == schema.DetectorPipelineBlind && f.Attributes["stage"] == stage && f.Revision == rev {
				return true
			}
		}
		return false
	}
	waitFor("heartbeats from the detect stage", 60*time.Second, func() bool { return beats.Load() >= 3 })
	waitFor("canary events counted after detect", 30*time.Second, func() bool {
		v, err := scrapeMetricLabelled(detectAddr, "auditwatch_canary_events_total")
		return err == nil && v >= 3
	})
	if fs := readFindings(t, findings); len(fs) != 0 {
		t.Fatalf("findings while the device writes: %+v", fs)
	}

	fv.setStopped(true)
	waitFor("pipeline_blind from both stages", 60*time.Second, func() bool { return blind("parser", 0) && blind("detect", 0) })
	b0 := beats.Load()
	time.Sleep(time.Second)
	if b := beats.Load(); b != b0 {
		t.Errorf("heartbeat called %d times while blind", b-b0)
	}
	fv.setStopped(false)
	waitFor("both resolved", 60*time.Second, func() bool { return blind("parser", 1) && blind("detect", 1) })
	waitFor("heartbeat again", 30*time.Second, func() bool { return beats.Load() > b0 })
	sec.WaitDeadLetters(work, 30*time.Second)
	sec.ScrapeMetrics(detectAddr)
	places := map[string]string{}
	for _, r := range run.Stop() {
		if r.code != 0 {
			t.Errorf("%s exit %d:\n%s", r.name, r.code, r.log)
		}
		places["log of the "+r.name+" stage"] = r.log
	}
	sec.Grep(places, work, filepath.Join(work, "ingest.yaml"), filepath.Join(work, "detect.yaml"), filepath.Join(work, "alert.yaml"))
	for _, f := range readFindings(t, findings) {
		if f.Detector != schema.DetectorPipelineBlind {
			t.Errorf("finding of %s: %s", f.Detector, f.Summary)
		}
	}
}
