package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"auditwatch/schema"
)

// faultRun is the harness of the fault tests that run the built binary:
// it generates a stream, writes a config around the test's own sections,
// appends the stream to the file `auditwatch run` tails, SIGKILLs and
// restarts the process, and stops it. Every run carries known secret
// values — a Slack webhook URL, a HEC token, a webhook bearer token and
// URL query token (outputs that fail against local servers which echo the
// credentials back), and Vault and AWS credentials in the environment —
// and Stop greps every log line of every process, every file the runs
// left (dead letters, quarantine, state, findings), the metrics scrape and
// every payload the outputs sent for them.
//
//	f := newFaultRun(t, faultStream{Seed: 11, Events: 15000, ...})
//	f.WriteConfig(faultConfig{State: "checkpoint_events: 2000", Extra: "detectors: ..."})
//	want := f.Replay()
//	appended := f.Append(300)
//	f.Start()
//	f.KillRandomly(12, 200*time.Millisecond, 1300*time.Millisecond, nil)
//	<-appended
//	f.WaitUntil(40*time.Second, func() bool { ... })
//	f.Stop() // SIGTERM, metrics scrape, secret grep
type faultRun struct {
	t *testing.T
	// Work is the test's directory: everything the runs write is under it.
	Work       string
	Data       string // the generated stream
	Raw        []byte // its content
	LearnUntil string // the learning end generate printed
	Labels     string // generate's labels file ("" without faultStream.Labels)
	Live       string // the file the filetail source reads
	State      string // state.dir
	Findings   string // files.findings
	Events     string // files.events
	Config     string // the config WriteConfig wrote
	HTTPAddr   string // http.listen

	*secretRun // the secrets, their outputs and the grep

	rng   *rand.Rand
	procs []*process
	p     *process

	mu      sync.Mutex
	scrapes []string
	genLog  string
	replays []string
}

// faultStream is what generate produces for a fault test.
type faultStream struct {
	Seed                     int
	Events, Machines, Humans int
	Duration                 string
	Labels                   bool
}

// faultConfig holds the test's own parts of the run config. The harness
// writes the source, state.dir, files, logging, shutdown_timeout, http and
// its secret-bearing outputs around them.
type faultConfig struct {
	// State is the state section's further fields, e.g.
	// "checkpoint_interval: 150ms, checkpoint_events: 2000".
	State string
	// Events also writes files.events.
	Events bool
	// Outputs are the test's own alert outputs (YAML list items indented
	// by four spaces) and DefaultOutputs their names; the harness adds its
	// own to both.
	Outputs        string
	DefaultOutputs []string
	// Extra is further top-level YAML (detectors, rules).
	Extra string
}

// Known secret values of every fault run. They are long and distinctive so
// that finding one anywhere is a leak, never a coincidence.
const (
	faultSlackSecret = "faultSlackWebhookSecret9f8e7d6c5b4a"
	faultHECToken    = "fa17fa17-fault-hec-token-5e5e5e5e5e5e"
	faultHookBearer  = "fault-webhook-bearer-secret-7a7a7a7a"
	faultHookQuery   = "faultWebhookQuerySecret6b6b6b6b"
	faultVaultToken  = "hvs.faultVaultTokenSecret3c3c3c3c3c3c"
	faultAWSSecret   = "faultAWSSecretAccessKey2d2d2d2d2d2d2d2d"
	faultQueryToken  = "faultQueryEndpointToken1e1e1e1e1e1e1e"
	faultEchoMarker  = "request was: "
)

func newFaultRun(t *testing.T, s faultStream) *faultRun {
	t.Helper()
	if testing.Short() {
		t.Skip("fault test builds and kills the binary; not run with -short")
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("kill schedule seed %d", seed)
	f := &faultRun{
		t:        t,
		Work:     t.TempDir(),
		rng:      rand.New(rand.NewPCG(uint64(s.Seed), seed)),
		HTTPAddr: freeAddr(t),
	}
	f.Data = filepath.Join(f.Work, "generated.log")
	f.Live = filepath.Join(f.Work, "live", "audit.log")
	f.State = filepath.Join(f.Work, "state")
	f.Findings = filepath.Join(f.Work, "findings.jsonl")
	f.Events = filepath.Join(f.Work, "events.jsonl")
	f.Config = filepath.Join(f.Work, "run.yaml")
	if err := os.MkdirAll(filepath.Dir(f.Live), 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{"generate", "--format", "mixed", "--seed", fmt.Sprint(s.Seed), "--events", fmt.Sprint(s.Events),
		"--machines", fmt.Sprint(s.Machines), "--humans", fmt.Sprint(s.Humans), "--duration", s.Duration}
	if s.Labels {
		f.Labels = filepath.Join(f.Work, "labels.jsonl")
		args = append(args, "--labels", f.Labels)
	}
	out, err := os.Create(f.Data)
	if err != nil {
		t.Fatal(err)
	}
	var genErr bytes.Buffer
	code := run(args, nil, out, &genErr)
	out.Close()
	f.genLog = genErr.String()
	if code != 0 {
		t.Fatalf("generate: exit %d: %s", code, genErr.String())
	}
	if m := regexp.MustCompile(`learning period ends (\S+)`).FindStringSubmatch(genErr.String()); m != nil {
		f.LearnUntil = m[1]
	}
	if f.Raw, err = os.ReadFile(f.Data); err != nil {
		t.Fatal(err)
	}
	f.secretRun = newSecretRun(t)
	return f
}

// WriteConfig writes the run config. The tail keeps the shipped
// idle_flush (2 s): with 500 ms, a stall of the appender under load could
// release a request entry before its response was written, and the
// request and its response became two events (one dated by the
// response), whose findings the uninterrupted replay never raises.
func (f *faultRun) WriteConfig(c faultConfig) {
	f.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, `sources:
  - name: live
    type: filetail
    filetail: {path: %q, poll_interval: 50ms}
state: {dir: %q`, f.Live, f.State)
	if c.State != "" {
		b.WriteString(", " + c.State)
	}
	fmt.Fprintf(&b, "}\nfiles: {findings: %q", f.Findings)
	if c.Events {
		fmt.Fprintf(&b, ", events: %q", f.Events)
	}
	fmt.Fprintf(&b, `}
logging: {level: warn, format: text}
shutdown_timeout: 10s
http: {listen: %q}
alerts:
  outputs:
`, f.HTTPAddr)
	b.WriteString(c.Outputs)
	if c.Outputs != "" && !strings.HasSuffix(c.Outputs, "\n") {
		b.WriteString("\n")
	}
	b.WriteString(f.OutputsYAML())
	outs := append(append([]string(nil), c.DefaultOutputs...), f.OutputNames()...)
	fmt.Fprintf(&b, "  default_outputs: [%s]\n", strings.Join(outs, ", "))
	if c.Extra != "" {
		b.WriteString(c.Extra)
		if !strings.HasSuffix(c.Extra, "\n") {
			b.WriteString("\n")
		}
	}
	if err := os.WriteFile(f.Config, []byte(b.String()), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

// Replay runs an uninterrupted replay of the whole stream with the config:
// the reference the faulted run must match.
func (f *faultRun) Replay() []schema.Finding {
	f.t.Helper()
	want, stderr, code := replay(f.t, f.t.Context(), "--config", f.Config, f.Data)
	f.mu.Lock()
	f.replays = append(f.replays, stderr)
	f.mu.Unlock()
	if code != 0 {
		f.t.Fatalf("replay: exit %d: %s", code, stderr)
	}
	return want
}

// Append appends the stream to the live file in about chunks random-sized
// pieces (cutting lines anywhere), 50 ms apart; the channel closes when
// all is written.
func (f *faultRun) Append(chunks int) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		out, err := os.OpenFile(f.Live, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			f.t.Error(err)
			return
		}
		defer out.Close()
		step := max(len(f.Raw)/chunks, 2)
		for off := 0; off < len(f.Raw); {
			n := min(len(f.Raw)-off, step/2+rand.IntN(step))
			if _, err := out.Write(f.Raw[off : off+n]); err != nil {
				f.t.Error(err)
				return
			}
			off += n
			time.Sleep(50 * time.Millisecond)
		}
	}()
	return done
}

// Start starts `auditwatch run` with the config.
func (f *faultRun) Start() {
	f.t.Helper()
	f.p = f.secretRun.Start("run", "--config", f.Config)
	f.procs = append(f.procs, f.p)
}

// Process is the running process.
func (f *faultRun) Process() *process { return f.p }

// KillRandomly SIGKILLs and restarts the process up to n times, each after
// min plus a random part of spread, while more (nil: always) says so. It
// returns the number of kills.
func (f *faultRun) KillRandomly(n int, min, spread time.Duration, more func() bool) int {
	kills := 0
	for kills < n && (more == nil || more()) {
		time.Sleep(min + time.Duration(f.rng.Int64N(int64(spread))))
		f.p.kill()
		kills++
		f.Start()
	}
	return kills
}

// WaitUntil polls done every 200 ms until it holds or limit passes (a
// guard, not a timing assertion); it reports whether done held.
// KilledRun is the body of a SIGKILL test: it appends the stream in
// chunks while the process is started and killed (kills times, min plus
// up to spread apart), waits up to catchUp for keep(findings) to reach
// want findings, leaves settle for any extra finding to show, stops the
// process (Stop's secret grep included) and returns keep(findings) and
// the number of kills. keep nil keeps every finding.
func (f *faultRun) KilledRun(chunks, kills int, min, spread, catchUp, settle time.Duration, want int, keep func([]schema.Finding) []schema.Finding) ([]schema.Finding, int) {
	if keep == nil {
		keep = func(fs []schema.Finding) []schema.Finding { return fs }
	}
	appended := f.Append(chunks)
	f.Start()
	killed := f.KillRandomly(kills, min, spread, nil)
	<-appended
	f.WaitUntil(catchUp, func() bool { return len(keep(readFindings(f.t, f.Findings))) >= want })
	time.Sleep(settle) // anything extra would show now
	f.Stop(nil)
	return keep(readFindings(f.t, f.Findings)), killed
}

func (f *faultRun) WaitUntil(limit time.Duration, done func() bool) bool {
	deadline := time.Now().Add(limit)
	for !done() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(200 * time.Millisecond)
	}
	return true
}

// Scrape reads /metrics of the running process; Stop scrapes too. Every
// scrape is grepped for the secrets.
func (f *faultRun) Scrape() string {
	f.t.Helper()
	m := httpGet(f.t, "http://"+f.HTTPAddr+"/metrics")
	f.mu.Lock()
	f.scrapes = append(f.scrapes, m)
	f.mu.Unlock()
	return m
}

// Stop scrapes the metrics, stops the process with SIGTERM (a clean exit
// is required) and greps everything the runs produced for the secrets;
// extra names further outputs of the test (e.g. Slack posts, syslog).
func (f *faultRun) Stop(extra map[string]string) {
	f.t.Helper()
	f.Scrape()
	f.p.stop(f.t)
	f.GrepSecrets(extra)
}

// GrepSecrets fails the test when any secret value appears in a log of
// any process started, a file under Work, a metrics scrape, a payload the
// harness's servers received, or extra. It first checks that the faults
// that put credentials into error paths did happen.
func (f *faultRun) GrepSecrets(extra map[string]string) {
	f.t.Helper()
	places := map[string]string{}
	for i, p := range f.procs {
		places[fmt.Sprintf("log of process %d", i+1)] = p.stderr.String()
	}
	places["generate's log"] = f.genLog
	for i, r := range f.replays {
		places[fmt.Sprintf("replay log %d", i+1)] = r
	}
	f.mu.Lock()
	for i, m := range f.scrapes {
		places[fmt.Sprintf("metrics scrape %d", i+1)] = m
	}
	f.mu.Unlock()
	for k, v := range extra {
		places[k] = v
	}
	// the config is input: the webhook URL's query token is written in it
	f.Grep(places, f.Work, f.Config)
}

// assertSameFindings checks got holds each finding of want exactly once
// and nothing else, naming at most five of each kind of difference.
// findingEvidence is what tells two findings of one rule and group apart:
// their time, evidence and attributes.
func findingEvidence(f schema.Finding) string {
	return fmt.Sprintf("time %s evidence %v attributes %v", f.Time.Format(time.RFC3339Nano), f.EventIDs, f.Attributes)
}

func assertSameFindings(t *testing.T, got, want []schema.Finding) {
	t.Helper()
	count := map[string]int{}
	for _, f := range got {
		count[f.ID]++
	}
	dups := 0
	for id, n := range count {
		if n != 1 {
			if dups++; dups <= 5 {
				t.Errorf("finding %s written %d times", id, n)
			}
		}
	}
	wantIDs := map[string]bool{}
	missing := 0
	for _, f := range want {
		wantIDs[f.ID] = true
		if count[f.ID] == 0 {
			if missing++; missing <= 5 {
				t.Errorf("missing finding %s: %s %s rev %d %s; %s", f.ID, f.Detector, f.Principal, f.Revision, f.Summary, findingEvidence(f))
			}
		}
	}
	extra := 0
	for _, f := range got {
		if !wantIDs[f.ID] {
			if extra++; extra <= 5 {
				t.Errorf("finding %s not in the uninterrupted replay: %s %s rev %d %s; %s", f.ID, f.Detector, f.Principal, f.Revision, f.Summary, findingEvidence(f))
			}
		}
	}
	if dups+missing+extra > 0 {
		t.Errorf("%d written more than once, %d missing, %d extra of %d", dups, missing, extra, len(want))
	}
}
