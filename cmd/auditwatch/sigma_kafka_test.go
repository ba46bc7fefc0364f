package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"auditwatch/internal/kafkatest"
	"auditwatch/schema"
	"auditwatch/sigma"
)

// TestSigmaRulesOnKafkaStages runs the project's rule pack in the Kafka
// deployment (`ingest` → events topics → two `detect` instances with the
// rules → findings topic → `alert`) over the CloudTrail examples of the
// pack, and in `replay --rules` over the same file: the stages raise the
// same Sigma findings (ids, rules, revisions), so the original record the
// rules read travels on Kafka intact, and each finding comes once although
// failures are also published to the by-IP topic.
func TestSigmaRulesOnKafkaStages(t *testing.T) {
	rulesDir, err := filepath.Abs(filepath.Join("..", "..", "rules"))
	must(t, err)
	// Every example record of the pack's CloudTrail rules (matching and
	// not), with ids made unique, in event-time order.
	type rec struct {
		t    string
		line []byte
	}
	var recs []rec
	files, _ := filepath.Glob(filepath.Join(rulesDir, "aws", "*.tests.jsonl"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		must(t, err)
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var tc sigma.TestCase
			if json.Unmarshal(sc.Bytes(), &tc) != nil || len(tc.Record) == 0 {
				continue
			}
			var m map[string]any
			must(t, json.Unmarshal(tc.Record, &m))
			m["eventID"] = fmt.Sprintf("kafka-sigma-%04d", len(recs))
			line, err := json.Marshal(m)
			must(t, err)
			ts, _ := m["eventTime"].(string)
			recs = append(recs, rec{ts, line})
		}
	}
	if len(recs) < 20 {
		t.Fatalf("only %d example records in %s", len(recs), rulesDir)
	}
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].t < recs[j].t })
	var trail bytes.Buffer
	for _, r := range recs {
		trail.Write(r.line)
		trail.WriteByte('\n')
	}

	brokers := kafkatest.NewCluster(t, 2, "events", "events-by-ip", "findings")
	work := t.TempDir()
	drop := filepath.Join(work, "cloudtrail")
	must(t, os.MkdirAll(drop, 0o755))
	findings := filepath.Join(work, "findings.jsonl")
	config := func(name, httpAddr string) string {
		path := filepath.Join(work, name+".yaml")
		must(t, os.WriteFile(path, []byte(fmt.Sprintf(`sources:
  - name: cloudtrail
    type: dir
    format: cloudtrail
    dir: {path: %q, poll_interval: 100ms, settle_time: 50ms}
%srules: {paths: [%q]}
state: {dir: %q, checkpoint_interval: 100ms}
files: {findings: %q}
http: {listen: %q}
logging: {level: info, format: text}
shutdown_timeout: 15s
`, drop, kafkaStreamYAML(brokers[0], "100ms"), rulesDir, filepath.Join(work, "state-"+name), findings, httpAddr)), 0o644))
		return path
	}

	// the reference: replay over the same file with the same config
	ref := filepath.Join(work, "trail.jsonl")
	must(t, os.WriteFile(ref, trail.Bytes(), 0o644))
	var out, errb bytes.Buffer
	if code := run([]string{"replay", "--config", config("replay", freeAddr(t)), "--state", filepath.Join(work, "replay-state"), ref}, nil, &out, &errb); code != 0 {
		t.Fatalf("replay exit %d: %s", code, errb.String())
	}
	key := func(f schema.Finding) string {
		return fmt.Sprintf("%s rev %d %s", f.ID, f.Revision, f.Attributes[sigma.AttrRuleTitle])
	}
	var want []string
	for _, line := range bytes.Split(bytes.TrimSpace(out.Bytes()), []byte("\n")) {
		var f schema.Finding
		if json.Unmarshal(line, &f) == nil && f.Detector == schema.DetectorSigma {
			want = append(want, key(f))
		}
	}
	slices.Sort(want)
	titles := map[string]bool{}
	for _, k := range want {
		titles[k[strings.Index(k, " rev ")+7:]] = true
	}
	if len(titles) < 5 {
		t.Fatalf("replay raised Sigma findings of only %d rules over the examples: %v", len(titles), want)
	}

	t.Logf("replay: %d Sigma findings of %d rules over %d example records", len(want), len(titles), len(recs))
	addrA, addrB := freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stages := startStages(ctx, cancel,
		stageSpec{"ingest", runIngest, config("ingest", freeAddr(t))},
		stageSpec{"detect-a", runDetect, config("detect-a", addrA)},
		stageSpec{"detect-b", runDetect, config("detect-b", addrB)},
		stageSpec{"alert", runAlert, config("alert", freeAddr(t))})
	defer stages.Stop()
	got := func() []string {
		var ks []string
		for _, f := range readFindings(t, findings) {
			if f.Detector == schema.DetectorSigma {
				ks = append(ks, key(f))
			}
		}
		slices.Sort(ks)
		return ks
	}
	partitions := func(addr string) float64 {
		v, err := scrapeMetricLabelled(addr, `auditwatch_detect_stage_partitions{instance="principal"}`)
		if err != nil {
			return -1
		}
		return v
	}
	end := time.Now().Add(60 * time.Second) // a guard only
	for partitions(addrA)+partitions(addrB) != 2 && time.Now().Before(end) {
		time.Sleep(50 * time.Millisecond)
	}
	must(t, os.WriteFile(filepath.Join(drop, "trail.json"), trail.Bytes(), 0o644))
	end = time.Now().Add(90 * time.Second) // a guard only
	for len(got()) < len(want) && time.Now().Before(end) {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // nothing more comes
	for _, r := range stages.Stop() {
		if r.code != 0 {
			t.Errorf("%s exit %d:\n%s", r.name, r.code, r.log)
		}
	}
	if g := got(); !slices.Equal(g, want) {
		t.Errorf("Kafka stages raised %d Sigma findings, replay %d:\nstages:\n%s\nreplay:\n%s", len(g), len(want), strings.Join(g, "\n"), strings.Join(want, "\n"))
	}
}
