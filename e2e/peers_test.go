package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"auditwatch/internal/testenv"
)

// buildBinary builds ./cmd/auditwatch (without the race detector: the
// processes under test are the product as shipped).
func buildBinary(t testing.TB, root string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "auditwatch")
	cmd := exec.Command("go", "build", "-o", path, "./cmd/auditwatch")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return path
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// proc is one running auditwatch process.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  *lockedBuffer
	done chan error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startProc starts bin with args and env added to the test's environment;
// it is killed when the test ends if still running.
func startProc(t testing.TB, name, bin string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, cmd: exec.Command(bin, args...), log: &lockedBuffer{}, done: make(chan error, 1)}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case err := <-p.done:
			p.done <- err
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// exited reports whether the process has ended, and how.
func (p *proc) exited() (error, bool) {
	select {
	case err := <-p.done:
		p.done <- err
		return err, true
	default:
		return nil, false
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop(t testing.TB) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Errorf("%s exited with %v:\n%s", p.name, err, p.log)
		}
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		t.Errorf("%s did not stop within 30s of SIGTERM:\n%s", p.name, p.log)
	}
}

// dumpStacks asks the process for every goroutine's stack (Go writes them
// to stderr on SIGQUIT and exits): what a stalled stage was waiting on.
func (p *proc) dumpStacks() {
	if _, ok := p.exited(); ok {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case err := <-p.done:
		p.done <- err
	case <-time.After(10 * time.Second):
	}
}

// waitReady polls the process's /readyz.
func (p *proc) waitReady(t testing.TB, addr string) {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if err, ok := p.exited(); ok {
			t.Fatalf("%s exited during start-up (%v):\n%s", p.name, err, p.log)
		}
		resp, err := c.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s not ready within 60s:\n%s", p.name, p.log)
}

// rsyslog is a real rsyslogd started for one test: plain TCP on loopback
// (octet-counted or LF framing), every message written as one JSON line.
type rsyslog struct {
	addr, out string
}

// startRsyslog runs rsyslogd in the foreground with its own config, pid
// file and work directory (scripts/setup/30-rsyslog.sh installs it; the
// system service is not used).
func startRsyslog(t testing.TB) rsyslog {
	t.Helper()
	bin := os.Getenv("AUDITWATCH_RSYSLOGD")
	if bin == "" {
		bin = "rsyslogd"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/rsyslogd"); serr != nil {
			testenv.Missing(t, "rsyslogd not found (scripts/setup/30-rsyslog.sh installs it): %v", err)
		}
		path = "/usr/sbin/rsyslogd"
	}
	dir := t.TempDir()
	work := filepath.Join(dir, "work")
	if err := os.Mkdir(work, 0o700); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.jsonl")
	portFile := filepath.Join(dir, "tcp.port")
	conf := fmt.Sprintf(`global(workDirectory=%q maxMessageSize="64k")
module(load="imtcp")
template(name="j" type="list" option.jsonf="on") {
  property(outname="app" name="app-name" format="jsonf")
  property(outname="msgid" name="msgid" format="jsonf")
  property(outname="msg" name="msg" format="jsonf")
}
ruleset(name="out") { action(type="omfile" file=%q template="j") }
input(type="imtcp" address="127.0.0.1" port="0" listenPortFileName=%q ruleset="out")
`, work, out, portFile)
	confPath := filepath.Join(dir, "rsyslog.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, path, "-n", "-f", confPath, "-i", filepath.Join(dir, "rsyslogd.pid"))
	var stderr lockedBuffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		cancel()
		testenv.Missing(t, "starting rsyslogd: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("rsyslogd did not stop")
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(portFile)
		if p := strings.TrimSpace(string(b)); err == nil && p != "" && p != "0" {
			return rsyslog{addr: net.JoinHostPort("127.0.0.1", p), out: out}
		}
		select {
		case <-done:
			t.Fatalf("rsyslogd exited: %s", stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("rsyslogd wrote no port file: %s", stderr.String())
	return rsyslog{}
}

// records returns the messages rsyslogd has written so far.
func (r rsyslog) records(t testing.TB) []string {
	t.Helper()
	f, err := os.Open(r.out)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var msgs []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var rec struct {
			Msg string `json:"msg"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			continue // a line being written
		}
		msgs = append(msgs, rec.Msg)
	}
	return msgs
}
