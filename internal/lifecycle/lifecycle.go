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

// Run starts every component, waits for ctx to end or a component to
// fail, and stops them all. It returns the first failure (a start error,
// a component's error, or a stop that missed the deadline), nil after a
// clean stop requested through ctx.
func (m *Manager) Run(ctx context.Context) error {
	log := m.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if m.ShutdownTimeout <= 0 {
		return errors.New("lifecycle: ShutdownTimeout must be positive")
	}
	// failed receives each component's unexpected end.
	failed := make(chan error, len(m.components))
	var run []*started
	var failure error
	for _, c := range m.components {
		if err := ctx.Err(); err != nil {
			break
		}
		if c.Start != nil {
			if err := c.Start(ctx); err != nil {
				failure = fmt.Errorf("%s: start: %w", c.Name, err)
				break
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
					failed <- fmt.Errorf("%s: %w", c.Name, err)
				}
				s.done <- err
			}()
		}
		run = append(run, s)
	}
	if failure == nil && ctx.Err() == nil {
		if m.Ready != nil {
			m.Ready(true)
		}
		log.Info("running", "components", len(run))
		select {
		case <-ctx.Done():
			log.Info("shutting down", "deadline", m.ShutdownTimeout)
		case failure = <-failed:
			log.Error("stopping after a failure", "err", failure)
		}
	}
	if m.Ready != nil {
		m.Ready(false)
	}
	if err := m.stop(run); failure == nil {
		failure = err
	}
	if failure == nil {
		log.Info("stopped")
	}
	return failure
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
