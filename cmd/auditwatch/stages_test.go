package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"auditwatch/internal/kafkatest"
	"auditwatch/schema"
)

// TestStageCommandsOnKafka runs `ingest`, `detect` and `alert` as separate
// stages against an in-process Kafka (kfake) on the OpenBao scenario:
// every labelled anomaly is found by its detector, every finding is
// explained by a label, and none is written twice.
func TestStageCommandsOnKafka(t *testing.T) {
	brokers := kafkatest.NewCluster(t, 3, "events", "events-by-ip", "findings")
	root := findRoot(t)
	scen := filepath.Join(root, "testdata", "openbao-scenario")
	work := t.TempDir()
	drop := filepath.Join(work, "drop")
	if err := os.MkdirAll(drop, 0o755); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(scen, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(drop, "audit.log"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	findings := filepath.Join(work, "findings.jsonl")
	cfgPath := filepath.Join(work, "stages.yaml")
	cfg := fmt.Sprintf(`sources:
  - name: scenario
    type: dir
    format: vault
    dir: {path: %q, poll_interval: 200ms, settle_time: 100ms}
%sstate: {dir: %q, checkpoint_interval: 200ms, idle_drain: 1s}
detectors:
  learn_until: %s
  unexpected_ip: {learning_period: 1m}
  first_time_access: {learning_period: 1m}
  access_volume_spike: {learning_period: 1m}
files: {findings: %q}
logging: {level: info, format: text}
shutdown_timeout: 15s
`, drop, kafkaStreamYAML(brokers[0], "200ms"), filepath.Join(work, "state"), scenarioLearnUntil, findings)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	run := startStages(ctx, cancel,
		stageSpec{"ingest", runIngest, cfgPath},
		stageSpec{"detect", runDetect, cfgPath},
		stageSpec{"alert", runAlert, cfgPath})
	defer run.Stop()

	labels := loadLabels(t, filepath.Join(scen, "labels.jsonl"))
	waitScenarioFindings(t, 90*time.Second, findings, labels, func() {
		for _, r := range run.Stop() {
			t.Logf("%s exit %d:\n%s", r.name, r.code, r.log)
		}
	})
	for _, r := range run.Stop() {
		if r.code != 0 {
			t.Errorf("%s exit %d:\n%s", r.name, r.code, r.log)
		}
		if !strings.Contains(r.log, "msg=stopped") {
			t.Errorf("%s did not stop cleanly:\n%s", r.name, r.log)
		}
	}
	fs := readFindings(t, findings)
	ids := map[string]int{}
	for _, f := range fs {
		ids[f.ID]++
		by := ""
		for _, l := range labels {
			if l.Anomaly && l.explains(f) {
				by = l.ID
			}
		}
		if by == "" {
			t.Errorf("finding no label explains: %s %s %q %s %s", f.Time.Format(time.RFC3339Nano), f.Detector, f.Principal, f.SourceIP, f.Summary)
		}
	}
	for id, n := range ids {
		if n != 1 {
			t.Errorf("finding %s written %d times", id, n)
		}
	}
	// The anonymous password spray (A3) has no principal: only the
	// IP-keyed instance on the events-by-ip topic can see it.
	spray := false
	for _, f := range fs {
		if f.Detector == schema.DetectorAuthFailureSpike && f.SourceIP == "203.0.113.200" && f.Principal == "" {
			spray = true
		}
	}
	if !spray {
		t.Error("no IP-keyed auth_failure_spike finding for 203.0.113.200")
	}
	t.Logf("%d findings", len(fs))
}

// waitScenarioFindings waits (up to limit, a guard) until the findings
// file explains every labelled anomaly of the OpenBao scenario and has not
// changed for 3 s, and returns its findings; on timeout it calls dump
// and fails the test.
func waitScenarioFindings(t *testing.T, limit time.Duration, findings string, labels []label, dump func()) []schema.Finding {
	t.Helper()
	explained := func(fs []schema.Finding) bool {
		for _, l := range labels {
			if !l.Anomaly {
				continue
			}
			ok := false
			for _, f := range fs {
				if f.Detector == labelDetector[l.Kind] && l.explains(f) {
					ok = true
				}
			}
			if !ok {
				return false
			}
		}
		return true
	}
	var fs []schema.Finding
	stableSince := time.Now()
	for deadline := time.Now().Add(limit); ; time.Sleep(200 * time.Millisecond) {
		cur := readFindings(t, findings)
		if len(cur) != len(fs) {
			fs, stableSince = cur, time.Now()
		}
		if explained(fs) && time.Since(stableSince) > 3*time.Second {
			return fs
		}
		if time.Now().After(deadline) {
			dump()
			t.Fatalf("after %v %d findings, not every labelled anomaly found", limit, len(fs))
		}
	}
}
