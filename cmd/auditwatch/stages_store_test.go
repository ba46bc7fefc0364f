package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
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
	r := newStoredStages(t)
	stall := r.stallStore()

	// Phase 1: the store stalls before any event arrives. Every labelled
	// anomaly reaches the findings file although nothing can be stored.
	run := r.Start("ingest", "detect", "alert")
	stall(true)
	must(t, os.WriteFile(filepath.Join(r.Drop, "audit.log"), r.Raw, 0o644))
	waitScenarioFindings(t, 90*time.Second, r.Findings, r.Labels, func() { dumpStages(t, run) })
	// The findings are held for the store by the store consumer only.
	ready := httpGet(t, "http://"+r.Addrs["alert"]+"/readyz")
	m := regexp.MustCompile(`store findings: partitions \d+, records waiting for the store (\d+)`).FindStringSubmatch(ready)
	if m == nil {
		t.Errorf("alert /readyz has no store line:\n%s", ready)
	} else if n, _ := strconv.Atoi(m[1]); n == 0 {
		t.Errorf("alert /readyz shows nothing waiting for a stalled store:\n%s", ready)
	}
	// The detect stage's events wait in its store writer.
	ready = httpGet(t, "http://"+r.Addrs["detect"]+"/readyz")
	if m := regexp.MustCompile(`store writer: events waiting (\d+), findings waiting 0`).FindStringSubmatch(ready); m == nil {
		t.Errorf("detect /readyz has no store writer line:\n%s", ready)
	} else if n, _ := strconv.Atoi(m[1]); n == 0 {
		t.Errorf("detect /readyz shows no event waiting for a stalled store:\n%s", ready)
	}
	if v := scrapedValue(t, httpGet(t, "http://"+r.Addrs["detect"]+"/metrics"), `auditwatch_detect_stage_store_pending_events{instance="principal"}`); v == 0 {
		t.Error("detect metrics show no event pending for a stalled store")
	}
	metrics := httpGet(t, "http://"+r.Addrs["alert"]+"/metrics")
	if !regexp.MustCompile(`auditwatch_stream_lag_records\{group="auditwatch-alert-store",partition="\d+",topic="findings"\}`).MatchString(metrics) {
		t.Errorf("no lag gauge of the findings store group in the alert stage's metrics")
	}
	// Stopped with the store still stalled: what it had not
	// acknowledged is read again at the next start.
	for _, res := range run.Stop() {
		if res.code != 0 {
			t.Errorf("%s stopped (store stalled) with exit %d:\n%s", res.name, res.code, res.log)
		}
	}
	firstRun := readFindings(t, r.Findings)

	// Phase 2: the store answers again; the stages restart.
	stall(false)
	run = r.Start("ingest", "detect", "alert")
	defer run.Stop()
	input := r.Input()
	if me, mf, n := r.WaitStored(input); me > 0 || mf > 0 {
		dumpStages(t, run)
		t.Fatalf("after the store recovered: %d of %d events and %d of %d finding revisions not stored", me, len(input), mf, n)
	}
	// The restarted detect stage read again what the store had not
	// acknowledged and stored it without detecting it again.
	dm := httpGet(t, "http://"+r.Addrs["detect"]+"/metrics")
	if v := scrapedValue(t, dm, `auditwatch_detect_stage_store_replayed_total{instance="principal"}`); v == 0 {
		t.Error("the restarted detect stage stored no event read again: the stalled store's events were committed before it acknowledged them")
	}
	for _, res := range run.Stop() {
		if res.code != 0 {
			t.Errorf("%s exit %d:\n%s", res.name, res.code, res.log)
		}
	}
	after := readFindings(t, r.Findings)
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
	r.CheckCollapsed(input)
	t.Logf("%d events stored; %d findings", len(input), len(after))
}

// TestKafkaDetectStoresAcrossSIGKILL runs the `detect` stage as the built
// binary beside in-process `ingest` and `alert` stages, with the store on a
// ClickHouse 18.16 server, and SIGKILLs and restarts it while the OpenBao
// scenario arrives in parts: every input event is stored (at least once,
// and once after collapsing repeats), every finding revision is stored,
// every labelled anomaly is found, and restarts store the events taken
// before a kill that the store had not acknowledged.
func TestKafkaDetectStoresAcrossSIGKILL(t *testing.T) {
	r := newStoredStages(t)
	run := r.Start("ingest", "alert")
	defer run.Stop()
	var procs []*process
	start := func() { procs = append(procs, startAuditwatchEnv(t, nil, "detect", "--config", r.Cfgs["detect"])) }
	start()
	httpGet(t, "http://"+r.Addrs["detect"]+"/readyz")
	// The scenario in 8 files, one every 400 ms.
	lines := bytes.SplitAfter(r.Raw, []byte("\n"))
	parts := 8
	written := make(chan struct{})
	go func() {
		defer close(written)
		per := (len(lines) + parts - 1) / parts
		for i := 0; i < parts; i++ {
			chunk := bytes.Join(lines[min(i*per, len(lines)):min((i+1)*per, len(lines))], nil)
			if err := os.WriteFile(filepath.Join(r.Drop, fmt.Sprintf("part-%02d.log", i)), chunk, 0o644); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(400 * time.Millisecond)
		}
	}()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	kills := 0
	for ; kills < 5; kills++ {
		time.Sleep(500*time.Millisecond + time.Duration(rng.Int64N(int64(700*time.Millisecond))))
		procs[len(procs)-1].kill()
		start()
	}
	<-written
	// A SIGKILLed member keeps its partitions until its session times
	// out (10 s), so each kill can hold the group that long.
	waitScenarioFindings(t, 180*time.Second, r.Findings, r.Labels, func() {
		dumpStages(t, run)
		t.Logf("detect:\n%s", procs[len(procs)-1].stderr)
	})
	input := r.Input()
	if me, mf, n := r.WaitStored(input); me > 0 || mf > 0 {
		t.Errorf("after %d SIGKILLs of detect: %d of %d events and %d of %d finding revisions not stored\n%s", kills, me, len(input), mf, n, procs[len(procs)-1].stderr)
	}
	procs[len(procs)-1].stop(t)
	replayed := 0
	for _, p := range procs[1:] {
		if strings.Contains(p.stderr.String(), "stored when read again, not detected again") {
			replayed++
		}
	}
	if replayed == 0 {
		t.Errorf("no restart of %d found events the store had not acknowledged: the kills did not test the hand-over", kills)
	}
	r.CheckCollapsed(input)
	t.Logf("%d SIGKILLs, %d restarts stored events taken before a kill; %d events stored", kills, replayed, len(input))
}

// storedStages is the set-up of the Kafka stage tests with a store: an
// in-process Kafka, a ClickHouse 18.16 server (database kstore, migrated
// first as the compose deployment's migrate service does, since stages
// starting together would migrate concurrently), the OpenBao scenario
// with its labels, and one config per stage (a dir source over Drop,
// the shipped storage settings, an http.listen each).
// stallStore returns a switch that stops (SIGSTOP) or resumes the
// ClickHouse server; the server is resumed when the test ends.
func (r *storedStages) stallStore() func(on bool) {
	stalled := false
	r.t.Cleanup(func() {
		if stalled {
			_ = syscall.Kill(r.srv.PID, syscall.SIGCONT)
		}
	})
	return func(on bool) {
		sig := syscall.SIGCONT
		if on {
			sig = syscall.SIGSTOP
		}
		must(r.t, syscall.Kill(r.srv.PID, sig))
		stalled = on
	}
}

type storedStages struct {
	t        *testing.T
	srv      *chtest.Server
	Drop     string
	Findings string
	Raw      []byte
	Labels   []label
	Cfgs     map[string]string
	Addrs    map[string]string
	Brokers  []string
	db       *store.DB
}

func newStoredStages(t *testing.T) *storedStages {
	brokers := kafkatest.NewCluster(t, 3, "events", "events-by-ip", "findings")
	r := &storedStages{t: t, srv: chtest.StartServer(t), Cfgs: map[string]string{}, Addrs: map[string]string{}, Brokers: brokers}
	scen := filepath.Join(findRoot(t), "testdata", "openbao-scenario")
	work := t.TempDir()
	r.Drop = filepath.Join(work, "drop")
	must(t, os.MkdirAll(r.Drop, 0o755))
	var err error
	r.Raw, err = os.ReadFile(filepath.Join(scen, "audit.log"))
	must(t, err)
	r.Labels = loadLabels(t, filepath.Join(scen, "labels.jsonl"))
	r.Findings = filepath.Join(work, "findings.jsonl")
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
`, r.Drop, kafkaStreamYAML(brokers[0], "200ms"), filepath.Join(work, "state"), scenarioLearnUntil, r.Findings, r.srv.Addr)
	for _, st := range []string{"ingest", "detect", "alert"} {
		r.Addrs[st] = freeAddr(t)
		r.Cfgs[st] = filepath.Join(work, st+".yaml")
		must(t, os.WriteFile(r.Cfgs[st], fmt.Appendf(nil, "%shttp: {listen: %q}\n", base, r.Addrs[st]), 0o644))
	}
	var mlog bytes.Buffer
	if code := runMigrate(t.Context(), []string{"--config", r.Cfgs["alert"]}, nil, io.Discard, &mlog); code != 0 {
		t.Fatalf("migrate exit %d:\n%s", code, mlog.String())
	}
	return r
}

// Start runs the named stages in process and waits until each is ready
// (its store open).
func (r *storedStages) Start(stages ...string) *stageRun {
	fns := map[string]func(context.Context, []string, io.Reader, io.Writer, io.Writer) int{"ingest": runIngest, "detect": runDetect, "alert": runAlert}
	var specs []stageSpec
	for _, st := range stages {
		specs = append(specs, stageSpec{st, fns[st], r.Cfgs[st]})
	}
	ctx, cancel := context.WithCancel(r.t.Context())
	run := startStages(ctx, cancel, specs...)
	for _, st := range stages {
		httpGet(r.t, "http://"+r.Addrs[st]+"/readyz")
	}
	return run
}

// Input is the set of source/id of the scenario's events.
func (r *storedStages) Input() map[string]bool {
	input := map[string]bool{}
	rd := ingest.NewReader(bytes.NewReader(r.Raw), "audit.log", ingest.DefaultOptions())
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
		r.t.Fatalf("only %d input events", len(input))
	}
	return input
}

// Rows runs a query on the server.
func (r *storedStages) Rows(sql string) [][]any {
	r.t.Helper()
	if r.db == nil {
		cfg := store.Config{Backend: store.BackendClickHouse, Database: "kstore"}
		cfg.ClickHouse.Addr = []string{r.srv.Addr}
		cfg.SetDefaults()
		st, err := store.OpenReadOnly(r.t.Context(), cfg, nil)
		must(r.t, err)
		r.t.Cleanup(func() { st.Close() })
		r.db = st.(*store.DB)
	}
	res, err := r.db.Raw(r.t.Context(), sql, nil)
	if err != nil {
		r.t.Fatalf("%s: %v", sql, err)
	}
	return res.Rows
}

// WaitStored waits (up to 90 s) until every input event and every finding
// revision of the findings file is stored; it returns how many of each
// are missing (0, 0 when all are there).
func (r *storedStages) WaitStored(input map[string]bool) (missingEv, missingF, revisions int) {
	want := map[string]bool{}
	for _, f := range readFindings(r.t, r.Findings) {
		want[fmt.Sprintf("%s#%d", f.ID, f.Revision)] = true
	}
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		stored := map[string]bool{}
		for _, row := range r.Rows("SELECT source, id FROM kstore.events GROUP BY source, id") {
			stored[fmt.Sprint(row[0])+"/"+fmt.Sprint(row[1])] = true
		}
		revs := map[string]bool{}
		for _, row := range r.Rows("SELECT id, toString(revision) FROM kstore.findings GROUP BY id, revision") {
			revs[fmt.Sprint(row[0])+"#"+fmt.Sprint(row[1])] = true
		}
		missingEv, missingF = 0, 0
		for k := range input {
			if !stored[k] {
				missingEv++
			}
		}
		for k := range want {
			if !revs[k] {
				missingF++
			}
		}
		if missingEv == 0 && missingF == 0 || time.Now().After(deadline) {
			return missingEv, missingF, len(want)
		}
	}
}

// CheckCollapsed checks that the events table holds one row per input
// event, and the findings table one per revision, once repeats are merged
// away (a block stored again after a
// restart is the only source of repeats; the runbook queries count
// distinct ids in any case).
func (r *storedStages) CheckCollapsed(input map[string]bool) {
	r.t.Helper()
	var distinct, total string
	for _, row := range r.Rows("SELECT toString(uniqExact(source, id)), toString(count()) FROM kstore.events FINAL") {
		distinct, total = fmt.Sprint(row[0]), fmt.Sprint(row[1])
	}
	if distinct != strconv.Itoa(len(input)) || total != distinct {
		r.t.Errorf("events FINAL: %s rows for %s distinct events, want %d each", total, distinct, len(input))
	}
	for _, row := range r.Rows("SELECT toString(uniqExact(id, revision)), toString(count()) FROM kstore.findings FINAL") {
		if row[0] != row[1] {
			r.t.Errorf("findings FINAL: %v rows for %v distinct revisions", row[1], row[0])
		}
	}
}

func dumpStages(t *testing.T, run *stageRun) {
	for _, res := range run.Stop() {
		t.Logf("%s exit %d:\n%s", res.name, res.code, res.log)
	}
}
