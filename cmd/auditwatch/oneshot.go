package main

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"auditwatch/config"
	"auditwatch/internal/escape"
	"auditwatch/internal/lifecycle"
)

// jobAfter is the clock of the one-shot commands' shutdown deadline (nil:
// the wall clock; tests inject one).
var jobAfter func(time.Duration) <-chan time.Time

// jobKey is the context key of the job a one-shot command runs in.
type jobKey struct{}

// oneShot runs a one-shot command's work as a job of the lifecycle
// manager, as the daemons run their components: what the work opens
// through the job starts in order and stops in reverse order when the
// work returns; SIGTERM or SIGINT cancels the work, which with what it
// opened must stop within the shutdown deadline (shutdown_timeout's
// default, or the config's once the work sets it), else the command exits
// 1 naming what did not stop. The exit code is the work's; a failure only
// the manager saw (a deadline missed, a component's Run or Stop failing)
// is printed and makes it 1. Within a job already (the dispatcher runs
// every non-daemon command as one), work joins it.
func oneShot(ctx context.Context, name string, stderr io.Writer, work func(ctx context.Context, j *lifecycle.Job) int) int {
	if j, ok := ctx.Value(jobKey{}).(*lifecycle.Job); ok && j != nil {
		// already a job (the dispatcher made it): the same one
		return work(ctx, j)
	}
	var code atomic.Int32
	m := &lifecycle.Manager{ShutdownTimeout: config.DefaultShutdownTimeout, After: jobAfter}
	err := m.RunJob(ctx, name, func(ctx context.Context, j *lifecycle.Job) error {
		code.Store(int32(work(context.WithValue(ctx, jobKey{}, j), j)))
		return nil
	})
	c := int(code.Load())
	if err != nil {
		fmt.Fprintf(stderr, "auditwatch %s: %s\n", name, escape.String(escape.Terminal, err.Error()))
		if c == 0 {
			c = 1
		}
	}
	return c
}

// ownJob makes a command that another's work runs (backtest's replays)
// a job of its own, so what it opens stops when it returns rather than
// with the calling command.
func ownJob(ctx context.Context) context.Context {
	return context.WithValue(ctx, jobKey{}, (*lifecycle.Job)(nil))
}

// subJob runs work within a command as a job of its own: what it opens
// starts in order and stops in reverse order when it returns, within the
// shutdown deadline (backtest's export closes its store before the
// replays start).
func subJob(ctx context.Context, name string, work func(context.Context, *lifecycle.Job) error) error {
	m := &lifecycle.Manager{ShutdownTimeout: config.DefaultShutdownTimeout, After: jobAfter}
	return m.RunJob(ctx, name, work)
}

// commandFunc is a subcommand's body.
type commandFunc func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int

// jobFunc is the body of a one-shot command that opens what it uses
// through its job.
type jobFunc func(ctx context.Context, j *lifecycle.Job, args []string, stdin io.Reader, stdout, stderr io.Writer) int

// asJob runs body as the one-shot command name (see oneShot).
func asJob(name string, body commandFunc) commandFunc {
	return withJob(name, func(ctx context.Context, _ *lifecycle.Job, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
		return body(ctx, args, stdin, stdout, stderr)
	})
}

// withJob runs body as the one-shot command name, handing it the job.
func withJob(name string, body jobFunc) commandFunc {
	return func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
		return oneShot(ctx, name, stderr, func(ctx context.Context, j *lifecycle.Job) int {
			return body(ctx, j, args, stdin, stdout, stderr)
		})
	}
}

// The one-shot commands: every subcommand but the daemons (run, ingest,
// detect, alert), which run their components on the manager themselves.
var (
	runBacktest   = withJob("backtest", backtestMain)
	runBaseline   = withJob("baseline", baselineMain)
	checkConfig   = asJob("check-config", checkConfigMain)
	runDeadletter = withJob("deadletter", deadletterMain)
	runGenerate   = asJob("generate", generateMain)
	runLoad       = withJob("load", loadMain)
	runMigrate    = withJob("migrate", migrateMain)
	runNormalize  = asJob("normalize", normalizeMain)
	runQuery      = withJob("query", queryMain)
	runReplay     = withJob("replay", replayMain)
	runRules      = asJob("rules", rulesMain)
	runTrail      = asJob("trail", trailMain)
	runVersion    = asJob("version", versionMain)
)

// jobOpen opens a resource as the job's component name: open runs as its
// Start, close as its Stop once the work has returned (or at the
// shutdown), and a close error fails the command. A start error is
// returned unwrapped, so commands print it as they always have.
func jobOpen[T any](j *lifecycle.Job, name string, open func(ctx context.Context) (T, error), close func(T) error) (T, error) {
	var v T
	var openErr error
	err := j.Open(lifecycle.Component{
		Name: name,
		Start: func(ctx context.Context) error {
			v, openErr = open(ctx)
			return openErr
		},
		Stop: func(context.Context) error { return close(v) },
	})
	if openErr != nil {
		return v, openErr
	}
	return v, err
}
