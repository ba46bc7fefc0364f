package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"auditwatch/ingest"
	"auditwatch/internal/kafkatest"
	"auditwatch/store"
	"auditwatch/store/chtest"
)

// TestKafkaStagesStalledStore runs `ingest`, `detect` and `alert` on an
// in-process Kafka with a ClickHouse 18.16 server as the store, and stops
// the server (SIGSTOP: connections open, nothing answered) before the
// OpenBao scenario arrives. Every labelled anomaly still reaches the
// findings file through the findings topic while the store is stalled,
// and /readyz shows what waits for the store (events in the detect
// stage's writer, findings in the alert stage's store consumer). The stages are then stopped with the store still
// stalled, the server resumed and the stages started again: every input
// event and every finding revision ends up stored, the restarted detect
// stage stores the events the store had not acknowledged without
// detecting them again (no finding is written twice), and the runbook
// tables hold each event once after collapsing repeats.
func TestKafkaStagesStalledStore(t *testing.T) {
	brokers := kafkatest.NewCluster(t, 3, "events", "events-by-ip", "findings")
	srv := chtest.StartServer(t)
	root := findRoot(t)
	scen := filepath.Join(root, "testdata", "openbao-scenario")
	work := t.TempDir()
	drop := filepath.Join(work, "drop")
	must(t, os.MkdirAll(drop, 0o755))
	raw, err := os.ReadFile(filepath.Join(scen, "audit.log"))
	must(t, err)
	findings := filepath.Join(work, "findings.jsonl")
	base := fmt.Sprintf(`sources:
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
storage: {backend: clickhouse, database: kstore, clickhouse: {addr: [%q]}}
logging: {level: info, format: text}
shutdown_timeout: 15s
`, drop, kafkaStreamYAML(brokers[0], "200ms"), filepath.Join(work, "state"), scenarioLearnUntil, findings, srv.Addr)
	addrs := map[string]string{}
	cfgs := map[string]string{}
	for _, st := range []string{"ingest", "detect", "alert"} {
		addrs[st] = freeAddr(t)
		cfgs[st] = filepath.Join(work, st+".yaml")
		must(t, os.WriteFile(cfgs[st], fmt.Appendf(nil, "%shttp: {listen: %q}\n", base, addrs[st]), 0o644))
	}
	// The schema first, as the compose deployment's migrate service does
	// (stages starting together would migrate concurrently).
	var mlog bytes.Buffer
	if code := runMigrate(t.Context(), []string{"--config", cfgs["alert"]}, nil, io.Discard, &mlog); code != 0 {
		t.Fatalf("migrate exit %d:\n%s", code, mlog.String())
	}
	start := func() *stageRun {
		ctx, cancel := context.WithCancel(t.Context())
		run := startStages(ctx, cancel,
			stageSpec{"ingest", runIngest, cfgs["ingest"]},
			stageSpec{"detect", runDetect, cfgs["detect"]},
			stageSpec{"alert", runAlert, cfgs["alert"]})
		// Ready: each stage has opened its store (migrations applied).
		for _, st := range []string{"ingest", "detect", "alert"} {
			httpGet(t, "http://"+addrs[st]+"/readyz")
		}
		return run
	}
	stalled := false
	stall := func(on bool) {
		sig := syscall.SIGCONT
		if on {
			sig = syscall.SIGSTOP
		}
		must(t, syscall.Kill(srv.PID, sig))
		stalled = on
	}
	t.Cleanup(func() {
		if stalled {
			syscall.Kill(srv.PID, syscall.SIGCONT)
		}
	})

	// Phase 1: the store stalls before any event arrives.
	run := start()
	stall(true)
	must(t, os.WriteFile(filepath.Join(drop, "audit.log"), raw, 0o644))
	labels := loadLabels(t, filepath.Join(scen, "labels.jsonl"))
	dump := func(run *stageRun) {
		for _, r := range run.Stop() {
			t.Logf("%s exit %d:\n%s", r.name, r.code, r.log)
		}
	}
	// Every labelled anomaly reaches the findings file although nothing
	// can be stored.
	waitScenarioFindings(t, findings, labels, func() { dump(run) })
	// The findings are held for the store by the store consumer only.
	ready := httpGet(t, "http://"+addrs["alert"]+"/readyz")
	m := regexp.MustCompile(`store findings: partitions \d+, records waiting for the store (\d+)`).FindStringSubmatch(ready)
	if m == nil {
		t.Errorf("alert /readyz has no store line:\n%s", ready)
	} else if n, _ := strconv.Atoi(m[1]); n == 0 {
		t.Errorf("alert /readyz shows nothing waiting for a stalled store:\n%s", ready)
	}
	// The detect stage's events wait in its store writer.
	ready = httpGet(t, "http://"+addrs["detect"]+"/readyz")
	if m := regexp.MustCompile(`store writer: events waiting (\d+), findings waiting 0`).FindStringSubmatch(ready); m == nil {
		t.Errorf("detect /readyz has no store writer line:\n%s", ready)
	} else if n, _ := strconv.Atoi(m[1]); n == 0 {
		t.Errorf("detect /readyz shows no event waiting for a stalled store:\n%s", ready)
	}
	metrics := httpGet(t, "http://"+addrs["alert"]+"/metrics")
	if !regexp.MustCompile(`auditwatch_stream_lag_records\{group="auditwatch-alert-store",partition="\d+",topic="findings"\}`).MatchString(metrics) {
		t.Errorf("no lag gauge of the findings store group in the alert stage's metrics")
	}
	// Stopped with the store still stalled: what it had not
	// acknowledged is read again at the next start.
	for _, r := range run.Stop() {
		if r.code != 0 {
			t.Errorf("%s stopped (store stalled) with exit %d:\n%s", r.name, r.code, r.log)
		}
	}
	firstRun := readFindings(t, findings)

	// Phase 2: the store answers again; the stages restart.
	stall(false)
	run = start()
	defer run.Stop()
	input := map[string]bool{}
	rd := ingest.NewReader(bytes.NewReader(raw), "audit.log", ingest.DefaultOptions())
	for {
		ev, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err == nil {
			input[string(ev.Source)+"/"+ev.ID] = true
		}
	}
	if len(input) < 700 {
		t.Fatalf("only %d input events", len(input))
	}
	ctx := t.Context()
	cfg := store.Config{Backend: store.BackendClickHouse, Database: "kstore"}
	cfg.ClickHouse.Addr = []string{srv.Addr}
	cfg.SetDefaults()
	st, err := store.OpenReadOnly(ctx, cfg, nil)
	must(t, err)
	defer st.Close()
	db := st.(*store.DB)
	rows := func(sql string) [][]any {
		t.Helper()
		res, err := db.Raw(ctx, sql, nil)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return res.Rows
	}
	wantRevs := map[string]bool{}
	for _, f := range readFindings(t, findings) {
		wantRevs[fmt.Sprintf("%s#%d", f.ID, f.Revision)] = true
	}
	var missingEv, missingF int
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		stored := map[string]bool{}
		for _, r := range rows("SELECT source, id FROM kstore.events GROUP BY source, id") {
			stored[fmt.Sprint(r[0])+"/"+fmt.Sprint(r[1])] = true
		}
		revs := map[string]bool{}
		for _, r := range rows("SELECT id, toString(revision) FROM kstore.findings GROUP BY id, revision") {
			revs[fmt.Sprint(r[0])+"#"+fmt.Sprint(r[1])] = true
		}
		missingEv, missingF = 0, 0
		for k := range input {
			if !stored[k] {
				missingEv++
			}
		}
		for k := range wantRevs {
			if !revs[k] {
				missingF++
			}
		}
		if missingEv == 0 && missingF == 0 {
			break
		}
		if time.Now().After(deadline) {
			dump(run)
			t.Fatalf("after the store recovered: %d of %d events and %d of %d finding revisions not stored", missingEv, len(input), missingF, len(wantRevs))
		}
	}
	// The restarted detect stage read again what the store had not
	// acknowledged and stored it without detecting it again.
	dm := httpGet(t, "http://"+addrs["detect"]+"/metrics")
	if v := scrapedValue(t, dm, `auditwatch_detect_stage_store_replayed_total{instance="principal"}`); v == 0 {
		t.Error("the restarted detect stage stored no event read again: the stalled store's events were committed before it acknowledged them")
	}
	results := run.Stop()
	for _, r := range results {
		if r.code != 0 {
			t.Errorf("%s exit %d:\n%s", r.name, r.code, r.log)
		}
	}
	after := readFindings(t, findings)
	ids := map[string]int{}
	for _, f := range after {
		ids[fmt.Sprintf("%s#%d", f.ID, f.Revision)]++
	}
	for id, n := range ids {
		if n != 1 {
			t.Errorf("finding %s written %d times", id, n)
		}
	}
	if len(after) != len(firstRun) {
		t.Errorf("the restart raised %d findings again (before %d, after %d)", len(after)-len(firstRun), len(firstRun), len(after))
	}
	// Repeats collapse: one row per event once merged (a block stored
	// again after a restart is the only source of repeats), and the
	// runbook queries count distinct ids in any case.
	var distinct, total string
	for _, r := range rows("SELECT toString(uniqExact(source, id)), toString(count()) FROM kstore.events FINAL") {
		distinct, total = fmt.Sprint(r[0]), fmt.Sprint(r[1])
	}
	if distinct != strconv.Itoa(len(input)) || total != distinct {
		t.Errorf("events FINAL: %s rows for %s distinct events, want %d each", total, distinct, len(input))
	}
	if !strings.Contains(dm, "auditwatch_detect_stage_events_total") {
		t.Error("detect metrics missing")
	}
	t.Logf("%d events, %d finding revisions stored; %d findings", len(input), len(wantRevs), len(after))
}
