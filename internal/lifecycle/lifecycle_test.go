package lifecycle

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorder notes the order of lifecycle steps.
type recorder struct {
	mu    sync.Mutex
	steps []string
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	r.steps = append(r.steps, s)
	r.mu.Unlock()
}

func (r *recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.steps, " ")
}

// worker is a component that records start, run end and stop, and runs
// until cancelled (or returns runErr after fail is closed).
func worker(r *recorder, name string, fail <-chan struct{}, runErr error) Component {
	return Component{
		Name:  name,
		Start: func(context.Context) error { r.add("start:" + name); return nil },
		Run: func(ctx context.Context) error {
			select {
			case <-ctx.Done():
				r.add("end:" + name)
				return ctx.Err()
			case <-fail:
				r.add("fail:" + name)
				return runErr
			}
		},
		Stop: func(context.Context) error { r.add("stop:" + name); return nil },
	}
}

func TestOrderAndReadiness(t *testing.T) {
	var r recorder
	ctx, cancel := context.WithCancel(t.Context())
	m := &Manager{ShutdownTimeout: 5 * time.Second, Ready: func(b bool) {
		if b {
			r.add("ready")
			cancel() // the signal arrives once everything runs
		} else {
			r.add("unready")
		}
	}}
	m.Add(worker(&r, "http", nil, nil), worker(&r, "detect", nil, nil), worker(&r, "source", nil, nil))
	if err := m.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	want := "start:http start:detect start:source ready unready end:source stop:source end:detect stop:detect end:http stop:http"
	if got := r.String(); got != want {
		t.Errorf("steps:\n got %s\nwant %s", got, want)
	}
}

func TestFailureStopsAll(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name   string
		runErr error
		want   string
	}{
		{"error", boom, "detect: boom"},
		{"nil return", nil, "detect: stopped unexpectedly"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r recorder
			fail := make(chan struct{})
			m := &Manager{ShutdownTimeout: 5 * time.Second, Ready: func(b bool) {
				if b {
					close(fail)
				}
			}}
			m.Add(worker(&r, "http", nil, nil), worker(&r, "detect", fail, tc.runErr), worker(&r, "source", nil, nil))
			err := m.Run(t.Context())
			if err == nil || err.Error() != tc.want {
				t.Fatalf("Run = %v, want %q", err, tc.want)
			}
			if tc.runErr != nil && !errors.Is(err, boom) {
				t.Errorf("Run's error does not wrap the component's: %v", err)
			}
			if tc.runErr == nil && !errors.Is(err, ErrStoppedUnexpectedly) {
				t.Errorf("Run = %v, want ErrStoppedUnexpectedly", err)
			}
			want := "start:http start:detect start:source fail:detect end:source stop:source stop:detect end:http stop:http"
			if got := r.String(); got != want {
				t.Errorf("steps:\n got %s\nwant %s", got, want)
			}
		})
	}
}

func TestMayFinish(t *testing.T) {
	var r recorder
	ctx, cancel := context.WithCancel(t.Context())
	finished, judged := make(chan struct{}), make(chan struct{})
	m := &Manager{ShutdownTimeout: 5 * time.Second}
	m.judged = func(name string) {
		if name == "dir" {
			close(judged)
		}
	}
	m.Add(worker(&r, "detect", nil, nil), Component{
		Name:      "dir",
		MayFinish: true,
		Run: func(context.Context) error {
			r.add("done:dir")
			close(finished)
			return nil
		},
	})
	errc := make(chan error, 1)
	go func() { errc <- m.Run(ctx) }()
	<-finished
	<-judged
	// Had the finish counted as a failure, it would now be waiting for
	// Run, or Run would return it.
	if len(m.failed) != 0 {
		t.Fatalf("the finish was taken for a failure: %v", <-m.failed)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got, want := r.String(), "start:detect done:dir end:detect stop:detect"; got != want {
		t.Errorf("steps:\n got %s\nwant %s", got, want)
	}
}

func TestStartFailureStopsStarted(t *testing.T) {
	var r recorder
	m := &Manager{ShutdownTimeout: 5 * time.Second, Ready: func(b bool) {
		if b {
			t.Error("ready after a start failure")
		}
	}}
	m.Add(worker(&r, "http", nil, nil), Component{
		Name:  "store",
		Start: func(context.Context) error { return errors.New("locked") },
		Stop:  func(context.Context) error { r.add("stop:store"); return nil },
	}, worker(&r, "source", nil, nil))
	err := m.Run(t.Context())
	if err == nil || err.Error() != "store: start: locked" {
		t.Fatalf("Run = %v, want store: start: locked", err)
	}
	if got, want := r.String(), "start:http end:http stop:http"; got != want {
		t.Errorf("steps:\n got %s\nwant %s", got, want)
	}
}

func TestShutdownDeadline(t *testing.T) {
	var r recorder
	ctx, cancel := context.WithCancel(t.Context())
	release := make(chan struct{})
	defer close(release)
	clock := newFakeClock()
	m := &Manager{ShutdownTimeout: 50 * time.Millisecond, After: clock.After, Ready: func(b bool) {
		if b {
			cancel()
		}
	}}
	go clock.FireWhenWaited()
	stuckDone := make(chan struct{})
	m.Add(worker(&r, "http", nil, nil), Component{
		Name: "stuck",
		Run: func(context.Context) error {
			defer close(stuckDone)
			<-release // ignores its context
			return nil
		},
	})
	err := m.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "stuck did not stop within 50ms") {
		t.Fatalf("Run = %v, want the stuck component named", err)
	}
	// The components before the stuck one were cancelled too.
	deadline := time.After(5 * time.Second)
	for !strings.Contains(r.String(), "end:http") {
		select {
		case <-deadline:
			t.Fatalf("http was not cancelled after the deadline: %s", r.String())
		case <-time.After(time.Millisecond):
		}
	}
	release <- struct{}{}
	<-stuckDone
}

func TestStopErrorReported(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	m := &Manager{ShutdownTimeout: time.Second, Ready: func(b bool) {
		if b {
			cancel()
		}
	}}
	m.Add(Component{Name: "writer", Stop: func(context.Context) error { return errors.New("flush failed") }})
	if err := m.Run(ctx); err == nil || err.Error() != "writer: stop: flush failed" {
		t.Fatalf("Run = %v, want writer: stop: flush failed", err)
	}
}

func TestCancelledBeforeStart(t *testing.T) {
	var r recorder
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	m := &Manager{ShutdownTimeout: time.Second}
	m.Add(worker(&r, "a", nil, nil))
	if err := m.Run(ctx); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if got := r.String(); got != "" {
		t.Errorf("components started after cancellation: %s", got)
	}
}

func TestNoShutdownTimeout(t *testing.T) {
	if err := (&Manager{}).Run(t.Context()); err == nil {
		t.Fatal("Run without ShutdownTimeout succeeded")
	}
}

// TestPhasedStart: a command starts its HTTP endpoint, then does its
// set-up, then starts the rest; the stop covers every phase in reverse,
// and Stop after a failed set-up stops what had started.
func TestPhasedStart(t *testing.T) {
	var r recorder
	ctx, cancel := context.WithCancel(t.Context())
	m := &Manager{ShutdownTimeout: 5 * time.Second, Ready: func(b bool) {
		if b {
			r.add("ready")
			cancel()
		}
	}}
	if err := m.Start(ctx, worker(&r, "http", nil, nil)); err != nil {
		t.Fatal(err)
	}
	r.add("setup")
	if err := m.Start(ctx, worker(&r, "detect", nil, nil)); err != nil {
		t.Fatal(err)
	}
	if err := m.Wait(ctx); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if got, want := r.String(), "start:http setup start:detect ready end:detect stop:detect end:http stop:http"; got != want {
		t.Errorf("steps:\n got %s\nwant %s", got, want)
	}
	if err := m.Stop(nil); err != nil {
		t.Errorf("second Stop: %v", err)
	}

	var r2 recorder
	m2 := &Manager{ShutdownTimeout: 5 * time.Second}
	if err := m2.Start(t.Context(), worker(&r2, "http", nil, nil)); err != nil {
		t.Fatal(err)
	}
	setupErr := errors.New("store locked")
	if err := m2.Stop(setupErr); err != setupErr {
		t.Fatalf("Stop(cause) = %v, want the cause", err)
	}
	if got, want := r2.String(), "start:http end:http stop:http"; got != want {
		t.Errorf("steps:\n got %s\nwant %s", got, want)
	}
}

// fakeClock is the shutdown deadline's clock: a deadline expires when the
// test fires it, never on its own.
type fakeClock struct {
	asked chan time.Duration
	fire  chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{asked: make(chan time.Duration, 8), fire: make(chan time.Time, 8)}
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.asked <- d
	return c.fire
}

// FireWhenWaited expires the first deadline asked for.
func (c *fakeClock) FireWhenWaited() {
	<-c.asked
	c.fire <- time.Time{}
}

// A job: the added components start first, the work opens more in order,
// and when the work returns everything stops in reverse order.
func TestJobOrder(t *testing.T) {
	var r recorder
	m := &Manager{ShutdownTimeout: time.Second}
	m.Add(worker(&r, "http", nil, nil))
	err := m.RunJob(t.Context(), "load", func(ctx context.Context, j *Job) error {
		if err := j.Open(worker(&r, "store", nil, nil), Component{Name: "writer",
			Start: func(context.Context) error { r.add("start:writer"); return nil },
			Stop:  func(context.Context) error { r.add("stop:writer"); return nil }}); err != nil {
			return err
		}
		r.add("work")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "start:http start:store start:writer work stop:writer end:store stop:store end:http stop:http"
	if got := r.String(); got != want {
		t.Errorf("steps:\n got %s\nwant %s", got, want)
	}
}

// The work's error is the job's; a stop error does not hide it, and what
// the work opened is stopped.
func TestJobErrorPropagates(t *testing.T) {
	var r recorder
	boom := errors.New("boom")
	m := &Manager{ShutdownTimeout: time.Second}
	err := m.RunJob(t.Context(), "load", func(ctx context.Context, j *Job) error {
		j.Open(Component{Name: "store", Stop: func(context.Context) error { r.add("stop:store"); return errors.New("close failed") }})
		return boom
	})
	if !errors.Is(err, boom) || r.String() != "stop:store" {
		t.Fatalf("RunJob = %v, steps %q; want boom and the store stopped", err, r.String())
	}
	// Without a work error, the stop error is the job's.
	m = &Manager{ShutdownTimeout: time.Second}
	err = m.RunJob(t.Context(), "load", func(ctx context.Context, j *Job) error {
		return j.Open(Component{Name: "store", Stop: func(context.Context) error { return errors.New("close failed") }})
	})
	if err == nil || err.Error() != "store: stop: close failed" {
		t.Fatalf("RunJob = %v, want the stop error", err)
	}
	// A Start error reaches the work, named.
	m = &Manager{ShutdownTimeout: time.Second}
	err = m.RunJob(t.Context(), "load", func(ctx context.Context, j *Job) error {
		return j.Open(Component{Name: "store", Start: func(context.Context) error { return boom }})
	})
	if !errors.Is(err, boom) || err.Error() != "store: start: boom" {
		t.Fatalf("RunJob = %v, want the named start error", err)
	}
}

// A component the work opened failing cancels the work; the failure is
// the job's error, and the rest stops in order.
func TestJobComponentFailure(t *testing.T) {
	var r recorder
	fail := make(chan struct{})
	m := &Manager{ShutdownTimeout: time.Second}
	err := m.RunJob(t.Context(), "query", func(ctx context.Context, j *Job) error {
		if err := j.Open(worker(&r, "server", fail, errors.New("connection lost"))); err != nil {
			return err
		}
		close(fail)
		<-ctx.Done()
		r.add("work cancelled")
		return ctx.Err()
	})
	if err == nil || err.Error() != "server: connection lost" {
		t.Fatalf("RunJob = %v, want the server's failure", err)
	}
	if got, want := r.String(), "start:server fail:server work cancelled stop:server"; got != want {
		t.Errorf("steps:\n got %s\nwant %s", got, want)
	}
}

// ctx ending cancels the work; what it opened stops after it returns, and
// a requested stop is no failure.
func TestJobCancel(t *testing.T) {
	var r recorder
	ctx, cancel := context.WithCancel(t.Context())
	m := &Manager{ShutdownTimeout: time.Second}
	err := m.RunJob(ctx, "replay", func(wctx context.Context, j *Job) error {
		j.Open(worker(&r, "state", nil, nil))
		cancel()
		<-wctx.Done()
		r.add("work stopped")
		return wctx.Err()
	})
	if err != nil {
		t.Fatalf("RunJob = %v after a requested stop", err)
	}
	if got, want := r.String(), "start:state work stopped end:state stop:state"; got != want {
		t.Errorf("steps:\n got %s\nwant %s", got, want)
	}
}

// A work that ignores the stop fails the job at the deadline (set from
// the config once the work has read it), named; what it opened is
// cancelled but not stopped, since the work may still use it.
func TestJobShutdownDeadline(t *testing.T) {
	var r recorder
	ctx, cancel := context.WithCancel(t.Context())
	clock := newFakeClock()
	m := &Manager{ShutdownTimeout: time.Second, After: clock.After}
	release, workDone := make(chan struct{}), make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- m.RunJob(ctx, "generate", func(_ context.Context, j *Job) error {
			defer close(workDone)
			j.SetShutdownTimeout(3 * time.Second)
			j.Open(worker(&r, "output", nil, nil))
			cancel()
			<-release // ignores its context
			return nil
		})
	}()
	if d := <-clock.asked; d != 3*time.Second {
		t.Errorf("deadline %v, want the 3s the work set", d)
	}
	clock.fire <- time.Time{}
	err := <-errc
	if err == nil || err.Error() != "generate did not stop within 3s" {
		t.Fatalf("RunJob = %v, want the work named", err)
	}
	for !strings.Contains(r.String(), "end:output") {
		time.Sleep(time.Millisecond) // the cancelled Run ends on its own goroutine
	}
	if strings.Contains(r.String(), "stop:output") {
		t.Errorf("output stopped under a running work: %s", r.String())
	}
	close(release)
	<-workDone
}
