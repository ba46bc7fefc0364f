// Package lifecycle owns how a command starts and stops its long-running
// components: they start one after another in the order added (a
// component's Start returns when it is ready for the next to use it), the
// process is ready once all have started, and a stop — the context ending,
// or any component failing — stops them in reverse order within one
// shutdown deadline, so producers stop before the consumers they feed.
// The first failure is the command's error; a component that does not stop
// by the deadline is reported by name.
//
// A one-shot command (replay, load, query…) runs as a Job (RunJob): its
// work runs until it returns, opening what it uses through the Job (in
// order, each ready before the next); ctx ending cancels the work, and the
// work and then what it opened, in reverse order, must stop within the
// same shutdown deadline.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Component is one long-running part of a command.
type Component struct {
	// Name identifies the component in errors and logs.
	Name string
	// Start, when set, prepares the component and returns once it is ready
	// (listening, connected). A Start error stops what has started.
	Start func(ctx context.Context) error
	// Run, when set, does the component's work until ctx is cancelled. It
	// returns nil or ctx's error on a requested stop; any return before
	// that is a failure that stops every component, unless MayFinish.
	Run func(ctx context.Context) error
	// MayFinish lets Run return nil before the stop (a source that has
	// read everything): the others keep running.
	MayFinish bool
	// Stop, when set, runs after Run has returned (or, without Run, at
	// the component's turn in the stop order), with the remaining
	// shutdown deadline.
	Stop func(ctx context.Context) error
}

// Manager runs components. The zero value is not usable: set
// ShutdownTimeout.
type Manager struct {
	// ShutdownTimeout bounds the whole stop, from the signal to the last
	// component stopped.
	ShutdownTimeout time.Duration
	// Logger gets one line when running and when stopping; nil discards.
	Logger *slog.Logger
	// Ready, when set, is called with true once every component has
	// started and with false when the stop begins (a /readyz handler).
	Ready func(bool)
	// After is the clock of the shutdown deadline (nil: time.After);
	// tests inject one.
	After func(time.Duration) <-chan time.Time

	components []Component
	// judged, in tests, is told when a component's Run has returned and
	// been judged a failure or not.
	judged func(name string)
	mu     sync.Mutex // guards run and ShutdownTimeout once started
	run    []*started
	failed chan error
}

// Add appends components in start order.
func (m *Manager) Add(cs ...Component) { m.components = append(m.components, cs...) }

// ErrStoppedUnexpectedly is a component's Run returning nil before the
// stop while it may not finish.
var ErrStoppedUnexpectedly = errors.New("stopped unexpectedly")

// started is one component whose Run goroutine (if any) is running.
type started struct {
	c      Component
	cancel context.CancelFunc
	done   chan error // receives Run's result once; nil channel without Run
}

// Run starts every component added, waits for ctx to end or a component
// to fail, and stops them all. It returns the first failure (a start
// error, a component's error, or a stop that missed the deadline), nil
// after a clean stop requested through ctx.
func (m *Manager) Run(ctx context.Context) error {
	cs := m.components
	m.components = nil
	if err := m.Start(ctx, cs...); err != nil {
		return m.Stop(err)
	}
	return m.Wait(ctx)
}

// Start starts cs in order, after the components already started (a
// command starts its HTTP endpoint first, then opens its stores, then
// starts the rest). A Start error is returned wrapped with the
// component's name; the components started before it keep running until
// Stop or Wait.
func (m *Manager) Start(ctx context.Context, cs ...Component) error {
	if m.timeout() <= 0 {
		return errors.New("lifecycle: ShutdownTimeout must be positive")
	}
	m.mu.Lock()
	if m.failed == nil {
		m.failed = make(chan error, 64)
	}
	failed := m.failed
	m.mu.Unlock()
	for _, c := range cs {
		if err := ctx.Err(); err != nil {
			return nil
		}
		if c.Start != nil {
			if err := c.Start(ctx); err != nil {
				return fmt.Errorf("%s: start: %w", c.Name, err)
			}
		}
		s := &started{c: c}
		if c.Run != nil {
			// Components are cancelled by the manager, in order, not by
			// ctx: the stop order is what keeps handed-on work intact.
			cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
			s.cancel, s.done = cancel, make(chan error, 1)
			go func() {
				err := c.Run(cctx)
				if cctx.Err() == nil && (err != nil || !c.MayFinish) {
					if err == nil {
						err = ErrStoppedUnexpectedly
					}
					select {
					case failed <- fmt.Errorf("%s: %w", c.Name, err):
					default: // a failure is already waiting; the first counts
					}
				}
				if m.judged != nil {
					m.judged(c.Name)
				}
				s.done <- err
			}()
		}
		m.mu.Lock()
		m.run = append(m.run, s)
		m.mu.Unlock()
	}
	return nil
}

func (m *Manager) timeout() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ShutdownTimeout
}

// Wait marks the process ready, waits for ctx to end or a started
// component to fail, and stops every component.
func (m *Manager) Wait(ctx context.Context) error {
	log := m.logger()
	var failure error
	if ctx.Err() == nil {
		if m.Ready != nil {
			m.Ready(true)
		}
		m.mu.Lock()
		n, failed := len(m.run), m.failed
		m.mu.Unlock()
		log.Info("running", "components", n)
		select {
		case <-ctx.Done():
			log.Info("shutting down", "deadline", m.timeout())
		case failure = <-failed:
			log.Error("stopping after a failure", "err", failure)
		}
	}
	return m.Stop(failure)
}

// Stop stops every started component in reverse order within the
// shutdown deadline and returns cause, else the first error of a stop.
// Calling it again does nothing and returns nil.
func (m *Manager) Stop(cause error) error {
	if m.Ready != nil {
		m.Ready(false)
	}
	sctx, cancel := m.deadline()
	defer cancel()
	return m.stopWithin(sctx, cause)
}

// stopWithin is Stop within sctx's deadline.
func (m *Manager) stopWithin(sctx context.Context, cause error) error {
	m.mu.Lock()
	run := m.run
	m.run = nil
	m.mu.Unlock()
	err := m.stop(sctx, run)
	if cause == nil {
		cause = err
	}
	if cause == nil && len(run) > 0 {
		m.logger().Info("stopped")
	}
	return cause
}

func (m *Manager) logger() *slog.Logger {
	if m.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return m.Logger
}

// deadline returns a context that ends when the shutdown deadline, started
// now on the manager's clock, passes.
func (m *Manager) deadline() (context.Context, context.CancelFunc) {
	after := m.After
	if after == nil {
		after = time.After
	}
	expired := after(m.timeout())
	sctx, cancel := context.WithCancelCause(context.Background())
	go func() {
		select {
		case <-expired:
			cancel(context.DeadlineExceeded)
		case <-sctx.Done():
		}
	}()
	return sctx, func() { cancel(context.Canceled) }
}

// stop stops the started components in reverse order within sctx's
// deadline and returns the first error of a stop.
func (m *Manager) stop(sctx context.Context, run []*started) error {
	var first error
	for i := len(run) - 1; i >= 0; i-- {
		s := run[i]
		if s.done != nil {
			s.cancel()
			select {
			case err := <-s.done:
				if err != nil && !errors.Is(err, context.Canceled) && first == nil {
					// A failure already reported through failed is the
					// same error; Run's caller keeps the first anyway.
					first = fmt.Errorf("%s: %w", s.c.Name, err)
				}
			case <-sctx.Done():
				// Cancel the rest so nothing keeps running unasked.
				for j := i - 1; j >= 0; j-- {
					if run[j].cancel != nil {
						run[j].cancel()
					}
				}
				return fmt.Errorf("%s did not stop within %v", s.c.Name, m.timeout())
			}
		}
		if s.c.Stop != nil {
			if err := s.c.Stop(sctx); err != nil && first == nil {
				first = fmt.Errorf("%s: stop: %w", s.c.Name, err)
			}
		}
	}
	return first
}

// Job is a one-shot command's handle on its manager (see RunJob).
type Job struct {
	m   *Manager
	ctx context.Context
}

// Open starts cs in order, after what the job opened before (and the
// components added to the manager): each Start returns once the component
// is ready. Their Runs, if any, are supervised: one failing cancels the
// work and is the job's error. Everything opened is stopped in reverse
// order after the work returns. A Start error is returned wrapped with the
// component's name, and the component is not stopped.
func (j *Job) Open(cs ...Component) error { return j.m.Start(j.ctx, cs...) }

// SetShutdownTimeout changes the shutdown deadline (a command learns it
// from its config after it has started).
func (j *Job) SetShutdownTimeout(d time.Duration) {
	if d > 0 {
		j.m.mu.Lock()
		j.m.ShutdownTimeout = d
		j.m.mu.Unlock()
	}
}

// RunJob runs a one-shot command named name: the components added to the
// manager start first; then work runs until it returns, and its error is
// the job's. When ctx ends the work is cancelled; when a component fails,
// the work is cancelled and that failure is the job's error. Either way
// the work must return within the shutdown deadline, else the job fails
// naming it (and what the work opened is cancelled, not stopped: the work
// may still use it). Then everything is stopped in reverse order within
// what is left of the deadline (or a full one when the work finished by
// itself). A stop error is the job's error when the work succeeded.
func (m *Manager) RunJob(ctx context.Context, name string, work func(ctx context.Context, j *Job) error) error {
	cs := m.components
	m.components = nil
	if err := m.Start(ctx, cs...); err != nil {
		return m.Stop(err)
	}
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	m.mu.Lock()
	failed := m.failed
	m.mu.Unlock()
	done := make(chan error, 1)
	go func() { done <- work(wctx, &Job{m: m, ctx: wctx}) }()
	if m.Ready != nil {
		m.Ready(true)
	}
	var result error
	select {
	case result = <-done:
		return m.Stop(result)
	case <-ctx.Done():
		m.logger().Info("shutting down", "deadline", m.timeout())
	case result = <-failed:
		m.logger().Error("stopping after a failure", "err", result)
	}
	if m.Ready != nil {
		m.Ready(false)
	}
	cancel()
	sctx, stopDeadline := m.deadline()
	defer stopDeadline()
	select {
	case err := <-done:
		if result == nil && !errors.Is(err, context.Canceled) {
			result = err // a requested stop is no failure
		}
		return m.stopWithin(sctx, result)
	case <-sctx.Done():
		m.mu.Lock()
		for _, s := range m.run {
			if s.cancel != nil {
				s.cancel()
			}
		}
		m.run = nil
		m.mu.Unlock()
		return fmt.Errorf("%s did not stop within %v", name, m.timeout())
	}
}
