package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"auditwatch/schema"
)

// auditwatchBinary is the command built once for the whole test binary
// (sharedBinary): every test that runs it as a process shares one build.
func auditwatchBinary(t *testing.T) string {
	t.Helper()
	return sharedBinary(t)
}

// built is the one build of the command (without the race detector: the
// processes under test are the product as shipped), made on first use in
// a directory TestMain removes.
var built struct {
	once sync.Once
	dir  string
	path string
	out  []byte
	err  error
}

// sharedBinary builds the command on first use and returns its path.
// Linking the binary takes seconds on a loaded machine; doing it once
// instead of once per test saves minutes of CI time.
func sharedBinary(tb testing.TB) string {
	tb.Helper()
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "auditwatch-test-bin-"); built.err != nil {
			return
		}
		built.path = filepath.Join(built.dir, "auditwatch")
		built.out, built.err = exec.Command("go", "build", "-o", built.path, ".").CombinedOutput()
	})
	if built.err != nil {
		tb.Fatalf("go build: %v\n%s", built.err, built.out)
	}
	return built.path
}

// binCmd runs the built command (sharedBinary) to completion, like
// runCmd does in process: for the heavy one-shot steps of end-to-end
// tests, which the race detector would slow several times over (the
// in-process tests of each command cover it under -race).
func binCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return runToEnd(t, exec.Command(sharedBinary(t), args...))
}

// runToEnd runs cmd to its end: its exit code and what it printed.
func runToEnd(t *testing.T, cmd *exec.Cmd) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", cmd.Args[1], err)
	}
	return code, out.String(), errb.String()
}

// replayBin is replay (the test helper) through the built command: for
// reference replays of large inputs, whose in-process run the race
// detector would slow (replay's own tests run it in process).
func replayBin(t *testing.T, args ...string) ([]schema.Finding, string, int) {
	t.Helper()
	code, out, errs := binCmd(t, append([]string{"replay"}, args...)...)
	return parseFindings(t, []byte(out)), errs, code
}

// removeSharedBinary deletes the build (TestMain, after the tests).
func removeSharedBinary() {
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
}

// freeAddr returns a free loopback host:port.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// process is a running auditwatch command.
type process struct {
	cmd *exec.Cmd
	// stderr is read while the process writes it (failure messages,
	// polls): through the writer's lock.
	stderr *lockedWriter
	done   chan error
}

// startAuditwatchEnv starts the built binary with args and the process's
// environment (nil: the test's). Tests start it through secretRun.Start,
// which passes the run's secrets and greps what the process logs.
func startAuditwatchEnv(t *testing.T, env []string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(auditwatchBinary(t), args...), stderr: &lockedWriter{w: &bytes.Buffer{}}, done: make(chan error, 1)}
	p.cmd.Env = env
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// stop sends SIGTERM and waits for a clean exit.
func (p *process) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("auditwatch exited with %v:\n%s", err, p.stderr)
		}
	case <-time.After(20 * time.Second):
		p.cmd.Process.Kill()
		t.Fatalf("auditwatch did not stop within 20s after SIGTERM:\n%s", p.stderr)
	}
}

// kill sends SIGKILL and waits.
func (p *process) kill() {
	p.cmd.Process.Kill()
	<-p.done
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// readFindings reads a findings file; a torn last line is ignored (the
// sink cuts it when it reopens the file).
func readFindings(t *testing.T, path string) []schema.Finding {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		t.Fatal(err)
	}
	var fs []schema.Finding
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var f schema.Finding
		if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
			continue
		}
		fs = append(fs, f)
	}
	return fs
}

// waitStable polls path until it holds at least want findings and has not
// changed for quiet, or fails after limit.
func waitFindings(t *testing.T, p *process, path string, want int, quiet, limit time.Duration) []schema.Finding {
	t.Helper()
	deadline := time.Now().Add(limit)
	var last []schema.Finding
	changed := time.Now()
	for time.Now().Before(deadline) {
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("auditwatch exited early (%v):\n%s", err, p.stderr)
		default:
		}
		fs := readFindings(t, path)
		if len(fs) != len(last) {
			last, changed = fs, time.Now()
		}
		if len(fs) >= want && time.Since(changed) >= quiet {
			return fs
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: %d findings after %v, want %d", path, len(last), limit, want)
	return nil
}

// TestRunOpenBaoScenario runs the built binary on the OpenBao scenario (a
// dir source on the embedded stream with the real detectors) and checks
// every labelled anomaly's findings appear in the findings file exactly
// once, the same 35 findings `replay` gives; a restart adds nothing. The
// run carries known secrets (secretRun) that appear nowhere it writes.
func TestRunOpenBaoScenario(t *testing.T) {
	t.Parallel()
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
	var (
		hookMu    sync.Mutex
		hookPosts int
	)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		hookMu.Lock()
		hookPosts++
		hookMu.Unlock()
	}))
	defer hook.Close()
	posts := func() int {
		hookMu.Lock()
		defer hookMu.Unlock()
		return hookPosts
	}
	cfgPath := filepath.Join(work, "run.yaml")
	sec := newSecretRun(t)
	cfg := fmt.Sprintf(`sources:
  - name: scenario
    type: dir
    format: vault
    dir: {path: %q, poll_interval: 200ms, settle_time: 100ms}
  - name: tail
    type: filetail
    filetail: {path: %q, poll_interval: 100ms}
state: {dir: %q, checkpoint_interval: 200ms, idle_drain: 1s}
detectors:
  learn_until: %s
  unexpected_ip: {learning_period: 1m}
  first_time_access: {learning_period: 1m}
  access_volume_spike: {learning_period: 1m}
alerts:
  outputs:
    - {name: hook, type: webhook, webhook: {url: %q}}
%s  default_outputs: [hook, %s]
files: {findings: %q}
http: {listen: %q}
logging: {level: info, format: text}
shutdown_timeout: 10s
`, drop, filepath.Join(work, "vault-audit.log"), filepath.Join(work, "state"), scenarioLearnUntil, hook.URL,
		sec.OutputsYAML(), strings.Join(sec.OutputNames(), ", "), findings, freeAddr(t))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}

	p := sec.Start("run", "--config", cfgPath)
	waitFindings(t, p, findings, 35, 3*time.Second, 60*time.Second)
	// The webhook has every finding before the stop (delivery follows the
	// findings file; on a loaded machine it may lag it by seconds), so the
	// restart below has nothing left to deliver.
	for deadline := time.Now().Add(60 * time.Second); posts() < 35; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the webhook got %d posts of 35 findings", posts())
		}
	}
	p.stop(t)
	places := map[string]string{"log of the first run": p.stderr.String()}
	fs := readFindings(t, findings)

	labels := loadLabels(t, filepath.Join(scen, "labels.jsonl"))
	ids := map[string]int{}
	perLabel := map[string]int{}
	for _, f := range fs {
		ids[f.ID]++
		by := ""
		for _, l := range labels {
			if l.Anomaly && l.explains(f) {
				by = l.ID
				break
			}
		}
		if by == "" {
			t.Errorf("finding no label explains: %s %s %s %s", f.Time.Format(time.RFC3339Nano), f.Detector, f.Principal, f.SourceIP)
		}
		perLabel[by]++
	}
	for id, n := range ids {
		if n != 1 {
			t.Errorf("finding %s written %d times, want once", id, n)
		}
	}
	want := map[string]int{"A1": 2, "A2": 1, "A3": 4, "A3b": 1, "A3c": 6, "A4": 15, "A5": 6}
	for id, n := range want {
		if perLabel[id] != n {
			t.Errorf("%s: %d findings, want %d", id, perLabel[id], n)
		}
	}
	if len(fs) != 35 {
		t.Errorf("%d findings, want 35", len(fs))
	}

	// The same findings as replay, id for id.
	rfs, stderr, code := replay(t, t.Context(), "--config", cfgPath, filepath.Join(scen, "audit.log"))
	if code != 0 {
		t.Fatalf("replay exit %d: %s", code, stderr)
	}
	rids := map[string]bool{}
	for _, f := range rfs {
		rids[f.ID] = true
		if ids[f.ID] == 0 {
			t.Errorf("replay finding %s (%s %s) missing from run", f.ID, f.Detector, f.Principal)
		}
	}
	for id := range ids {
		if !rids[id] {
			t.Errorf("run finding %s not raised by replay", id)
		}
	}

	// The alert router delivered to the webhook.
	delivered := posts()
	if delivered == 0 {
		t.Error("the alert router posted nothing to the webhook")
	}

	// A restart resumes after the file: nothing new.
	p = sec.Start("run", "--config", cfgPath)
	time.Sleep(3 * time.Second)
	p.stop(t)
	if n := len(readFindings(t, findings)); n != len(fs) {
		t.Errorf("after restart: %d findings, want %d", n, len(fs))
	}
	if n := posts(); n != delivered {
		t.Errorf("after restart: %d webhook posts, want still %d", n, delivered)
	}
	if !strings.Contains(p.stderr.String(), "msg=stopped") {
		t.Errorf("no clean stop logged:\n%s", p.stderr)
	}
	places["log of the restart"], places["replay's log"] = p.stderr.String(), stderr
	sec.Grep(places, work, cfgPath)
}
