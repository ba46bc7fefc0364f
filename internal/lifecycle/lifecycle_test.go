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
	finished := make(chan struct{})
	m := &Manager{ShutdownTimeout: 5 * time.Second}
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
	select {
	case err := <-errc:
		t.Fatalf("Run returned %v when a component that may finish finished", err)
	case <-time.After(50 * time.Millisecond):
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
	m := &Manager{ShutdownTimeout: 50 * time.Millisecond, Ready: func(b bool) {
		if b {
			cancel()
		}
	}}
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
