package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"auditwatch/stream"
)

// revisionHandler collects the finding revisions (id#revision) of a topic.
type revisionHandler struct {
	mu   sync.Mutex
	revs map[string]bool
}

func (h *revisionHandler) Assigned(context.Context, stream.Assignment) (map[int]int64, error) {
	return nil, nil
}

func (h *revisionHandler) Handle(_ context.Context, _ int, recs []stream.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range recs {
		if r.Finding != nil {
			h.revs[fmt.Sprintf("%s#%d", r.Finding.ID, r.Finding.Revision)] = true
		}
	}
	return nil
}

func (h *revisionHandler) Revoked(context.Context, []int) error { return nil }

func (h *revisionHandler) snapshot() map[string]bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]bool, len(h.revs))
	for k := range h.revs {
		out[k] = true
	}
	return out
}

// TestKafkaAlertStoresAcrossSIGKILL runs the `alert` stage as the built
// binary beside in-process `ingest` and `detect` stages, with the store on
// a ClickHouse 18.16 server, and SIGKILLs and restarts it while the
// OpenBao scenario's findings arrive. Before most kills the server is
// stopped (SIGSTOP) until the alert stage's store consumer (group
// stream.kafka.findings_store_group) holds findings the store has not
// acknowledged, and kept stopped for several commit intervals: a consumer
// that committed what it had only submitted loses those findings at the
// kill. Checked against an uninterrupted consumer of the findings topic:
// every finding revision detect published is stored (no more, no less,
// by distinct id and revision), one row per revision after collapsing,
// and the findings file holds each finding once.
//
// Before each kill the test waits until the live alert process reads
// every findings partition in both of its groups
// (auditwatch_stream_partitions_read against
// auditwatch_stream_topic_partitions). kfake's group coordinator starts a
// member's session timer only when a JoinGroup reply reaches it, so a
// member SIGKILLed while its JoinGroup is held joins the next generation,
// never expires, and keeps its partitions unread for good (Apache Kafka's
// GroupCoordinator schedules every member's expiry when the join completes
// and expires members that never sync). The defect is kfake's classic
// group reply(), which returns before updateHeartbeat when the reply
// cannot be sent.
// Killing only members of a stable group keeps the test off that defect
// while every kill still lands with records in flight; a partition our
// code leaves unread still fails the wait.
func TestKafkaAlertStoresAcrossSIGKILL(t *testing.T) {
	r := newStoredStages(t)
	run := r.Start("ingest", "detect")
	defer run.Stop()

	// The reference: an uninterrupted consumer of the findings topic.
	ref := &revisionHandler{revs: map[string]bool{}}
	sc := stream.Config{Type: "kafka", Kafka: stream.KafkaConfig{Brokers: r.Brokers, ClientID: "test"}}
	sc.SetDefaults()
	k, err := stream.NewKafka(sc.Kafka, nil, nil)
	must(t, err)
	defer k.Close()
	rctx, rcancel := context.WithCancel(t.Context())
	var rwg sync.WaitGroup
	rwg.Add(1)
	go func() { defer rwg.Done(); k.Consume(rctx, "findings", "test-reference", ref) }()
	defer func() { rcancel(); rwg.Wait() }()

	stall := r.stallStore()

	addr := r.Addrs["alert"]
	var procs []*process
	start := func() {
		procs = append(procs, startAuditwatchEnv(t, nil, "alert", "--config", r.Cfgs["alert"]))
	}
	metric := func(series string) float64 {
		v, err := scrapeMetricLabelled(addr, series)
		if err != nil {
			return -1
		}
		return v
	}
	// stable waits until the live alert process reads every findings
	// partition in the alert group and in the store group.
	stable := func(why string) {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		for {
			n := metric(`auditwatch_stream_topic_partitions{topic="findings"}`)
			a := metric(`auditwatch_stream_partitions_read{group="auditwatch-alert",topic="findings"}`)
			s := metric(`auditwatch_stream_partitions_read{group="auditwatch-alert-store",topic="findings"}`)
			if n > 0 && a == n && s == n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the alert process reads %v (alert group) and %v (store group) of %v findings partitions after 90 s:\n%s", why, a, s, n, procs[len(procs)-1].stderr)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	start()
	httpGet(t, "http://"+addr+"/readyz")

	// The learning part first (no finding before learn_until), then the
	// rest in parts: one before each kill, the last after them.
	lines := bytes.SplitAfter(r.Raw, []byte("\n"))
	learned := 0
	for i, l := range lines {
		// Lines start {"time":"<RFC 3339>"; the second is enough.
		if ts, ok := bytes.CutPrefix(l, []byte(`{"time":"`)); ok && len(ts) >= 19 && string(ts[:19]) >= scenarioLearnUntil[:19] {
			learned = i
			break
		}
	}
	if learned == 0 {
		t.Fatal("no line at learn_until in the scenario")
	}
	const kills = 3
	part := 0
	write := func(from, to int) {
		must(t, os.WriteFile(filepath.Join(r.Drop, fmt.Sprintf("part-%02d.log", part)), bytes.Join(lines[from:to], nil), 0o644))
		part++
	}
	write(0, learned)
	rest := lines[learned:]
	per := (len(rest) + kills) / (kills + 1)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 11))
	heldAtKill := 0
	for i := 0; i < kills; i++ {
		stable(fmt.Sprintf("before kill %d", i+1))
		stallIt := i != 1 // one kill with the store answering
		if stallIt {
			stall(true)
		}
		write(learned+i*per, learned+min((i+1)*per, len(rest)))
		if stallIt {
			// Wait for findings held for the stalled store, then
			// several commit intervals (200 ms) for any commit.
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
				if metric(`auditwatch_store_stage_pending_records{topic="findings"}`) > 0 {
					heldAtKill++
					break
				}
			}
			time.Sleep(time.Second)
		} else {
			time.Sleep(100*time.Millisecond + time.Duration(rng.Int64N(int64(500*time.Millisecond))))
		}
		stable(fmt.Sprintf("at kill %d", i+1))
		procs[len(procs)-1].kill()
		if stallIt {
			stall(false)
		}
		start()
	}
	if from := learned + kills*per; from < len(lines) {
		write(from, len(lines))
	}
	if heldAtKill == 0 {
		t.Fatal("no kill found findings waiting for the stalled store: the kills did not test the store consumer's commits")
	}
	waitScenarioFindings(t, 120*time.Second, r.Findings, r.Labels, func() {
		dumpStages(t, run)
		t.Logf("alert:\n%s", procs[len(procs)-1].stderr)
	})
	input := r.Input()
	if me, mf, n := r.WaitStored(input); me > 0 || mf > 0 {
		t.Errorf("after %d SIGKILLs of alert: %d of %d events and %d of %d finding revisions not stored\n%s", kills, me, len(input), mf, n, procs[len(procs)-1].stderr)
	}
	// Every revision published to the findings topic is stored, none
	// other (the reference is read again each round, so it catches up).
	var want map[string]bool
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		got := map[string]bool{}
		for _, row := range r.Rows("SELECT id, toString(revision) FROM kstore.findings GROUP BY id, revision") {
			got[fmt.Sprint(row[0])+"#"+fmt.Sprint(row[1])] = true
		}
		want = ref.snapshot()
		missing, extra := diffKeys(want, got), diffKeys(got, want)
		if len(missing) == 0 && len(extra) == 0 && len(want) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %d SIGKILLs of alert: %d finding revisions on the topic not stored %v, %d stored not on the topic %v (topic %d, stored %d)\n%s",
				kills, len(missing), missing, len(extra), extra, len(want), len(got), procs[len(procs)-1].stderr)
		}
	}
	procs[len(procs)-1].stop(t)
	// The findings file holds each finding once, and every finding
	// published.
	ids := map[string]int{}
	for _, f := range readFindings(t, r.Findings) {
		ids[f.ID]++
	}
	for id, n := range ids {
		if n != 1 {
			t.Errorf("finding %s written %d times", id, n)
		}
	}
	for rev := range want {
		id := rev[:bytes.LastIndexByte([]byte(rev), '#')]
		if ids[id] == 0 {
			t.Errorf("finding %s on the topic is not in the findings file", id)
		}
	}
	r.CheckCollapsed(input)
	t.Logf("%d SIGKILLs of alert (%d with findings waiting for a stalled store); %d finding revisions stored; %d events", kills, heldAtKill, len(want), len(input))
}

// diffKeys lists the keys of a missing from b, sorted.
func diffKeys(a, b map[string]bool) []string {
	var out []string
	for k := range a {
		if !b[k] {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}
