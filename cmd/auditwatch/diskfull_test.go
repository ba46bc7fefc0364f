package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"auditwatch/internal/testenv"
)

// mountSmallFS mounts a tmpfs of size bytes at dir (unmounted at the end
// of the test): a real filesystem that runs out of space.
func mountSmallFS(t *testing.T, dir string, size int) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+strconv.Itoa(size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		testenv.Missing(t, "cannot mount a small tmpfs for a real full filesystem (needs root or CAP_SYS_ADMIN): %v: %s", err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
}

// fillFS writes path until the filesystem answers ENOSPC.
func fillFS(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 16<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling %s: %v, want ENOSPC", path, err)
			}
			return
		}
	}
}

var metricLine = func(name string) *regexp.Regexp {
	return regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(?:\{[^}]*\})? (\S+)$`)
}

func scrapedValue(t *testing.T, body, name string) float64 {
	t.Helper()
	m := metricLine(name).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("/metrics lacks %s", name)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestRunOutboxDiskFull runs `auditwatch run` with its alert outbox on a
// small real filesystem (tmpfs) and fills that filesystem while findings
// queue behind a failing webhook. Checked: the outbox write fails with
// ENOSPC, the detect checkpoint stops advancing
// (auditwatch_detect_stage_commits_total stays put), one log line names
// the outbox path and the free space, auditwatch_alert_outbox_write_failing
// is 1; once space is freed (and the webhook answers again) the process
// resumes by itself and every finding of an uninterrupted replay reaches
// the webhook (nothing lost). The run carries known secrets (secretRun:
// failing outputs beside the webhook) that appear nowhere it writes, the
// full disk's error paths included.
func TestRunOutboxDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; not run with -short")
	}
	sec := newSecretRun(t)
	work := t.TempDir()
	fsDir := filepath.Join(work, "small-fs")
	mountSmallFS(t, fsDir, 1<<20)

	var failing atomic.Bool
	var mu sync.Mutex
	got := map[string]int{}
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if failing.Load() {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		mu.Lock()
		got[strings.Replace(r.Header.Get("Idempotency-Key"), ":", "/", 1)]++
		mu.Unlock()
	}))
	defer hook.Close()
	delivered := func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		out := make(map[string]int, len(got))
		for k, v := range got {
			out[k] = v
		}
		return out
	}

	data := filepath.Join(work, "generated.log")
	var genErr bytes.Buffer
	if code := run([]string{"generate", "--format", "vault", "--seed", "31", "--events", "12000", "--anomaly-count", "12",
		"--duration", "5h", "--out", data}, nil, io.Discard, &genErr); code != 0 {
		t.Fatalf("generate: exit %d: %s", code, genErr.String())
	}
	learn := regexp.MustCompile(`learning period ends (\S+)`).FindStringSubmatch(genErr.String())
	if learn == nil {
		t.Fatalf("generate names no learning end: %s", genErr.String())
	}
	raw, err := os.ReadFile(data)
	if err != nil {
		t.Fatal(err)
	}
	live := filepath.Join(work, "audit.log")
	outbox := filepath.Join(fsDir, "outbox.db")
	httpAddr := freeAddr(t)
	cfgPath := filepath.Join(work, "run.yaml")
	cfg := fmt.Sprintf(`sources:
  - {name: live, type: filetail, format: vault, filetail: {path: %q}}
state: {dir: %q}
detectors:
  learn_until: %s
alerts:
  outbox_path: %q
  outputs:
    - {name: hook, type: webhook, webhook: {url: %q}}
%s  default_outputs: [hook, %s]
logging: {level: info, format: text}
http: {listen: %q}
`, live, filepath.Join(work, "state"), learn[1], outbox, hook.URL, sec.OutputsYAML(), strings.Join(sec.OutputNames(), ", "), httpAddr)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	want, stderr, code := replay(t, t.Context(), "--config", cfgPath, data)
	if code != 0 || len(want) < 10 {
		t.Fatalf("replay: exit %d, %d findings: %s", code, len(want), stderr)
	}

	p := sec.Start("run", "--config", cfgPath)
	appendTo := func(b []byte) {
		f, err := os.OpenFile(live, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	// The learning period and the first findings with room on the disk.
	lines := splitLines(raw)
	third := len(lines) / 3
	appendTo(bytes.Join(lines[:third], nil))
	for deadline := time.Now().Add(60 * time.Second); len(delivered()) == 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no finding delivered before the disk was filled:\n%s", p.log())
		}
	}
	// A checkpoint was taken with room on the disk.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if scrapedValue(t, httpGet(t, "http://"+httpAddr+"/metrics"), "auditwatch_detect_stage_commits_total") > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no detect checkpoint before the disk was filled:\n%s", p.log())
		}
	}
	// The webhook fails, so the outbox must grow; the disk is full.
	failing.Store(true)
	fillFS(t, filepath.Join(fsDir, "filler"))
	appendTo(bytes.Join(lines[third:], nil))
	const logLine = "alert outbox cannot be written"
	for deadline := time.Now().Add(60 * time.Second); !strings.Contains(p.log(), logLine); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no outbox write failure within 60s of filling the disk:\n%s", p.log())
		}
	}
	time.Sleep(time.Second)
	m1 := httpGet(t, "http://"+httpAddr+"/metrics")
	time.Sleep(3 * time.Second)
	m2 := httpGet(t, "http://"+httpAddr+"/metrics")
	c1, c2 := scrapedValue(t, m1, "auditwatch_detect_stage_commits_total"), scrapedValue(t, m2, "auditwatch_detect_stage_commits_total")
	f1, f2 := scrapedValue(t, m1, "auditwatch_alert_outbox_write_failing"), scrapedValue(t, m2, "auditwatch_alert_outbox_write_failing")
	// bbolt may still fit a small write into pages its file already
	// holds, so a write can succeed now and then on the full disk; while
	// writes keep failing the checkpoint must not move.
	switch {
	case f1 == 0 && f2 == 0:
		t.Errorf("auditwatch_alert_outbox_write_failing = 0 in both scrapes while the disk is full, want 1")
	case f1 == 1 && f2 == 1 && c1 != c2:
		t.Errorf("detect checkpoints advanced from %v to %v while the outbox could not be written", c1, c2)
	}
	logs := p.log()
	var failLines []string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, logLine) {
			failLines = append(failLines, l)
		}
	}
	if len(failLines) != 1 || !strings.Contains(failLines[0], "path="+outbox) || !regexp.MustCompile(`free="\d+ bytes"`).MatchString(failLines[0]) ||
		!strings.Contains(failLines[0], "no space left on device") {
		t.Errorf("want one log line (a minute) naming the outbox path, the free space and ENOSPC, got %d:\n%s", len(failLines), strings.Join(failLines, "\n"))
	}
	t.Logf("while full: %s", strings.Join(failLines, "\n"))

	// Room again: the process resumes by itself; nothing is lost.
	if err := os.Remove(filepath.Join(fsDir, "filler")); err != nil {
		t.Fatal(err)
	}
	failing.Store(false)
	wantKeys := findingKeys(want)
	for deadline := time.Now().Add(120 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		d := delivered()
		all := true
		for k := range wantKeys {
			all = all && d[k] > 0
		}
		if all {
			break
		}
	}
	m3 := httpGet(t, "http://"+httpAddr+"/metrics")
	if c3 := scrapedValue(t, m3, "auditwatch_detect_stage_commits_total"); c3 <= c2 {
		t.Errorf("detect checkpoints did not resume after space was freed (%v, was %v)", c3, c2)
	}
	if v := scrapedValue(t, m3, "auditwatch_alert_outbox_write_failing"); v != 0 {
		t.Errorf("auditwatch_alert_outbox_write_failing = %v after space was freed, want 0", v)
	}
	sec.WaitDeadLetters(work, 60*time.Second)
	p.stop(t)
	sec.Grep(map[string]string{"metrics while full (1)": m1, "metrics while full (2)": m2, "metrics after": m3,
		"replay's log": stderr}, work, cfgPath)
	d := delivered()
	lost, dups := 0, 0
	for k := range wantKeys {
		if d[k] == 0 {
			lost++
			t.Errorf("finding %s never delivered", k)
		}
	}
	for _, n := range d {
		if n > 1 {
			dups++
		}
	}
	t.Logf("%d finding revisions of the replay: %d lost, %d delivered more than once (webhook is at-least-once); checkpoints %v → %v (full) → resumed",
		len(wantKeys), lost, dups, c1, c2)
}

// log is what the running process has written to stderr so far (read
// under the writer's lock).
func (p *process) log() string { return p.cmd.Stderr.(*lockedWriter).String() }
