// Package bench owns the soak/load harness: it starts the auditwatch
// pipeline as separate processes (`run` on the embedded stream, or the
// ingest, detect and alert stages on an in-process Kafka), drives it at a
// fixed rate from a live generated stream, samples /metrics and reports
// throughput, lost events, event-to-alert latency, memory and goroutines.
// It is linked only into the auditwatch-bench command, never into the
// production binary (it carries an in-process Kafka test broker).
package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"auditwatch/detect"
	"auditwatch/gen"
	"auditwatch/schema"
)

// benchOptions are the bench command's flags.
type benchOptions struct {
	rate      float64
	duration  time.Duration
	sample    time.Duration
	lateness  time.Duration
	idleDrain time.Duration
	drain     time.Duration
	anomalies int
	seed      int64
	storage   string
	stream    string
	work      string
	binary    string
	out       string
	jsonOut   string
	keep      bool
}

// benchSample is one scrape of the pipeline's /metrics.
type benchSample struct {
	Elapsed        time.Duration `json:"elapsed_ns"`
	Generated      int           `json:"generated"`
	IngestEvents   float64       `json:"ingest_events"`
	DetectEvents   float64       `json:"detect_events"`
	Delivered      int           `json:"delivered"`
	Goroutines     float64       `json:"goroutines"`
	RSSBytes       float64       `json:"rss_bytes"`
	HeapInuseBytes float64       `json:"heap_inuse_bytes"`
	// GoBytes is the memory the Go runtime holds from the OS (mapped
	// minus released to it): heap, stacks and the runtime's own. RSS
	// beyond it is memory outside the Go runtime (the embedded chDB
	// engine's allocations, C libraries, the binary's text).
	GoBytes        float64 `json:"go_bytes"`
	HeapAllocBytes float64 `json:"heap_alloc_bytes"`
	// HeapLiveBytes is the heap the last collection found live: what
	// the process keeps (the heap in use swings up to 5x above it with
	// GOGC 400, until the memory limit).
	HeapLiveBytes float64 `json:"heap_live_bytes"`
	// HeapGoalBytes is the heap size at which the next collection
	// ends (live heap × (1+GOGC/100), capped by the memory limit).
	HeapGoalBytes float64 `json:"heap_goal_bytes"`
	// GoMemLimitBytes is the Go runtime's soft memory limit.
	GoMemLimitBytes float64 `json:"go_memlimit_bytes"`
	// StoreBufferedRows are rows queued in the store writer.
	StoreBufferedRows float64 `json:"store_buffered_rows"`
	CPUSeconds        float64 `json:"cpu_seconds"`
	Load1             float64 `json:"load1"`
}

// Result is what a bench run measured (also written as JSON with --json).
type Result struct {
	Rate            float64       `json:"rate"`
	Duration        time.Duration `json:"duration_ns"`
	Storage         string        `json:"storage"`
	Stream          string        `json:"stream"`
	EventsGenerated int           `json:"events_generated"`
	EventsIngested  float64       `json:"events_ingested"`
	EventsProcessed float64       `json:"events_processed"`
	EventsRejected  float64       `json:"events_rejected"`
	LostEvents      int           `json:"lost_events"`
	// Throughput is processed events per second of the generation window;
	// CatchUp is how long after the last write the last event was processed.
	Throughput    float64       `json:"throughput"`
	CatchUp       time.Duration `json:"catch_up_ns"`
	CPUSeconds    float64       `json:"cpu_seconds"`
	Labels        int           `json:"labels"`
	LabelsFound   int           `json:"labels_found"`
	Findings      int           `json:"findings"`
	Deliveries    int           `json:"deliveries"`
	DuplicateSent int           `json:"duplicate_deliveries"`
	// Latency percentiles over LatencySamples findings.
	LatencySamples int           `json:"latency_samples"`
	LatencyMin     time.Duration `json:"latency_min_ns"`
	LatencyP50     time.Duration `json:"latency_p50_ns"`
	LatencyP90     time.Duration `json:"latency_p90_ns"`
	LatencyP99     time.Duration `json:"latency_p99_ns"`
	LatencyMax     time.Duration `json:"latency_max_ns"`
	Samples        []benchSample `json:"samples"`
	Machine        string        `json:"machine"`
	LoadStart      string        `json:"load_start"`
	LoadEnd        string        `json:"load_end"`
	Command        string        `json:"command"`
	Started        time.Time     `json:"started"`
}

// Main runs the bench command with args (without the program name) and
// returns the process exit code: 0 when nothing was lost, 1 on a failure,
// 2 on a usage error.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("auditwatch-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: auditwatch-bench [flags]")
		fmt.Fprintln(stderr)
		fmt.Fprintln(stderr, "Drives the auditwatch pipeline (separate processes of --binary) at a fixed rate")
		fmt.Fprintln(stderr, "from a live generated stream and reports throughput, lost events,")
		fmt.Fprintln(stderr, "event-to-alert latency, memory and goroutines over time.")
		fmt.Fprintln(stderr)
		fmt.Fprintln(stderr, "flags:")
		fs.PrintDefaults()
	}
	var o benchOptions
	fs.Float64Var(&o.rate, "rate", 2000, "events per second written to the live stream")
	fs.DurationVar(&o.duration, "duration", 10*time.Minute, "how long the stream is written")
	fs.DurationVar(&o.sample, "sample", 30*time.Second, "how often /metrics is sampled")
	fs.DurationVar(&o.lateness, "lateness", 2*time.Second, "detectors.allowed_lateness of the pipeline")
	fs.DurationVar(&o.idleDrain, "idle-drain", time.Second, "state.idle_drain of the pipeline")
	fs.DurationVar(&o.drain, "drain-timeout", 2*time.Minute, "how long to wait after the stream ends for every event to be processed")
	fs.IntVar(&o.anomalies, "anomaly-count", 0, "anomalies injected (default: as many as fit in the stream after its learning period; none in a stream too short for one)")
	fs.Int64Var(&o.seed, "seed", 1, "generator seed")
	fs.StringVar(&o.storage, "storage", "auto", "storage backend of the pipeline: chdb, off, or auto (chdb when CHDB_LIB_PATH is set)")
	fs.StringVar(&o.stream, "stream", "embedded", "embedded: auditwatch run in one process; kafka: the ingest, detect and alert commands as processes on an in-process Kafka (kfake)")
	fs.StringVar(&o.work, "work", "", "working directory (default: a new temporary directory, removed unless --keep)")
	fs.StringVar(&o.binary, "binary", "", "auditwatch binary to run the pipeline with (default: auditwatch beside this executable, else on PATH)")
	fs.StringVar(&o.out, "out", "", "write the Markdown report to this file (default: stdout)")
	fs.StringVar(&o.jsonOut, "json", "", "also write the measurements as JSON to this file")
	fs.BoolVar(&o.keep, "keep", false, "keep the working directory")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "auditwatch-bench: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	var bad []string
	if o.rate <= 0 || math.IsInf(o.rate, 0) || math.IsNaN(o.rate) {
		bad = append(bad, fmt.Sprintf("--rate %v: must be positive", o.rate))
	}
	if o.duration < time.Second {
		bad = append(bad, fmt.Sprintf("--duration %v: must be at least 1s", o.duration))
	}
	if o.sample < 100*time.Millisecond {
		bad = append(bad, fmt.Sprintf("--sample %v: must be at least 100ms", o.sample))
	}
	if o.lateness < 0 || o.idleDrain <= 0 || o.drain <= 0 {
		bad = append(bad, "--lateness must not be negative; --idle-drain and --drain-timeout must be positive")
	}
	switch o.storage {
	case "auto":
		o.storage = "off"
		if os.Getenv("CHDB_LIB_PATH") != "" {
			o.storage = "chdb"
		}
	case "chdb", "off":
	default:
		bad = append(bad, fmt.Sprintf("--storage %q: want chdb, off or auto", o.storage))
	}
	if o.stream != "embedded" && o.stream != "kafka" {
		bad = append(bad, fmt.Sprintf("--stream %q: want embedded or kafka", o.stream))
	}
	if len(bad) > 0 {
		fmt.Fprintln(stderr, "auditwatch-bench: "+strings.Join(bad, "; "))
		return 2
	}
	if o.anomalies < 0 {
		fmt.Fprintf(stderr, "auditwatch-bench: --anomaly-count %d: must not be negative\n", o.anomalies)
		return 2
	}
	if o.binary == "" {
		bin, err := defaultBinary()
		if err != nil {
			fmt.Fprintf(stderr, "auditwatch-bench: %v (set --binary)\n", err)
			return 1
		}
		o.binary = bin
	}
	if o.work == "" {
		dir, err := os.MkdirTemp("", "auditwatch-bench-")
		if err != nil {
			fmt.Fprintf(stderr, "auditwatch-bench: %v\n", err)
			return 1
		}
		o.work = dir
		if !o.keep {
			defer os.RemoveAll(dir)
		}
	} else if err := os.MkdirAll(o.work, 0o755); err != nil {
		fmt.Fprintf(stderr, "auditwatch-bench: %v\n", err)
		return 1
	}
	res, err := benchRun(ctx, o, stderr)
	if res != nil {
		res.Command = strings.TrimSpace("auditwatch-bench " + strings.Join(args, " "))
		var report bytes.Buffer
		writeBenchReport(&report, res)
		w := stdout
		if o.out != "" {
			if werr := os.WriteFile(o.out, report.Bytes(), 0o644); werr != nil {
				fmt.Fprintf(stderr, "auditwatch-bench: %v\n", werr)
				return 1
			}
			fmt.Fprintf(stderr, "auditwatch-bench: report written to %s\n", o.out)
		} else {
			w.Write(report.Bytes())
		}
		if o.jsonOut != "" {
			b, _ := json.MarshalIndent(res, "", "  ")
			if werr := os.WriteFile(o.jsonOut, append(b, '\n'), 0o644); werr != nil {
				fmt.Fprintf(stderr, "auditwatch-bench: %v\n", werr)
				return 1
			}
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "auditwatch-bench: %v\n", err)
		return 1
	}
	if res.LostEvents != 0 {
		fmt.Fprintf(stderr, "auditwatch-bench: %d events lost (%d generated, %.0f processed)\n", res.LostEvents, res.EventsGenerated, res.EventsProcessed)
		return 1
	}
	return 0
}

// defaultBinary is the auditwatch executable beside this one (as `make
// build` leaves them in bin/), else the one on PATH.
func defaultBinary() (string, error) {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "auditwatch")
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p, nil
		}
	}
	p, err := exec.LookPath("auditwatch")
	if err != nil {
		return "", fmt.Errorf("no auditwatch binary beside this executable or on PATH")
	}
	return p, nil
}

// benchDeliveries records when each finding revision reached the webhook.
type benchDeliveries struct {
	mu    sync.Mutex
	first map[string]time.Time // id/revision -> first arrival
	n     int
	dups  int
}

func (d *benchDeliveries) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	var body struct {
		Metadata struct {
			UID string `json:"uid"`
		} `json:"metadata"`
		Unmapped struct {
			Revision int `json:"revision"`
		} `json:"unmapped"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body); err != nil || body.Metadata.UID == "" {
		http.Error(w, "bad finding", http.StatusBadRequest)
		return
	}
	key := body.Metadata.UID + "/" + strconv.Itoa(body.Unmapped.Revision)
	d.mu.Lock()
	d.n++
	if _, dup := d.first[key]; dup {
		d.dups++
	} else {
		d.first[key] = now
	}
	d.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func (d *benchDeliveries) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n
}

// benchRun runs the pipeline and the generator and measures. A non-nil
// result comes with whatever was measured, even on error.
func benchRun(ctx context.Context, o benchOptions, stderr io.Writer) (*Result, error) {
	res := &Result{Rate: o.rate, Duration: o.duration, Storage: o.storage, Stream: o.stream, Machine: machineInfo(),
		LoadStart: loadAvg(), Started: time.Now().UTC()}
	logf := func(format string, args ...any) {
		fmt.Fprintf(stderr, "bench %s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}

	// The generator: event time starts at the moment writing starts and
	// advances with the clock (events/rate), written in ~50 ms batches.
	events := int(o.rate * o.duration.Seconds())
	start := time.Now().Add(3 * time.Second).UTC().Truncate(time.Millisecond)
	gcfg := gen.Config{Seed: o.seed, Start: start, Events: events, Rate: o.rate, Anomalies: true, CloudTrailShare: 0.5}
	g, err := benchGenerator(gcfg, o.anomalies)
	if err != nil {
		return nil, err
	}

	deliveries := &benchDeliveries{first: map[string]time.Time{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: deliveries, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()

	stream := filepath.Join(o.work, "stream.log")
	findingsPath := filepath.Join(o.work, "findings.jsonl")
	for _, p := range []string{stream, findingsPath} {
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			return nil, err
		}
	}
	storage := "storage: {backend: off}"
	if o.storage == "chdb" {
		storage = fmt.Sprintf("storage: {backend: chdb, chdb: {path: %q}}", filepath.Join(o.work, "chdb"))
	}
	source := fmt.Sprintf(`sources:
  - name: live
    type: filetail
    filetail: {path: %q, poll_interval: 50ms, idle_flush: 500ms}
`, stream)
	detectors := fmt.Sprintf("detectors:\n  learn_until: %s\n  allowed_lateness: %s\n", g.LearningEnd().Format(time.RFC3339Nano), o.lateness)
	alerts := fmt.Sprintf(`alerts:
  outputs:
    - name: bench
      type: webhook
      webhook: {url: "http://%s/findings"}
  default_outputs: [bench]
files: {findings: %q}
`, ln.Addr(), findingsPath)
	common := "logging: {level: warn, format: text}\nshutdown_timeout: 30s\n"
	state := func(name string) string {
		return fmt.Sprintf("state: {dir: %q, idle_drain: %s}\n", filepath.Join(o.work, "state", name), o.idleDrain)
	}
	// The stages: `run` alone on the embedded stream, or `ingest`, `detect`
	// and `alert` on an in-process Kafka (kfake; its memory is not counted).
	type stage struct{ name, cfg string }
	var stages []stage
	switch o.stream {
	case "embedded":
		stages = []stage{{"run", source + state("run") + detectors + alerts + storage + "\n" + common}}
	case "kafka":
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(8, "events", "events-by-ip", "findings"),
			kfake.ListenFn(func(network, _ string) (net.Listener, error) { return net.Listen(network, "127.0.0.1:0") }))
		if err != nil {
			return nil, fmt.Errorf("kafka (kfake): %w", err)
		}
		defer c.Close()
		kafka := fmt.Sprintf(`stream:
  type: kafka
  kafka: {brokers: [%q], events_topic: events, events_by_ip_topic: events-by-ip, findings_topic: findings, batch_timeout: 5ms, commit_interval: 200ms}
`, c.ListenAddrs()[0])
		stages = []stage{
			{"detect", kafka + state("detect") + detectors + storage + "\n" + common},
			{"alert", kafka + state("alert") + alerts + common},
			{"ingest", source + kafka + state("ingest") + common},
		}
	}
	var procs []*benchProc
	defer func() {
		for i := len(procs) - 1; i >= 0; i-- {
			procs[i].stop()
		}
	}()
	for _, s := range stages {
		p, err := startBenchProc(ctx, o, s.name, s.cfg)
		if err != nil {
			return nil, err
		}
		procs = append(procs, p)
		if err := p.waitReady(ctx, 60*time.Second); err != nil {
			return nil, err
		}
	}
	logf("pipeline ready (%s stream, storage %s), writing %d events at %.0f/s for %v to %s", o.stream, o.storage, events, o.rate, o.duration, stream)

	// Write the stream.
	out, err := os.OpenFile(stream, os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	var generated atomicInt
	genDone := make(chan error, 1)
	genCtx, cancelGen := context.WithCancel(ctx)
	defer cancelGen()
	time.Sleep(time.Until(start))
	began := time.Now()
	go func() {
		st, err := g.Run(genCtx, gen.Output{Combined: out, Flush: func() error { generated.store(g.Count()); return nil }})
		generated.store(st.Events)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		genDone <- err
	}()

	// scrape sums every process's metrics; events processed are the
	// principal-keyed detect instance's on Kafka (the by-IP instance sees
	// failed authentications a second time).
	processedKey := "auditwatch_detect_stage_events_total"
	if o.stream == "kafka" {
		processedKey = `auditwatch_detect_stage_events_total{instance="principal"}`
	}
	scrape := func() (benchSample, map[string]float64, error) {
		s := benchSample{Elapsed: time.Since(began), Generated: generated.load(), Delivered: deliveries.count(), Load1: load1()}
		m := map[string]float64{}
		for _, p := range procs {
			pm, err := scrapeMetrics(p.client, "http://"+p.addr+"/metrics")
			if err != nil {
				return s, nil, fmt.Errorf("%s: %w", p.name, err)
			}
			for k, v := range pm {
				m[k] += v
			}
		}
		s.IngestEvents = m["auditwatch_ingest_events_total"]
		s.DetectEvents = m[processedKey]
		s.Goroutines = m["go_goroutines"]
		s.RSSBytes = m["process_resident_memory_bytes"]
		s.HeapInuseBytes = m["go_memstats_heap_inuse_bytes"]
		s.GoBytes = m["go_memstats_sys_bytes"] - m["go_memstats_heap_released_bytes"]
		s.HeapAllocBytes = m["go_memstats_heap_alloc_bytes"]
		s.HeapLiveBytes = m["go_gc_heap_live_bytes"]
		s.HeapGoalBytes = m["go_memstats_next_gc_bytes"]
		s.GoMemLimitBytes = m["go_gc_gomemlimit_bytes"]
		s.StoreBufferedRows = m["auditwatch_store_buffered_rows"]
		s.CPUSeconds = m["process_cpu_seconds_total"]
		return s, m, nil
	}
	record := func(s benchSample) {
		res.Samples = append(res.Samples, s)
		logf("t=%-6s generated %d ingested %.0f processed %.0f delivered %d goroutines %.0f rss %.1f MiB load %.2f",
			s.Elapsed.Round(time.Second), s.Generated, s.IngestEvents, s.DetectEvents, s.Delivered, s.Goroutines, s.RSSBytes/(1<<20), s.Load1)
	}
	exitedEarly := func() error {
		for _, p := range procs {
			if err, ok := p.exited(); ok {
				return fmt.Errorf("%s exited while the stream was written (%v); log: %s", p.name, err, p.logPath)
			}
		}
		return nil
	}
	if s, _, err := scrape(); err == nil {
		record(s)
	}
	tick := time.NewTicker(o.sample)
	defer tick.Stop()
	var genErr error
	writing := true
	for writing {
		select {
		case genErr = <-genDone:
			writing = false
		case <-tick.C:
			if err := exitedEarly(); err != nil {
				cancelGen()
				<-genDone
				return res, err
			}
			s, _, err := scrape()
			if err != nil {
				cancelGen()
				<-genDone
				return res, fmt.Errorf("scrape /metrics: %w", err)
			}
			record(s)
		case <-ctx.Done():
			cancelGen()
			<-genDone
			return res, ctx.Err()
		}
	}
	wrote := time.Now()
	if genErr != nil {
		return res, fmt.Errorf("generator: %w", genErr)
	}
	res.EventsGenerated = generated.load()
	logf("stream written: %d events in %v", res.EventsGenerated, wrote.Sub(began).Round(time.Millisecond))

	// Catch up: wait until every written event is processed, then until
	// the reorder buffer has drained and deliveries are quiet.
	deadline := time.Now().Add(o.drain)
	var last map[string]float64
	for {
		s, m, err := scrape()
		if err != nil {
			return res, fmt.Errorf("scrape /metrics: %w", err)
		}
		last = m
		if int(s.DetectEvents) >= res.EventsGenerated {
			res.CatchUp = time.Since(wrote)
			break
		}
		if time.Now().After(deadline) {
			record(s)
			res.CatchUp = time.Since(wrote)
			logf("not every event processed within --drain-timeout %v", o.drain)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	quiet, n := time.Now(), deliveries.count()
	for time.Since(quiet) < o.idleDrain+3*time.Second && time.Now().Before(deadline.Add(30*time.Second)) {
		time.Sleep(100 * time.Millisecond)
		if c := deliveries.count(); c != n {
			quiet, n = time.Now(), c
		}
	}
	if s, m, err := scrape(); err == nil {
		record(s)
		last = m
	}
	res.EventsIngested = last["auditwatch_ingest_events_total"]
	res.EventsProcessed = last[processedKey]
	res.EventsRejected = last["auditwatch_ingest_rejected_total"]
	res.CPUSeconds = last["process_cpu_seconds_total"]
	res.LostEvents = res.EventsGenerated - int(res.EventsProcessed)
	res.Throughput = res.EventsProcessed / (wrote.Sub(began) + res.CatchUp).Seconds()
	var stopErr error
	for i := len(procs) - 1; i >= 0; i-- {
		stopErr = errors.Join(stopErr, procs[i].stop())
	}
	res.LoadEnd = loadAvg()

	// Latency: delivery time minus the event time of the finding's last
	// evidence (the time its triggering event was written).
	findings := readFindingsFile(findingsPath)
	res.Findings = len(findings)
	deliveries.mu.Lock()
	res.Deliveries, res.DuplicateSent = deliveries.n, deliveries.dups
	var lat []time.Duration
	for _, f := range findings {
		at, ok := deliveries.first[f.ID+"/"+strconv.Itoa(f.Revision)]
		if !ok {
			continue
		}
		ev := f.LastTime
		if ev.IsZero() {
			ev = f.Time
		}
		lat = append(lat, at.Sub(ev))
	}
	deliveries.mu.Unlock()
	slices.Sort(lat)
	res.LatencySamples = len(lat)
	res.LatencyP50, res.LatencyP90, res.LatencyP99 = percentile(lat, 0.50), percentile(lat, 0.90), percentile(lat, 0.99)
	if len(lat) > 0 {
		res.LatencyMin, res.LatencyMax = lat[0], lat[len(lat)-1]
	}
	res.Labels = len(g.Labels())
	for _, l := range g.Labels() {
		for _, f := range findings {
			if f.Detector == l.Detector || slices.Contains(l.AlsoMatches, f.Detector) {
				if slices.ContainsFunc(f.EventIDs, func(id string) bool { return slices.Contains(l.EventIDs, id) }) {
					res.LabelsFound++
					break
				}
			}
		}
	}
	logf("done: %d generated, %.0f processed, %d lost, %d findings, latency p50 %v p99 %v",
		res.EventsGenerated, res.EventsProcessed, res.LostEvents, res.Findings, res.LatencyP50, res.LatencyP99)
	return res, stopErr
}

// benchProc is one pipeline process of the bench.
type benchProc struct {
	name, addr, logPath string
	cmd                 *exec.Cmd
	log                 *os.File
	client              *http.Client
	done                chan error
	stopped             bool
}

// startBenchProc writes cfg (plus an HTTP listener on a free loopback
// port) and starts `auditwatch <name> --config` with its log in the work
// directory.
func startBenchProc(ctx context.Context, o benchOptions, name, cfg string) (*benchProc, error) {
	addr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(o.work, name+".yaml")
	cfg = fmt.Sprintf("# auditwatch-bench: the %s stage on a live generated stream.\n%shttp: {listen: %q}\n", name, cfg, addr)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	p := &benchProc{name: name, addr: addr, logPath: filepath.Join(o.work, name+".log"),
		client: &http.Client{Timeout: 5 * time.Second}, done: make(chan error, 1)}
	if p.log, err = os.Create(p.logPath); err != nil {
		return nil, err
	}
	p.cmd = exec.Command(o.binary, name, "--config", cfgPath)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		p.log.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	return p, nil
}

func (p *benchProc) exited() (error, bool) {
	select {
	case err := <-p.done:
		p.done <- err
		return err, true
	default:
		return nil, false
	}
}

func (p *benchProc) waitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		resp, err := p.client.Get("http://" + p.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if err, ok := p.exited(); ok {
			return fmt.Errorf("%s exited during start-up (%v); log: %s", p.name, err, p.logPath)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within %v; log: %s", p.name, limit, p.logPath)
		}
	}
}

// stop sends SIGTERM and waits for a clean exit (once).
func (p *benchProc) stop() error {
	if p.stopped {
		return nil
	}
	p.stopped = true
	defer p.log.Close()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			return fmt.Errorf("%s exited with %v (log: %s)", p.name, err, p.logPath)
		}
		return nil
	case <-time.After(45 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop within 45s of SIGTERM", p.name)
	}
}

// benchGenerator builds the generator with count anomalies, or with as
// many as fit when count is 0 (the generator keeps anomaly starts at least
// twice its longest burst apart, about 82 s with the default bursts),
// none when the stream is too short for one.
func benchGenerator(cfg gen.Config, count int) (*gen.Generator, error) {
	if count > 0 {
		cfg.AnomalyCount = count
		return gen.New(cfg.Defaults())
	}
	for n := max(1, int(cfg.Defaults().Duration/(6*time.Second))); n > 0; n-- {
		cfg.AnomalyCount = n
		if g, err := gen.New(cfg.Defaults()); err == nil {
			return g, nil
		}
	}
	cfg.Anomalies, cfg.AnomalyCount = false, 0
	return gen.New(cfg.Defaults())
}

// percentile returns the q-quantile of sorted (nearest rank).
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// scrapeMetrics reads a Prometheus text exposition, summing every series
// of a metric name.
// validMetricName reports whether s is a Prometheus metric name
// ([a-zA-Z_:][a-zA-Z0-9_:]*); lines without one are skipped.
func validMetricName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

func scrapeMetrics(c *http.Client, url string) (map[string]float64, error) {
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest, ok := strings.Cut(line, " ")
		if i := strings.IndexByte(line, '{'); i >= 0 && i < len(name) {
			name = line[:i]
			j := strings.LastIndexByte(line, '}')
			if j < 0 {
				continue
			}
			rest, ok = strings.TrimSpace(line[j+1:]), true
		}
		if !ok || !validMetricName(name) {
			continue
		}
		if f := strings.Fields(rest); len(f) > 0 {
			if v, err := strconv.ParseFloat(f[0], 64); err == nil {
				m[name] += v
				if series := strings.TrimSpace(strings.TrimSuffix(line, rest)); series != "" && series != name {
					m[series] += v
				}
			}
		}
	}
	return m, sc.Err()
}

func readFindingsFile(path string) []schema.Finding {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var fs []schema.Finding
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		var f schema.Finding
		if len(line) > 0 && json.Unmarshal(line, &f) == nil {
			fs = append(fs, f)
		}
	}
	return fs
}

func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

type atomicInt struct {
	mu sync.Mutex
	v  int
}

func (a *atomicInt) store(v int) { a.mu.Lock(); a.v = v; a.mu.Unlock() }
func (a *atomicInt) load() int   { a.mu.Lock(); defer a.mu.Unlock(); return a.v }

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func load1() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

func machineInfo() string {
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	if model == "" {
		model = "unknown CPU"
	}
	return fmt.Sprintf("%d CPUs (%s), %s/%s, %s", runtime.NumCPU(), model, runtime.GOOS, runtime.GOARCH, runtime.Version())
}

func mib(b float64) string { return fmt.Sprintf("%.1f", b/(1<<20)) }

// writeBenchReport writes res as Markdown.
func writeBenchReport(w io.Writer, r *Result) {
	fmt.Fprintf(w, "# auditwatch soak/load report\n\n")
	fmt.Fprintf(w, "Command: `%s`  \nStarted: %s\n\n", r.Command, r.Started.Format(time.RFC3339))
	stored := map[bool]string{true: " + embedded ClickHouse (chDB) storage", false: ""}[r.Storage == "chdb"]
	if r.Stream == "kafka" {
		fmt.Fprintf(w, "The Kafka deployment (`auditwatch ingest` (file tail) → events topics → `auditwatch detect`%s → findings topic → `auditwatch alert` (webhook + findings file)), three processes on an in-process Kafka (kfake, 8 partitions, run by the bench; its memory is not counted), ", stored)
	} else {
		fmt.Fprintf(w, "The embedded pipeline (`auditwatch run`: file tail → embedded stream → detectors → alert router (webhook) + findings file%s), one process, ", stored)
	}
	fmt.Fprintf(w, "ran on a live stream written by the generator at a fixed rate (mixed CloudTrail and Vault/OpenBao, labelled anomalies, event time following the clock). /metrics was sampled throughout")
	if r.Stream == "kafka" {
		fmt.Fprintf(w, " (memory and goroutines summed over the processes)")
	}
	fmt.Fprintf(w, ".\n\n")
	fmt.Fprintf(w, "Machine: %s. Load average (1/5/15 min) at start %s, at end %s. The machine is shared, so figures are noisy.\n\n", r.Machine, r.LoadStart, r.LoadEnd)
	fmt.Fprintf(w, "## Summary\n\n| | |\n|---|---|\n")
	row := func(k, v string) { fmt.Fprintf(w, "| %s | %s |\n", k, v) }
	row("Rate (target)", fmt.Sprintf("%.0f events/s", r.Rate))
	row("Duration (stream written)", r.Duration.String())
	row("Stream", r.Stream)
	row("Storage", r.Storage)
	row("Events generated", strconv.Itoa(r.EventsGenerated))
	row("Events ingested", fmt.Sprintf("%.0f", r.EventsIngested))
	row("Events processed by the detectors", fmt.Sprintf("%.0f", r.EventsProcessed))
	row("Records rejected by the parsers", fmt.Sprintf("%.0f", r.EventsRejected))
	row("**Lost events** (generated − processed)", fmt.Sprintf("**%d**", r.LostEvents))
	row("Throughput (processed / (write time + catch-up))", fmt.Sprintf("%.0f events/s", r.Throughput))
	row("Catch-up after the last write", r.CatchUp.Round(time.Millisecond).String())
	if r.CPUSeconds > 0 {
		row("Pipeline CPU time", fmt.Sprintf("%.1f s (%.0f events per CPU-second)", r.CPUSeconds, r.EventsProcessed/r.CPUSeconds))
	}
	row("Labelled anomalies / found", fmt.Sprintf("%d / %d", r.Labels, r.LabelsFound))
	row("Findings / webhook deliveries / duplicates", fmt.Sprintf("%d / %d / %d", r.Findings, r.Deliveries, r.DuplicateSent))
	row("Event-to-alert latency min / p50 / p90 / p99 / max", fmt.Sprintf("%v / %v / %v / %v / %v (%d findings)", r.LatencyMin.Round(time.Millisecond),
		r.LatencyP50.Round(time.Millisecond), r.LatencyP90.Round(time.Millisecond), r.LatencyP99.Round(time.Millisecond),
		r.LatencyMax.Round(time.Millisecond), r.LatencySamples))
	fmt.Fprintf(w, "\nLatency is the webhook's receive time minus the event time of the finding's last evidence event; the generator writes each event within one 50 ms batch of its event time. It includes the allowed lateness of the detectors' reorder buffer and the idle drain.\n\n")
	fmt.Fprintf(w, "## Over time\n\n| t | generated | processed | events/s (interval) | delivered | goroutines | RSS MiB | Go runtime MiB | live heap MiB | heap goal MiB | outside Go (chDB) MiB | load 1m |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for i, s := range r.Samples {
		rate := "–"
		if i > 0 {
			p := r.Samples[i-1]
			if dt := (s.Elapsed - p.Elapsed).Seconds(); dt > 0 {
				rate = fmt.Sprintf("%.0f", (s.DetectEvents-p.DetectEvents)/dt)
			}
		}
		fmt.Fprintf(w, "| %s | %d | %.0f | %s | %d | %.0f | %s | %s | %s | %s | %s | %.2f |\n", s.Elapsed.Round(time.Second), s.Generated, s.DetectEvents,
			rate, s.Delivered, s.Goroutines, mib(s.RSSBytes), mib(s.GoBytes), mib(s.HeapLiveBytes), mib(s.HeapGoalBytes), mib(s.RSSBytes-s.GoBytes), s.Load1)
	}
	var dc detect.Config
	dc.SetDefaults()
	if bad := r.CheckMemory(SoakMemory(dc)); len(bad) > 0 {
		fmt.Fprintf(w, "\n**Memory: %s.**\n", strings.Join(bad, "; "))
	} else {
		fmt.Fprintf(w, "\nMemory: the Go runtime stayed within the shipped detectors.memory_budget (%s MiB); over the second half the live Go heap and the memory outside Go did not grow beyond their swing.\n", mib(float64(dc.MemoryBudget)))
	}
	if g := r.Growth(); g != nil {
		fmt.Fprintf(w, "\nFrom the first sample of the second half (%s) to the last: RSS %s → %s MiB, live Go heap %s → %s MiB, outside Go (chDB) %s → %s MiB, goroutines %.0f → %.0f. "+
			"Go runtime = mapped minus released to the OS (go_memstats_sys_bytes − go_memstats_heap_released_bytes); with GOGC 400 it follows the heap goal (5x the live heap, up to the memory limit), not what is kept.\n",
			g.From.Elapsed.Round(time.Second), mib(g.From.RSSBytes), mib(g.To.RSSBytes), mib(g.From.HeapLiveBytes), mib(g.To.HeapLiveBytes),
			mib(g.From.RSSBytes-g.From.GoBytes), mib(g.To.RSSBytes-g.To.GoBytes), g.From.Goroutines, g.To.Goroutines)
	}
}

// Growth compares a sample after warm-up with the last one.
type Growth struct{ From, To benchSample }

// Growth returns the samples memory growth is judged on: the first taken
// at least half-way into the run (baselines, buffers, caches and the Go
// heap's collection target are settling before that) and the last. Nil
// with fewer than two samples.
func (r *Result) Growth() *Growth {
	if len(r.Samples) < 2 {
		return nil
	}
	from := r.Samples[0]
	for _, s := range r.Samples {
		if s.Elapsed >= r.Duration/2 {
			from = s
			break
		}
	}
	return &Growth{From: from, To: r.Samples[len(r.Samples)-1]}
}

// Memory bounds a soak holds the pipeline to (CheckMemory).
type Memory struct {
	// Budget bounds the memory the Go runtime holds (detectors.memory_budget).
	Budget float64
	// LiveGrowth bounds the growth of the live Go heap, and OtherGrowth
	// that of the memory outside the Go runtime (the embedded chDB
	// engine's), over the second half of the run (Growth).
	LiveGrowth, OtherGrowth float64
}

// SoakMemory is what TestBenchSmoke (and the report) holds the pipeline to: the Go
// runtime within the shipped detectors.memory_budget, and from the run's
// second quarter to its last at most 48 MiB more live heap and 160 MiB
// more memory outside the Go runtime (CheckMemory). Both swing without growing: the live heap by
// the storage blocks in flight (up to storage.batch.max_interval of
// events, read at collections some 5-10 s apart under GOGC 400: 18-59 MiB
// over a 90 s run at 1,000 events/s), chDB between its inserts and merges
// (227-386 MiB in the same run). The collector's readings come 5-10 s
// apart, so a 20 s smoke run catches only leaks of many KiB per event
// (16 KiB per event: live heap +159 MiB, fails; 4 KiB per event: +22 MiB,
// as the last reading was 12 s old, passes); a long soak catches smaller
// ones (keeping every event, about 2.4 KiB each: +76 MiB in a 90 s run,
// fails, while its RSS fell by 15 MiB over the second half).
func SoakMemory(dc detect.Config) Memory {
	return Memory{Budget: float64(dc.MemoryBudget), LiveGrowth: 48 << 20, OtherGrowth: 160 << 20}
}

// CheckMemory reports where the run's memory breaks m: the Go runtime's
// memory above the budget in any sample, or the live heap or the memory
// outside the Go runtime growing from the second quarter of the run to
// the last. The RSS as a whole
// is not judged: with GOGC 400 the Go heap grows to 5x the live heap
// (until the memory limit) before a collection, so the RSS climbs for
// tens of seconds without anything being kept.
func (r *Result) CheckMemory(m Memory) []string {
	var bad []string
	for _, s := range r.Samples {
		if s.GoBytes > m.Budget {
			bad = append(bad, fmt.Sprintf("at %v the Go runtime holds %s MiB, above the memory budget of %s MiB", s.Elapsed.Round(time.Second), mib(s.GoBytes), mib(m.Budget)))
			break
		}
	}
	// Single samples catch the live heap at any point of the storage
	// cycle and chDB in a merge: growth is judged from the highest value
	// of the second quarter to the lowest of the last, which a leak
	// raises and a swing does not.
	var mid, end []benchSample
	for _, s := range r.Samples {
		switch {
		case s.Elapsed >= r.Duration/4 && s.Elapsed <= r.Duration/2:
			mid = append(mid, s)
		case s.Elapsed >= r.Duration*3/4:
			end = append(end, s)
		}
	}
	if len(mid) == 0 || len(end) == 0 {
		return append(bad, fmt.Sprintf("%d samples, none in the second or the last quarter: memory growth not judged", len(r.Samples)))
	}
	live := func(s benchSample) float64 { return s.HeapLiveBytes }
	other := func(s benchSample) float64 { return s.RSSBytes - s.GoBytes }
	for _, c := range []struct {
		what  string
		v     func(benchSample) float64
		limit float64
	}{{"the live Go heap", live, m.LiveGrowth}, {"memory outside the Go runtime (chDB)", other, m.OtherGrowth}} {
		from, to := c.v(mid[0]), c.v(end[0])
		for _, s := range mid {
			from = max(from, c.v(s))
		}
		for _, s := range end {
			to = min(to, c.v(s))
		}
		if to-from > c.limit {
			bad = append(bad, fmt.Sprintf("%s grew by %s MiB: at most %s MiB in the second quarter, at least %s MiB in the last", c.what, mib(to-from), mib(from), mib(to)))
		}
	}
	return bad
}
