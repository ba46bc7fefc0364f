package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"auditwatch/alert/slack/slacktest"
	"auditwatch/gen"
	"auditwatch/internal/testenv"
	"auditwatch/schema"
)

// liveInput is a Vault/OpenBao audit log split where its history ends:
// the history (learned before the monitor starts), the rest (appended
// live, holding the injected anomalies) and filler (routine traffic
// after the rest, appended while the anomalies' alerts travel).
type liveInput struct {
	what              string
	history, rest     [][]byte // lines, each with its newline
	filler            [][]byte
	anomalies         []string // ids of the injected anomalies in rest
	explains          func(f schema.Finding) []string
	restStart, filled time.Time // event time of the rest's first and the filler's last line
}

// vaultLine is what the appender needs of an audit line.
type vaultLine struct {
	Time    time.Time `json:"time"`
	Type    string    `json:"type"`
	Request struct {
		ID string `json:"id"`
	} `json:"request"`
}

func splitLines(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			out = append(out, append(b[:len(b):len(b)], '\n'))
			break
		}
		out = append(out, b[:i+1])
		b = b[i+1:]
	}
	return out
}

// splitAt cuts lines at the first line dated at or after end where no
// recent request waits for its response (a pair is not split; a request
// that never got one, 10 s before, does not count).
func splitAt(t testing.TB, lines [][]byte, end time.Time) (history, rest [][]byte) {
	t.Helper()
	open := map[string]time.Time{}
	for i, l := range lines {
		var v vaultLine
		if err := json.Unmarshal(l, &v); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		for id, at := range open {
			if v.Time.Sub(at) > 10*time.Second {
				delete(open, id)
			}
		}
		if !v.Time.Before(end) && len(open) == 0 {
			return lines[:i], lines[i:]
		}
		switch v.Type {
		case "request":
			open[v.Request.ID] = v.Time
		case "response":
			delete(open, v.Request.ID)
		}
	}
	t.Fatalf("no line after %s", end)
	return nil, nil
}

// generateVault runs `auditwatch generate --format vault` with args and
// returns its lines, its labels and the end of its learning period.
func generateVault(t testing.TB, dir, name string, args ...string) ([][]byte, []gen.Label, time.Time) {
	t.Helper()
	out, labels := filepath.Join(dir, name+".log"), filepath.Join(dir, name+".labels.jsonl")
	var stderr bytes.Buffer
	args = append([]string{"generate", "--format", "vault", "--out", out, "--labels", labels}, args...)
	if code := run(args, nil, io.Discard, &stderr); code != 0 {
		t.Fatalf("generate %v: exit %d: %s", args, code, stderr.String())
	}
	m := regexp.MustCompile(`learning period ends (\S+)`).FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("generate names no learning end: %s", stderr.String())
	}
	end, err := time.Parse(time.RFC3339Nano, m[1])
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lf, err := os.Open(labels)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	ls, err := gen.ReadLabels(lf)
	if err != nil {
		t.Fatal(err)
	}
	return splitLines(raw), ls, end
}

func lastTime(t testing.TB, lines [][]byte) time.Time {
	t.Helper()
	var v vaultLine
	if err := json.Unmarshal(lines[len(lines)-1], &v); err != nil {
		t.Fatal(err)
	}
	return v.Time
}

// loadLiveInput takes the shared corpus's recorded OpenBao log when the
// corpus is there (its warm-up is the history, its labelled incidents the
// anomalies), else a log of the project's generator (its learning period
// the history, its labels the anomalies). fillerRequests of generated
// routine traffic (no anomalies) follow the rest in event time.
func loadLiveInput(t testing.TB, work string, forceGenerated bool, genArgs []string, fillerRequests int) liveInput {
	t.Helper()
	var in liveInput
	corpus, ok := "", false
	if !forceGenerated {
		var dir string
		if tt, isT := t.(*testing.T); isT {
			dir, ok = testenv.LookupSharedTestdata(tt)
		} else {
			dir = filepath.Join(testenv.RepoRoot(t), "..", "shared", "testdata")
			_, err := os.Stat(dir)
			ok = err == nil
		}
		corpus = filepath.Join(dir, "vault", "openbao-scenario")
	}
	seed := "41"
	if ok {
		raw, err := os.ReadFile(filepath.Join(corpus, "audit.log"))
		if err != nil {
			t.Fatal(err)
		}
		in.what = "recorded OpenBao log " + filepath.Join(corpus, "audit.log")
		end, err := time.Parse(time.RFC3339Nano, scenarioLearnUntil)
		if err != nil {
			t.Fatal(err)
		}
		in.history, in.rest = splitAt(t, splitLines(raw), end)
		labels := loadLabels(t.(*testing.T), filepath.Join(corpus, "labels.jsonl"))
		for _, l := range labels {
			if l.Anomaly {
				in.anomalies = append(in.anomalies, l.ID)
			}
		}
		in.explains = func(f schema.Finding) []string {
			var ids []string
			for _, l := range labels {
				if l.Anomaly && l.explains(f) {
					ids = append(ids, l.ID)
				}
			}
			return ids
		}
	} else {
		// History and anomalies in the past few hours, ending before now.
		start := time.Now().UTC().Add(-3 * time.Hour).Truncate(time.Second)
		lines, labels, end := generateVault(t, work, "generated",
			append([]string{"--seed", seed, "--start", start.Format(time.RFC3339), "--duration", "90m"}, genArgs...)...)
		in.what = "generated Vault log (auditwatch generate --seed " + seed + ")"
		in.history, in.rest = splitAt(t, lines, end)
		for _, l := range labels {
			in.anomalies = append(in.anomalies, l.ID)
		}
		in.explains = func(f schema.Finding) []string {
			var ids []string
			for _, l := range labels {
				if genLabelFound(l, f, l.Detector) || slices.ContainsFunc(l.AlsoMatches, func(d string) bool { return genLabelFound(l, f, d) }) {
					ids = append(ids, l.ID)
				}
			}
			return ids
		}
	}
	in.restStart = lastTime(t, in.history)
	if fillerRequests > 0 {
		from := lastTime(t, in.rest).Add(time.Second)
		lines, _, _ := generateVault(t, work, "filler", "--seed", seed, "--anomalies=false", "--rollouts=false",
			"--events", strconv.Itoa(fillerRequests), "--start", from.Format(time.RFC3339Nano), "--duration", "1h")
		in.filler = lines
		in.filled = lastTime(t, lines)
	}
	return in
}

// liveMonitor is `auditwatch run` with deploy/run.example.yaml as shipped
// (paths changed only) plus output blocks, run from its own directory so
// the example's relative paths (auditwatch-state/...) land there.
type liveMonitor struct {
	work, cfg, metrics string
	findings, audit    string
	cmd                *exec.Cmd
	stderr             *lockedWriter
	done               chan error
	baselineLog        string // what `auditwatch baseline` printed
}

// writeExampleConfig writes deploy/run.example.yaml with only paths
// changed — the scenario directory source points at an empty directory
// (the test appends its log through the file tail instead), the metrics
// listener at a free port — and outputs appended.
func writeExampleConfig(t testing.TB, work, outputs string) (cfgPath, metrics string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "deploy", "run.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(raw)
	empty := filepath.Join(work, "scenario-empty")
	if err := os.MkdirAll(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	metrics = freeAddrTB(t)
	for old, repl := range map[string]string{
		"path: testdata/openbao-scenario": "path: " + empty,
		"127.0.0.1:9464":                  metrics,
	} {
		if !strings.Contains(cfg, old) {
			t.Fatalf("deploy/run.example.yaml no longer holds %q", old)
		}
		cfg = strings.ReplaceAll(cfg, old, repl)
	}
	if strings.Contains(cfg, "\nalerts:") {
		t.Fatal("deploy/run.example.yaml has an alerts: section now; merge the test's outputs into it")
	}
	cfgPath = filepath.Join(work, "run.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg+outputs), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfgPath, metrics
}

// startLiveMonitor learns history as a user would (`auditwatch baseline`
// into run's detector state) and starts `auditwatch run`.
func startLiveMonitor(t testing.TB, bin, work, cfgPath, metrics string, history [][]byte) *liveMonitor {
	t.Helper()
	return startLiveMonitorEnv(t, nil, bin, work, cfgPath, metrics, history)
}

// startLiveMonitorEnv is startLiveMonitor with the processes' environment
// (nil: the test's).
func startLiveMonitorEnv(t testing.TB, env []string, bin, work, cfgPath, metrics string, history [][]byte) *liveMonitor {
	t.Helper()
	if os.Getenv("CHDB_LIB_PATH") == "" {
		testenv.Missing(t, "CHDB_LIB_PATH is not set: libchdb.so (the example's embedded storage) not available")
	}
	m := &liveMonitor{work: work, cfg: cfgPath, metrics: metrics, stderr: &lockedWriter{w: &bytes.Buffer{}}, done: make(chan error, 1),
		findings: filepath.Join(work, "auditwatch-state", "findings.jsonl"),
		audit:    filepath.Join(work, "auditwatch-state", "vault-audit.log")}
	hist := filepath.Join(work, "history.log")
	if err := os.WriteFile(hist, bytes.Join(history, nil), 0o644); err != nil {
		t.Fatal(err)
	}
	// The recorded log is older than baseline's default 30 days soon.
	base := exec.Command(bin, "baseline", "--config", cfgPath, "--since", "3650d", hist)
	base.Dir = work
	base.Env = env
	out, err := base.CombinedOutput()
	if err != nil {
		t.Fatalf("auditwatch baseline: %v\n%s", err, out)
	}
	m.baselineLog = string(out)
	if err := os.MkdirAll(filepath.Dir(m.audit), 0o755); err != nil {
		t.Fatal(err)
	}
	m.cmd = exec.Command(bin, "run", "--config", cfgPath)
	m.cmd.Dir = work
	m.cmd.Env = env
	m.cmd.Stdout = io.Discard
	m.cmd.Stderr = m.stderr
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { m.done <- m.cmd.Wait() }()
	t.Cleanup(func() {
		if m.cmd.ProcessState == nil {
			m.cmd.Process.Kill()
			<-m.done
		}
	})
	return m
}

func (m *liveMonitor) stop(t testing.TB) {
	t.Helper()
	m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-m.done:
		if err != nil {
			t.Fatalf("auditwatch run exited with %v:\n%s", err, m.stderr.String())
		}
	case <-time.After(30 * time.Second):
		m.cmd.Process.Kill()
		t.Fatalf("auditwatch run did not stop within 30s:\n%s", m.stderr.String())
	}
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}

// appender writes lines to the audit file at a rate and remembers when
// each request's last line was written (a Vault event is complete with
// its response).
type appender struct {
	mu     sync.Mutex
	lineOf map[string]int // request id -> index of its last line
	ends   []int          // chunk k wrote the lines before ends[k]
	times  []time.Time    // when chunk k was written
	lines  int
}

func newAppender() *appender { return &appender{} }

// run appends lines at rate lines/s until done or stop is closed; it
// returns the number of lines written. Lines go out in timed chunks (every
// 20 ms, all lines due by then, so a late wake-up catches up in one
// write) of one contiguous buffer prepared before the first; each line's
// write time is its chunk's. Nothing per line is done while appending, so
// the appender keeps the rate on a loaded machine.
func (a *appender) run(t testing.TB, path string, lines [][]byte, rate int, stop <-chan struct{}) int {
	out, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Error(err)
		return 0
	}
	defer out.Close()
	lineOf := make(map[string]int, len(lines)/2)
	offs := make([]int, len(lines)+1)
	size := 0
	for _, l := range lines {
		size += len(l)
	}
	all := make([]byte, 0, size)
	for i, l := range lines {
		var v vaultLine
		if json.Unmarshal(l, &v) == nil && v.Request.ID != "" {
			lineOf[v.Request.ID] = i
		}
		all = append(all, l...)
		offs[i+1] = len(all)
	}
	a.mu.Lock()
	a.lineOf = lineOf
	a.mu.Unlock()
	const step = 20 * time.Millisecond
	begin := time.Now()
	for i := 0; i < len(lines); {
		select {
		case <-stop:
			return i
		default:
		}
		// Catch up with the schedule: lines due by now.
		due := min(len(lines), int(float64(rate)*time.Since(begin).Seconds())+1)
		if due <= i {
			time.Sleep(step)
			continue
		}
		if _, err := out.Write(all[offs[i]:offs[due]]); err != nil {
			t.Error(err)
			return i
		}
		now := time.Now()
		a.mu.Lock()
		if len(a.times) == 0 {
			a.times = append(a.times, begin)
			a.ends = append(a.ends, 0)
		}
		a.ends = append(a.ends, due)
		a.times = append(a.times, now)
		a.lines = due
		a.mu.Unlock()
		i = due
	}
	return len(lines)
}

// rate is the lines per second written between the start of run and its
// last chunk.
func (a *appender) rate() float64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.times) < 2 {
		return 0
	}
	d := a.times[len(a.times)-1].Sub(a.times[0]).Seconds()
	if d <= 0 {
		return 0
	}
	return float64(a.lines) / d
}

// appendedAt is when the latest of a finding's evidence events was
// complete in the file (zero when none was appended live).
func (a *appender) appendedAt(f schema.Finding) time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	var at time.Time
	for _, id := range f.EventIDs {
		i, ok := a.lineOf[id]
		if !ok {
			continue
		}
		// the first chunk whose end is past line i wrote it
		k, _ := slices.BinarySearch(a.ends, i+1)
		if k < len(a.times) && a.times[k].After(at) {
			at = a.times[k]
		}
	}
	return at
}

// slackPostKeys counts Slack posts per finding revision, read from the
// message metadata Slack stores (a post that carries several updates of
// one incident counts for each).
func slackPostKeys(srv *slacktest.Server) map[string]int {
	out := map[string]int{}
	for _, m := range srv.Posts() {
		for _, r := range m.Revisions() {
			out[r]++
		}
	}
	return out
}

// arrivals stamps when each finding revision first shows in an output,
// polling every 10 ms.
type arrivals struct {
	mu   sync.Mutex
	seen map[string]map[string]time.Time // output -> finding/rev -> first seen
}

func (a *arrivals) note(output string, keys []string, at time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.seen == nil {
		a.seen = map[string]map[string]time.Time{}
	}
	m := a.seen[output]
	if m == nil {
		m = map[string]time.Time{}
		a.seen[output] = m
	}
	for _, k := range keys {
		if _, ok := m[k]; !ok {
			m[k] = at
		}
	}
}

func (a *arrivals) at(output, key string) (time.Time, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.seen[output][key]
	return t, ok
}

// findingsByKey reads the findings file keyed by finding/revision.
func findingsByKey(t testing.TB, path string) (map[string]schema.Finding, int) {
	t.Helper()
	out := map[string]schema.Finding{}
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	lines := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var f schema.Finding
		if json.Unmarshal(sc.Bytes(), &f) != nil {
			continue
		}
		lines++
		out[f.ID+"/"+strconv.Itoa(f.Revision)] = f
	}
	return out, lines
}

// TestRunExampleLiveSlack runs `auditwatch run` with
// deploy/run.example.yaml as shipped (paths changed only) plus a Slack
// output in bot mode against the local Slack Web API. The detectors'
// history is learned as a user would, with `auditwatch baseline` over the
// first part of a recorded OpenBao log (the shared corpus's scenario;
// the project's generator without the corpus); the rest, with its
// injected anomalies, is appended to the tailed audit file at 1,000
// lines/s, followed by routine traffic at the same rate. Every injected
// anomaly must reach the findings file and Slack while appends continue;
// at the end every finding revision is in the file once and posted to
// Slack exactly once. The bot token and the known secrets of secretRun
// (its failing outputs beside Slack) appear nowhere the run writes.
func TestRunExampleLiveSlack(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; not run with -short")
	}
	work := t.TempDir()
	in := loadLiveInput(t, work, false, []string{"--events", "10000", "--anomaly-count", "8"}, 40000)
	const token = "xoxb-live-example-4c0ffee7"
	srv := slacktest.New(token)
	defer srv.Close()
	sec := newSecretRun(t)
	sec.SecretEnv("AW_LIVE_SLACK_TOKEN", token)
	cfgPath, metrics := writeExampleConfig(t, work, sec.AlertsYAML(fmt.Sprintf(`    - name: slack
      type: slack
      slack: {mode: bot, token: {env: AW_LIVE_SLACK_TOKEN}, channel: "#%s", api_url: %q}
`, slacktest.ChannelName, srv.APIURL()), "slack"))
	m := startLiveMonitorEnv(t, sec.Env(), auditwatchBinary(t), work, cfgPath, metrics, in.history)
	t.Logf("input: %s: %d history lines learned, %d lines with %d anomalies then %d filler lines appended at 1,000 lines/s",
		in.what, len(in.history), len(in.rest), len(in.anomalies), len(in.filler))

	app := newAppender()
	stop := make(chan struct{})
	appendDone := make(chan struct{})
	var appendEnd time.Time
	go func() {
		defer close(appendDone)
		app.run(t, m.audit, append(slices.Clip(in.rest), in.filler...), 1000, stop)
		appendEnd = time.Now()
	}()
	// Each anomaly: when one of its findings was first in the file and
	// first in Slack.
	inFile, inSlack := map[string]time.Time{}, map[string]time.Time{}
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		now := time.Now()
		fs, _ := findingsByKey(t, m.findings)
		posted := slackPostKeys(srv)
		for k, f := range fs {
			for _, id := range in.explains(f) {
				if _, ok := inFile[id]; !ok {
					inFile[id] = now
				}
				if _, ok := inSlack[id]; !ok && posted[k] > 0 {
					inSlack[id] = now
				}
			}
		}
		if len(inFile) == len(in.anomalies) && len(inSlack) == len(in.anomalies) {
			break
		}
		select {
		case <-appendDone:
			// Appends are over: whatever is missing now did not arrive
			// while they continued.
			deadline = time.Now()
		case <-time.After(100 * time.Millisecond):
		}
	}
	close(stop)
	<-appendDone
	for _, id := range in.anomalies {
		fa, okF := inFile[id]
		sa, okS := inSlack[id]
		switch {
		case !okF:
			t.Errorf("anomaly %s never reached the findings file while appends continued", id)
		case !okS:
			t.Errorf("anomaly %s never reached Slack while appends continued", id)
		case fa.After(appendEnd) || sa.After(appendEnd):
			t.Errorf("anomaly %s arrived after the appends ended", id)
		}
	}
	t.Logf("%d of %d anomalies in the findings file and %d in Slack while %d lines were appended", len(inFile), len(in.anomalies), len(inSlack), app.lines)

	// Every finding revision once in the file and exactly once in Slack:
	// let Slack drain (the shipped rate limit is one message a second per
	// channel), then stop the monitor cleanly.
	for drain := time.Now().Add(3 * time.Minute); time.Now().Before(drain); time.Sleep(500 * time.Millisecond) {
		fs, _ := findingsByKey(t, m.findings)
		posted := slackPostKeys(srv)
		all := len(fs) > 0
		for k := range fs {
			all = all && posted[k] > 0
		}
		if all {
			break
		}
	}
	time.Sleep(2 * time.Second) // a repeat would show now
	sec.WaitDeadLetters(work, time.Minute)
	sec.ScrapeMetrics(metrics)
	m.stop(t)
	var posts strings.Builder
	for _, p := range srv.Posts() {
		fmt.Fprintf(&posts, "%+v\n", p)
	}
	sec.Grep(map[string]string{"log of run": m.stderr.String(), "baseline's output": m.baselineLog,
		"Slack posts": posts.String()}, work, cfgPath)
	fs, fileLines := findingsByKey(t, m.findings)
	posted := slackPostKeys(srv)
	if fileLines != len(fs) {
		t.Errorf("findings file has %d lines for %d finding revisions: some written twice", fileLines, len(fs))
	}
	for k := range fs {
		switch n := posted[k]; {
		case n == 0:
			t.Errorf("finding %s never posted to Slack", k)
		case n > 1:
			t.Errorf("finding %s posted to Slack %d times", k, n)
		}
	}
	for k := range posted {
		if _, ok := fs[k]; !ok {
			t.Errorf("Slack post of %s, which is not in the findings file", k)
		}
	}
	t.Logf("%d finding revisions in the file, %d Slack posts, %d Slack requests", len(fs), len(srv.Posts()), srv.Requests())
}

// pollOutputs stamps, every 10 ms until stop, when each finding revision
// first shows in the findings file, in Slack (srv set) and in rsyslog's
// output file (rsyslogOut set).
func pollOutputs(t testing.TB, arr *arrivals, findings string, srv *slacktest.Server, rsyslogOut string, stop <-chan struct{}) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		now := time.Now()
		fs, _ := findingsByKey(t, findings)
		keys := make([]string, 0, len(fs))
		for k := range fs {
			keys = append(keys, k)
		}
		arr.note("file", keys, now)
		if srv != nil {
			keys = keys[:0]
			for k := range slackPostKeys(srv) {
				keys = append(keys, k)
			}
			arr.note("slack", keys, now)
		}
		if rsyslogOut != "" {
			keys = keys[:0]
			for k := range syslogKeys(t, rsyslogOut) {
				keys = append(keys, k)
			}
			arr.note("syslog", keys, now)
		}
		select {
		case <-stop:
			return
		case <-tick.C:
		}
	}
}
