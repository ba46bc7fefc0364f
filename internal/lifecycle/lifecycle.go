// Package lifecycle owns how a command starts and stops its long-running
// components: they start one after another in the order added (a
// component's Start returns when it is ready for the next to use it), the
// process is ready once all have started, and a stop — the context ending,
// or any component failing — stops them in reverse order within one
// shutdown deadline, so producers stop before the consumers they feed.
// The first failure is the command's error; a component that does not stop
// by the deadline is reported by name.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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

	components []Component
	run        []*started
	failed     chan error
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
	if m.ShutdownTimeout <= 0 {
		return errors.New("lifecycle: ShutdownTimeout must be positive")
	}
	if m.failed == nil {
		m.failed = make(chan error, 64)
	}
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
			failed := m.failed
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
				s.done <- err
			}()
		}
		m.run = append(m.run, s)
	}
	return nil
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
		log.Info("running", "components", len(m.run))
		select {
		case <-ctx.Done():
			log.Info("shutting down", "deadline", m.ShutdownTimeout)
		case failure = <-m.failed:
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
	run := m.run
	m.run = nil
	err := m.stop(run)
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

// stop stops the started components in reverse order within the shutdown
// deadline and returns the first error of a stop.
func (m *Manager) stop(run []*started) error {
	sctx, cancel := context.WithTimeout(context.Background(), m.ShutdownTimeout)
	defer cancel()
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
				return fmt.Errorf("%s did not stop within %v", s.c.Name, m.ShutdownTimeout)
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
