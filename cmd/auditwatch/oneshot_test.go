package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"auditwatch/config"
	"auditwatch/internal/lifecycle"
)

// stuckWriter is a reader on the other end of a pipe that stopped
// reading: the first Write blocks until release.
type stuckWriter struct {
	once    sync.Once
	entered chan struct{}
	release chan struct{}
}

func (w *stuckWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.entered) })
	<-w.release
	return len(p), nil
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// fakeJobClock makes the one-shot commands' shutdown deadline expire
// when the test says so.
func fakeJobClock(t *testing.T) (asked <-chan time.Duration, fire chan<- time.Time) {
	a, f := make(chan time.Duration, 4), make(chan time.Time, 4)
	jobAfter = func(d time.Duration) <-chan time.Time { a <- d; return f }
	t.Cleanup(func() { jobAfter = nil })
	return a, f
}

// TestOneShotShutdownDeadline: `generate --rate` writing to a consumer
// that stopped reading is stopped (SIGTERM: its context ends) and cannot
// finish its write; the command does not hang but exits 1 at the shutdown
// deadline, naming what did not stop.
func TestOneShotShutdownDeadline(t *testing.T) {
	asked, fire := fakeJobClock(t)
	out := &stuckWriter{entered: make(chan struct{}), release: make(chan struct{})}
	var errb syncBuffer
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	codes := make(chan int, 1)
	go func() {
		codes <- runGenerate(ctx, []string{"--format", "vault", "--rate", "2000", "--events", "100000", "--anomalies=false"}, nil, out, &errb)
	}()
	select {
	case <-out.entered:
	case code := <-codes:
		t.Fatalf("generate exited %d without writing:\n%s", code, errb.String())
	}
	cancel()
	if d := <-asked; d != config.DefaultShutdownTimeout {
		t.Errorf("deadline %v, want shutdown_timeout's default %v", d, config.DefaultShutdownTimeout)
	}
	select {
	case code := <-codes:
		t.Fatalf("generate exited %d before its deadline passed, while stuck in a write:\n%s", code, errb.String())
	default:
	}
	fire <- time.Time{}
	code := <-codes
	if want := "auditwatch generate: generate did not stop within 15s\n"; code != 1 || errb.String() != want {
		t.Errorf("exit %d, stderr %q; want 1, %q", code, errb.String(), want)
	}
	close(out.release) // the stuck write returns; generate ends on its own
}

// TestOneShotErrors: a one-shot command's failures reach its exit code
// and stderr through the manager.
func TestOneShotErrors(t *testing.T) {
	// A resource that fails to open: the store the query needs.
	noConfigAnywhere(t)
	code, _, stderr := runCmd(t, "query", "blast-radius", "--principal", "x", "--addr", "127.0.0.1:1")
	if code != 1 || !strings.Contains(stderr, "auditwatch query: storage: open clickhouse backend") || !strings.Contains(stderr, "connection refused") {
		t.Errorf("query with its store unreachable: exit %d\n%s", code, stderr)
	}

	// A resource that fails to close after the work succeeded fails the
	// command; a work's own exit code is kept.
	var errb bytes.Buffer
	var steps []string
	code = oneShot(t.Context(), "load", &errb, func(ctx context.Context, j *lifecycle.Job) int {
		if _, err := jobOpen(j, "store", func(context.Context) (string, error) { steps = append(steps, "open store"); return "db", nil },
			func(string) error { steps = append(steps, "close store"); return errors.New("flush failed") }); err != nil {
			t.Fatal(err)
		}
		if _, err := jobOpen(j, "writer", func(context.Context) (int, error) { steps = append(steps, "open writer"); return 0, nil },
			func(int) error { steps = append(steps, "close writer"); return nil }); err != nil {
			t.Fatal(err)
		}
		steps = append(steps, "work")
		return 0
	})
	if code != 1 || errb.String() != "auditwatch load: store: stop: flush failed\n" {
		t.Errorf("close failure: exit %d, stderr %q", code, errb.String())
	}
	if got := strings.Join(steps, ", "); got != "open store, open writer, work, close writer, close store" {
		t.Errorf("order: %s", got)
	}
	errb.Reset()
	code = oneShot(t.Context(), "deadletter", &errb, func(context.Context, *lifecycle.Job) int { return 3 })
	if code != 3 || errb.Len() != 0 {
		t.Errorf("work's exit code: %d, stderr %q", code, errb.String())
	}
	// A resource whose open fails is not closed, and the error is the
	// one open returned (commands print it as before).
	errb.Reset()
	closed := false
	code = oneShot(t.Context(), "migrate", &errb, func(ctx context.Context, j *lifecycle.Job) int {
		_, err := jobOpen(j, "store", func(context.Context) (int, error) { return 0, errors.New("dial refused") },
			func(int) error { closed = true; return nil })
		if err == nil || err.Error() != "dial refused" {
			t.Errorf("jobOpen = %v", err)
		}
		return 1
	})
	if code != 1 || closed || errb.Len() != 0 {
		t.Errorf("open failure: exit %d, closed %v, stderr %q", code, closed, errb.String())
	}
}

// noConfigAnywhere makes config discovery find nothing: no
// $AUDITWATCH_CONFIG, and a search list of paths that do not exist (the
// machine's own /etc/auditwatch/config.yaml must not count).
func noConfigAnywhere(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	old := configSearch
	configSearch = []string{filepath.Join(dir, "auditwatch.yaml"), filepath.Join(dir, "etc", "config.yaml")}
	t.Cleanup(func() { configSearch = old })
	t.Setenv("AUDITWATCH_CONFIG", "")
}

// TestDispatchRunsJobs: the dispatcher runs every command not marked as
// a daemon as a lifecycle job, also one whose body does not ask for it;
// a body wrapped with asJob joins that job instead of starting another.
func TestDispatchRunsJobs(t *testing.T) {
	var jobs []*lifecycle.Job
	body := func(ctx context.Context, _ []string, _ io.Reader, _, _ io.Writer) int {
		j, _ := ctx.Value(jobKey{}).(*lifecycle.Job)
		jobs = append(jobs, j)
		return 0
	}
	register("test-plain", command{summary: "test", run: body})
	register("test-wrapped", command{summary: "test", run: asJob("test-wrapped", func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
		return body(ctx, args, stdin, stdout, stderr)
	})})
	register("test-daemon", command{summary: "test", run: body, daemon: true})
	t.Cleanup(func() {
		delete(commands, "test-plain")
		delete(commands, "test-wrapped")
		delete(commands, "test-daemon")
	})
	for _, name := range []string{"test-plain", "test-wrapped", "test-daemon"} {
		if code, _, stderr := runCmd(t, name); code != 0 {
			t.Fatalf("%s: exit %d: %s", name, code, stderr)
		}
	}
	if jobs[0] == nil || jobs[1] == nil {
		t.Errorf("a one-shot command ran without a job: %v", jobs)
	}
	if jobs[2] != nil {
		t.Error("a daemon ran as a job")
	}
	// A direct call of a wrapped body (as tests make) gets a job of its
	// own.
	commands["test-wrapped"].run(t.Context(), nil, nil, io.Discard, io.Discard)
	if len(jobs) != 4 || jobs[3] == nil {
		t.Errorf("a direct call of a wrapped body ran without a job: %v", jobs)
	}
}
