package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"auditwatch/detect"
	"auditwatch/internal/kafkatest"
	"auditwatch/store/chtest"
)

// harnessHeap is what the process holds besides the detect stage: the
// test's input and appender, kfake's in-memory log, and the ingest and
// alert stages (about 270 MB live in a heap profile of a storage-on
// run).
const harnessHeap = 1 << 30

// stagesMemoryLimit gives the process the Go memory limit and collector
// target the detect stage sets for itself (setGoMemoryLimit, shipped
// defaults) plus harnessHeap. Deployed, each stage is its own process
// and the limit covers detect's heap alone; given to this whole process,
// it also had to hold the harness, and with storage on the collector ran
// 1,213 times in 34 s (the live heap at the limit), 9x the process CPU
// of storage off. GOMEMLIMIT set here keeps the stages from lowering it.
func stagesMemoryLimit(tb testing.TB) {
	var d detect.Config
	d.SetDefaults()
	limit := d.GoMemoryLimit() + harnessHeap
	tb.Setenv("GOMEMLIMIT", strconv.FormatInt(limit, 10))
	prevLimit := debug.SetMemoryLimit(limit)
	prevGC := debug.SetGCPercent(gcPercent)
	tb.Cleanup(func() {
		debug.SetMemoryLimit(prevLimit)
		debug.SetGCPercent(prevGC)
	})
}

// kafkaLatency is one run of the Kafka stages under appends.
type kafkaLatency struct {
	lat      []time.Duration // append→findings file, per finding revision, sorted
	revs     map[string]bool // finding revisions raised
	stored   int             // of revs, stored (storage on)
	appended float64         // events/s the appender kept
	// CPU time over the appends and until detect took them all: the
	// test process (the three stages, kfake, the appender and the poller)
	// and the ClickHouse server.
	cpu, serverCPU time.Duration
	// storeWait is the detect stage's wait on the store queue (storage on).
	storeWait float64
}

// runKafkaStagesLatency runs `ingest`, `detect` and `alert` in process on
// kfake (3 partitions per topic) over a generated Vault log, with the
// store on a ClickHouse 18.16 server (storage true: detect queues its
// events to the store writer, alert's findings_store_group stores the
// findings) or without a storage section. The log's learning part is
// written first and taken by detect; the rest, with its anomalies, is
// then appended to the tailed file at rate events/s for seconds. For
// every finding revision: the time from the append of its latest
// evidence event to its first appearance in the findings file (polled
// every 10 ms).
func runKafkaStagesLatency(tb testing.TB, in liveInput, storage bool, rate int) kafkaLatency {
	stagesMemoryLimit(tb)
	work := tb.TempDir()
	brokers := kafkatest.NewCluster(tb, 3, "events", "events-by-ip", "findings")
	audit := filepath.Join(work, "vault-audit.log")
	findings := filepath.Join(work, "findings.jsonl")
	storeYAML := ""
	serverPID := 0
	if storage {
		srv := chtest.StartServer(tb)
		serverPID = srv.PID
		storeYAML = fmt.Sprintf("storage: {backend: clickhouse, database: kbench, clickhouse: {addr: [%q]}}\n", srv.Addr)
	}
	base := fmt.Sprintf(`sources:
  - name: vault-file
    type: filetail
    format: vault
    filetail: {path: %q, start_at: beginning}
%sstate: {dir: %q}
detectors:
  learn_until: %s
files: {findings: %q}
%slogging: {level: info, format: text}
`, audit, kafkaStreamYAML(brokers[0], "1s"), filepath.Join(work, "state"), in.restStart.Format(time.RFC3339Nano), findings, storeYAML)
	cfgs, addrs := map[string]string{}, map[string]string{}
	for _, st := range []string{"ingest", "detect", "alert"} {
		addrs[st] = freeAddrTB(tb)
		cfgs[st] = filepath.Join(work, st+".yaml")
		if err := os.WriteFile(cfgs[st], fmt.Appendf(nil, "%shttp: {listen: %q}\n", base, addrs[st]), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	if storage {
		if code := runMigrate(context.Background(), []string{"--config", cfgs["alert"]}, nil, io.Discard, io.Discard); code != 0 {
			tb.Fatalf("migrate exit %d", code)
		}
	}
	var history []byte
	for _, l := range in.history {
		history = append(history, l...)
	}
	if err := os.WriteFile(audit, history, 0o644); err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	run := startStages(ctx, cancel,
		stageSpec{"ingest", runIngest, cfgs["ingest"]}, stageSpec{"detect", runDetect, cfgs["detect"]}, stageSpec{"alert", runAlert, cfgs["alert"]})
	defer func() {
		for _, res := range run.Stop() {
			if res.code != 0 {
				tb.Errorf("%s exit %d:\n%s", res.name, res.code, res.log)
			}
		}
	}()
	taken := func() float64 {
		v, err := scrapeMetricLabelled(addrs["detect"], `auditwatch_detect_stage_events_total{instance="principal"}`)
		if err != nil {
			return -1
		}
		return v
	}
	waitTaken := func(n int, what string) {
		for deadline := time.Now().Add(3 * time.Minute); taken() < float64(n); time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				// What the stages show, then their logs (the deferred
				// stop prints them on a non-zero exit only).
				var dump strings.Builder
				for _, st := range []string{"ingest", "detect"} {
					for _, page := range []string{"/readyz", "/metrics"} {
						resp, err := http.Get("http://" + addrs[st] + page)
						if err != nil {
							continue
						}
						body, _ := io.ReadAll(resp.Body)
						resp.Body.Close()
						for _, l := range strings.Split(string(body), "\n") {
							if page == "/readyz" || strings.Contains(l, "partitions") || strings.Contains(l, "lag") || strings.Contains(l, "store") || strings.Contains(l, "events_total") {
								if !strings.HasPrefix(l, "#") {
									fmt.Fprintf(&dump, "%s%s: %s\n", st, page, l)
								}
							}
						}
					}
				}
				for _, res := range run.Stop() {
					fmt.Fprintf(&dump, "%s exit %d:\n%s\n", res.name, res.code, res.log)
				}
				tb.Fatalf("storage %v: detect took %.0f of %d events (%s) in 3 minutes\n%s", storage, taken(), n, what, dump.String())
			}
		}
	}
	waitTaken(len(in.history)/2, "learning part")
	var arr arrivals
	stop, polled := make(chan struct{}), make(chan struct{})
	go func() { defer close(polled); tailFindings(findings, &arr, stop) }()
	app := newAppender()
	cpu0, scpu0 := procCPU(tb, os.Getpid()), time.Duration(0)
	if serverPID != 0 {
		scpu0 = procCPU(tb, serverPID)
	}
	n := app.run(tb, audit, in.rest, 2*rate, nil)
	waitTaken((len(in.history)+n)/2, "all")
	cpu, scpu := procCPU(tb, os.Getpid())-cpu0, time.Duration(0)
	if serverPID != 0 {
		scpu = procCPU(tb, serverPID) - scpu0
	}
	time.Sleep(2 * time.Second) // the last events' findings reach the file
	close(stop)
	<-polled
	out := kafkaLatency{revs: map[string]bool{}, appended: app.rate() / 2, cpu: cpu, serverCPU: scpu}
	fs, _ := findingsByKey(tb, findings)
	for k, f := range fs {
		out.revs[k] = true
		at := app.appendedAt(f)
		if at.IsZero() {
			continue
		}
		got, ok := arr.at("file", k)
		if !ok {
			tb.Errorf("finding %s has no arrival time", k)
			continue
		}
		out.lat = append(out.lat, max(got.Sub(at), 0))
	}
	slices.Sort(out.lat)
	if storage {
		v, err := scrapeMetricLabelled(addrs["detect"], `auditwatch_detect_stage_store_wait_seconds_total{instance="principal"}`)
		if err != nil {
			tb.Errorf("detect stage store wait: %v", err)
		}
		out.storeWait = v
		// Everything raised is stored (the store is part of the run
		// measured, not skipped).
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(500 * time.Millisecond) {
			resp, err := http.Get("http://" + addrs["alert"] + "/metrics")
			if err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if m := metricLine(`auditwatch_store_stage_records_total{topic="findings"}`).FindSubmatch(body); m != nil {
					v, _ := strconv.ParseFloat(string(m[1]), 64)
					out.stored = int(v)
				}
			}
			if out.stored >= len(out.revs) || time.Now().After(deadline) {
				break
			}
		}
	}
	return out
}

// tailFindings stamps when each finding revision (id/revision) first
// shows in the findings file, reading only what was appended since the
// last look, every 10 ms (re-reading the whole file each time, as
// pollOutputs does, cost this process more CPU than the stages at 286
// revisions).
func tailFindings(path string, arr *arrivals, stop <-chan struct{}) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var off int64
	var part []byte
	buf := make([]byte, 64<<10)
	for {
		if f, err := os.Open(path); err == nil {
			now := time.Now()
			var keys []string
			for {
				n, err := f.ReadAt(buf, off)
				off += int64(n)
				part = append(part, buf[:n]...)
				for {
					i := bytes.IndexByte(part, '\n')
					if i < 0 {
						break
					}
					var v struct {
						ID       string `json:"id"`
						Revision int    `json:"revision"`
					}
					if json.Unmarshal(part[:i], &v) == nil {
						keys = append(keys, v.ID+"/"+strconv.Itoa(v.Revision))
					}
					part = part[i+1:]
				}
				if err != nil || n == 0 {
					break
				}
			}
			f.Close()
			arr.note("file", keys, now)
		}
		select {
		case <-stop:
			return
		case <-tick.C:
		}
	}
}

// kafkaLatencyInput generates the Vault log of a latency run: a
// learning part, then about seconds of events at rate with about one
// anomaly a second (at least 8,000 events: the generator's population
// needs them to show its routine while learning).
func kafkaLatencyInput(tb testing.TB, rate, seconds int) liveInput {
	return loadLiveInput(tb, tb.TempDir(), true, []string{"--events", strconv.Itoa(max(rate*seconds*5/4, 8000)), "--anomaly-count", strconv.Itoa(max(seconds, 2))}, 0)
}

// BenchmarkKafkaStagesStoreLatency measures append→findings file latency
// through the Kafka stages (ingest, detect, alert on kfake, in process)
// with storage on (ClickHouse 18.16 server: detect's asynchronous event
// writer and alert's findings store group) against no storage section,
// both in the same run, alternating, 2 rounds each:
//
//	go test -run '^$' -bench BenchmarkKafkaStagesStoreLatency -benchtime 1x ./cmd/auditwatch
//
// 1,000 events/s for 30 s per run; AUDITWATCH_BENCH_APPEND_SECONDS and
// AUDITWATCH_BENCH_RATE change them. `make bench-kafka-store` runs it;
// TestKafkaStagesStoreLatencySmoke is CI's short run.
func BenchmarkKafkaStagesStoreLatency(b *testing.B) {
	seconds, rate := 30, 1000
	if v := os.Getenv("AUDITWATCH_BENCH_APPEND_SECONDS"); v != "" {
		seconds, _ = strconv.Atoi(v)
	}
	if v := os.Getenv("AUDITWATCH_BENCH_RATE"); v != "" {
		rate, _ = strconv.Atoi(v)
	}
	if seconds <= 0 || rate <= 0 {
		b.Fatalf("AUDITWATCH_BENCH_APPEND_SECONDS=%d, AUDITWATCH_BENCH_RATE=%d", seconds, rate)
	}
	for range b.N {
		in := kafkaLatencyInput(b, rate, seconds)
		lat := map[bool][]time.Duration{}
		cpu := map[bool]time.Duration{}
		for round := range 2 {
			for _, storage := range []bool{round == 1, round == 0} {
				// A sub-benchmark per run: its kfake cluster and server
				// end with it (the heap of earlier runs' clusters otherwise
				// keeps the garbage collector busy in later runs).
				b.Run(fmt.Sprintf("round=%d/storage=%v", round+1, storage), func(b *testing.B) {
					r := runKafkaStagesLatency(b, in, storage, rate)
					if len(r.lat) == 0 {
						b.Fatalf("storage %v: no finding revision", storage)
					}
					if storage && r.stored < len(r.revs) {
						b.Errorf("storage on: %d of %d finding revisions stored", r.stored, len(r.revs))
					}
					b.Logf("%.0f events/s appended, %d finding revisions, append→file p50 %.0f ms p99 %.0f ms max %.0f ms; CPU of this process (stages, kfake, appender, poller) %.1f s, ClickHouse server %.1f s; detect waited %.3f s on the store queue",
						r.appended, len(r.lat), ms(pct(r.lat, 0.5)), ms(pct(r.lat, 0.99)), ms(r.lat[len(r.lat)-1]), r.cpu.Seconds(), r.serverCPU.Seconds(), r.storeWait)
					b.ReportMetric(ms(pct(r.lat, 0.5)), "p50_ms")
					b.ReportMetric(ms(pct(r.lat, 0.99)), "p99_ms")
					b.ReportMetric(r.cpu.Seconds(), "process_cpu_s")
					if r.appended < 0.95*float64(rate) {
						b.Errorf("storage %v: the appender kept %.0f events/s of %d", storage, r.appended, rate)
					}
					cpu[storage] += r.cpu
					lat[storage] = append(lat[storage], r.lat...)
				})
				if b.Failed() {
					return
				}
			}
		}
		// The pooled figures (a parent with sub-benchmarks reports
		// nothing itself).
		b.Run("pooled", func(b *testing.B) {
			for _, storage := range []bool{false, true} {
				d := lat[storage]
				slices.Sort(d)
				name := map[bool]string{false: "off", true: "on"}[storage]
				b.ReportMetric(ms(pct(d, 0.5)), "store_"+name+"_p50_ms")
				b.ReportMetric(ms(pct(d, 0.99)), "store_"+name+"_p99_ms")
			}
			on, off := lat[true], lat[false]
			b.Logf("storage on ÷ off: p50 %.2fx, p99 %.2fx (%d and %d samples); this process's CPU %.2fx",
				float64(pct(on, 0.5))/float64(max(pct(off, 0.5), time.Millisecond)), float64(pct(on, 0.99))/float64(max(pct(off, 0.99), time.Millisecond)), len(on), len(off),
				cpu[true].Seconds()/max(cpu[false].Seconds(), 0.01))
		})
	}
}

// TestKafkaStagesStoreLatencySmoke is the CI run of
// BenchmarkKafkaStagesStoreLatency: 1,000 events/s over the smallest
// generated log (8,000 events), storage off and on. It checks what the figure rests on, not time: both runs raise the
// same finding revisions, each with an append→file latency, and with
// storage on every revision is stored.
func TestKafkaStagesStoreLatencySmoke(t *testing.T) {
	in := kafkaLatencyInput(t, 1000, 4)
	off := runKafkaStagesLatency(t, in, false, 1000)
	on := runKafkaStagesLatency(t, in, true, 1000)
	if len(off.revs) == 0 {
		t.Fatal("no finding revision raised")
	}
	for _, r := range []kafkaLatency{off, on} {
		if len(r.lat) != len(r.revs) {
			t.Errorf("%d latency samples for %d finding revisions", len(r.lat), len(r.revs))
		}
	}
	if !sameKeys(off.revs, on.revs) {
		t.Errorf("storage off raised %d finding revisions, on %d: %v / %v", len(off.revs), len(on.revs), diffKeys(off.revs, on.revs), diffKeys(on.revs, off.revs))
	}
	if on.stored < len(on.revs) {
		t.Errorf("storage on: %d of %d finding revisions stored", on.stored, len(on.revs))
	}
	t.Logf("append→file p50/p99: off %.0f/%.0f ms, on %.0f/%.0f ms (%d revisions; smoke, not a figure)",
		ms(pct(off.lat, 0.5)), ms(pct(off.lat, 0.99)), ms(pct(on.lat, 0.5)), ms(pct(on.lat, 0.99)), len(on.lat))
}

func sameKeys(a, b map[string]bool) bool {
	return len(diffKeys(a, b)) == 0 && len(diffKeys(b, a)) == 0
}
