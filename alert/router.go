// Package alert owns the alert stage. Its parts, one file each:
//
//   - router.go: the Router, the finding sink of the pipeline. It routes
//     each finding (route.go), drops silenced ones (silence.go), numbers
//     repeats of one incident (group.go) and writes the resulting alerts
//     once, fsynced, to the outbox (alert/outbox), one queue per output.
//     The caller's checkpoint advances after that write, not after
//     delivery.
//   - worker.go: one delivery worker per output drains its own queue with
//     its own retries, backoff and rate limit, records each delivery in the
//     idempotency ledger (alert/ledger) and writes what it cannot deliver
//     to the dead-letter file (alert/deadletter). A slow or dead output
//     delays only its own queue.
//   - replay.go: resending dead letters (`auditwatch deadletter resend`).
//
// The `alerts:` configuration section is defined in config.go. Each output
// lives in its own package (alert/slack, alert/hec, alert/syslog,
// alert/webhook, alert/kafka) and makes one delivery attempt per call;
// what they share (the Alert type, error classification, the retry loop)
// is in alert/notify.
package alert

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"auditwatch/alert/deadletter"
	"auditwatch/alert/hec"
	"auditwatch/alert/kafka"
	"auditwatch/alert/ledger"
	"auditwatch/alert/notify"
	"auditwatch/alert/outbox"
	"auditwatch/alert/slack"
	"auditwatch/alert/syslog"
	"auditwatch/alert/webhook"
	"auditwatch/schema"
)

// Notifier delivers one alert to one output, making one attempt; the
// output's worker retries according to notify.Classify.
type Notifier interface {
	Notify(ctx context.Context, a notify.Alert) error
}

// EventSender delivers a batch of raw events to a SIEM output, making one
// attempt for the whole batch.
type EventSender interface {
	SendEvents(ctx context.Context, evs []schema.Event) error
}

// ErrInUse is returned by New when another process holds the ledger (a
// running stage): `deadletter resend` then asks that process to resend
// (RequestResend).
var ErrInUse = ledger.ErrInUse

// ErrClosed is returned by a closed router.
var ErrClosed = errors.New("alert router is closed")

type output struct {
	name    string
	typ     string
	minSev  schema.Severity
	n       Notifier
	ev      EventSender
	retry   notify.Retry
	closeFn func() error
	w       *worker
}

// Router takes findings and raw events from the pipeline. Safe for
// concurrent use.
type Router struct {
	cfg     Config
	log     *slog.Logger
	clock   notify.Clock
	m       *metrics
	ledger  *ledger.Ledger
	dlq     *deadletter.File
	box     *outbox.Outbox
	groups  *grouper
	outputs map[string]*output
	order   []string

	base       context.Context // cancelled by Close: in-flight deliveries stop
	cancelBase context.CancelFunc
	workers    sync.WaitGroup

	fullMu     sync.Mutex
	fullLogged time.Time // last "outbox cannot be written" log

	closeOnce sync.Once
	cmu       sync.RWMutex
	closed    bool
	// qmu makes numbering findings in their groups and queueing them one
	// step: WriteFindings runs concurrently (one call per findings-topic
	// partition, and one incident's findings spread over partitions), and
	// a group's first alert queued after one of its updates would be
	// delivered after it (a second Slack thread for the incident).
	qmu sync.Mutex
}

// Option changes how New builds the router.
type Option func(*options)

type options struct {
	clock      notify.Clock
	notifiers  map[string]any
	boxOpts    []outbox.Option
	noWorkers  bool
	retryPause time.Duration
}

// WithClock replaces the wall clock (tests compress outages with it).
func WithClock(c notify.Clock) Option { return func(o *options) { o.clock = c } }

// WithOutput replaces the output built for name with n (a Notifier and/or
// an EventSender), for tests and embedders.
func WithOutput(name string, n any) Option {
	return func(o *options) {
		if o.notifiers == nil {
			o.notifiers = map[string]any{}
		}
		o.notifiers[name] = n
	}
}

// WithOutboxOptions passes options to the outbox (fault injection).
func WithOutboxOptions(opts ...outbox.Option) Option {
	return func(o *options) { o.boxOpts = append(o.boxOpts, opts...) }
}

// WithoutDelivery builds a router whose outbox is not drained (the
// dead-letter command resends directly and leaves the queues to the
// running stage).
func WithoutDelivery() Option { return func(o *options) { o.noWorkers = true } }

// New validates cfg, opens the ledger, the outbox and the dead-letter
// file, builds every output and starts one delivery worker per output.
func New(cfg Config, logger *slog.Logger, reg prometheus.Registerer, opts ...Option) (*Router, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	o := options{retryPause: time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	if o.clock == nil {
		o.clock = notify.RealClock{}
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("alert metrics: %w", err)
	}
	r := &Router{cfg: cfg, log: logger, clock: o.clock, m: m, outputs: map[string]*output{},
		groups: newGrouper(cfg.GroupWindow.D(), cfg.MaxGroups, m)}
	r.base, r.cancelBase = context.WithCancel(context.Background())
	if r.ledger, err = ledger.Open(cfg.StatePath, cfg.StateRetention.D(), o.clock.Now()); err != nil {
		return nil, err
	}
	names := make([]string, len(cfg.Outputs))
	for i, oc := range cfg.Outputs {
		names[i] = oc.Name
	}
	if r.box, err = outbox.Open(cfg.OutboxPath, names, o.boxOpts...); err != nil {
		_ = r.ledger.Close()
		return nil, err
	}
	if orphans, err := r.box.Orphans(); err == nil && len(orphans) > 0 {
		r.log.Warn("outbox holds alerts of outputs no longer configured; they are kept, not delivered", "queues", fmt.Sprint(orphans))
	}
	if cfg.DeadLetter.Path != "" {
		if r.dlq, err = deadletter.Open(cfg.DeadLetter.Path); err != nil {
			_ = r.box.Close()
			_ = r.ledger.Close()
			return nil, err
		}
	}
	for _, oc := range cfg.Outputs {
		out, err := r.buildOutput(oc, &o)
		if err != nil {
			_ = r.Close()
			return nil, fmt.Errorf("alert output %q: %w", oc.Name, err)
		}
		r.outputs[oc.Name] = out
		r.order = append(r.order, oc.Name)
	}
	if err := m.registerOutputs(reg, r); err != nil {
		_ = r.Close()
		return nil, fmt.Errorf("alert metrics: %w", err)
	}
	if !o.noWorkers {
		if dir := ResendDir(cfg); dir != "" {
			r.workers.Add(1)
			go func() {
				defer r.workers.Done()
				r.serveResends(r.base, dir)
			}()
		}
		for _, name := range r.order {
			out := r.outputs[name]
			out.w = &worker{r: r, out: out, pause: o.retryPause}
			r.workers.Add(1)
			go func() {
				defer r.workers.Done()
				out.w.run(r.base)
			}()
		}
	}
	return r, nil
}

func (r *Router) buildOutput(oc OutputConfig, o *options) (*output, error) {
	out := &output{name: oc.Name, typ: oc.Type}
	if oc.MinSeverity != "" {
		out.minSev = schema.Severity(oc.MinSeverity)
	}
	b := r.cfg.Retry
	if oc.Retry != nil {
		b = *oc.Retry
	}
	out.retry = notify.Retry{Backoff: b, Clock: r.clock}
	log := r.log.With("output", oc.Name)
	var built any
	if n, ok := o.notifiers[oc.Name]; ok {
		built = n
	} else {
		var err error
		switch oc.Type {
		case TypeSlack:
			built, err = slack.New(*oc.Slack, log, slack.WithClock(r.clock), slack.WithJournal(r.ledger.Scoped(oc.Name)), slack.WithOutputName(oc.Name))
		case TypeHEC:
			built, err = hec.New(*oc.HEC, log, hec.WithClock(r.clock))
		case TypeSyslog:
			built, err = syslog.New(*oc.Syslog, log)
		case TypeWebhook:
			built, err = webhook.New(*oc.Webhook, log)
		case TypeKafka:
			built, err = kafka.New(*oc.Kafka, log)
		}
		if err != nil {
			return nil, err
		}
	}
	out.n, _ = built.(Notifier)
	out.ev, _ = built.(EventSender)
	if c, ok := built.(io.Closer); ok {
		out.closeFn = c.Close
	}
	if out.n == nil {
		return nil, fmt.Errorf("output of type %s cannot deliver findings", oc.Type)
	}
	return out, nil
}

func (r *Router) enter() bool {
	r.cmu.RLock()
	if r.closed {
		r.cmu.RUnlock()
		return false
	}
	return true
}

// WriteFindings takes findings from the pipeline: each is routed, checked
// against silences and per-output minimum severity, numbered within its
// incident group, and queued for every output it goes to, in one fsynced
// outbox write. It returns once that write is done; delivery happens on
// the outputs' workers. When the outbox cannot be written (a full disk),
// it keeps trying, logging once a minute with the path and the free
// space, until the write succeeds or ctx ends (then the caller must not
// advance its checkpoint). A finding queued again (a replay after a
// restart) is delivered once: the ledger knows it.
func (r *Router) WriteFindings(ctx context.Context, fs []schema.Finding) error {
	if !r.enter() {
		return ErrClosed
	}
	defer r.cmu.RUnlock()
	r.qmu.Lock()
	defer r.qmu.Unlock()
	now := r.clock.Now()
	batch := map[string][]notify.Alert{}
	for _, f := range fs {
		if f.ID == "" {
			r.m.suppressed.WithLabelValues("invalid").Inc()
			r.log.Error("finding without id dropped", "detector", notify.SanitizeLine(f.Detector, 64))
			continue
		}
		if s, ok := r.cfg.silenced(f, now); ok {
			r.m.suppressed.WithLabelValues("silence").Inc()
			r.log.Debug("finding silenced", "finding", f.ID, "reason", notify.SanitizeLine(s.Reason, 200), "until", s.Until)
			continue
		}
		names := r.cfg.route(f)
		if len(names) == 0 {
			r.m.suppressed.WithLabelValues("unrouted").Inc()
			continue
		}
		a := r.groups.alert(f, now)
		a.Finding = notify.BoundFinding(f, r.cfg.MaxFieldBytes, r.cfg.MaxEvidenceIDs, 32)
		for _, name := range names {
			out := r.outputs[name]
			if out.minSev != "" && f.Severity.Rank() < out.minSev.Rank() {
				r.m.suppressed.WithLabelValues("min_severity").Inc()
				continue
			}
			batch[name] = append(batch[name], a)
		}
	}
	if len(batch) == 0 {
		return nil
	}
	return r.appendRetrying(ctx, func() error { return r.box.Append(batch, now) })
}

// appendRetrying runs an outbox write until it succeeds, or ctx ends or
// the router closes (then the caller must not advance its checkpoint),
// retrying every second and logging once a minute.
func (r *Router) appendRetrying(ctx context.Context, write func() error) error {
	for {
		err := write()
		if err == nil {
			r.m.outboxFull.Set(0)
			return nil
		}
		r.m.outboxFull.Set(1)
		r.outboxError(err)
		t := time.NewTimer(time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("alert outbox not written: %w (%w)", err, ctx.Err())
		case <-r.base.Done():
			t.Stop()
			return fmt.Errorf("alert outbox not written: %w (%w)", err, ErrClosed)
		case <-t.C:
		}
	}
}

// outboxError logs a failed outbox write at most once a minute, with the
// path and the free space of its file system.
func (r *Router) outboxError(err error) {
	r.fullMu.Lock()
	now := time.Now()
	due := now.Sub(r.fullLogged) >= time.Minute
	if due {
		r.fullLogged = now
	}
	r.fullMu.Unlock()
	if !due {
		return
	}
	free := "unknown"
	if p := r.box.Path(); p != "" {
		var st syscall.Statfs_t
		if syscall.Statfs(p, &st) == nil {
			free = fmt.Sprintf("%d bytes", st.Bavail*uint64(st.Bsize))
		}
	}
	r.log.Error("alert outbox cannot be written; the detect checkpoint waits (nothing is lost) and writing is retried every second",
		"path", r.box.Path(), "free", free, "err", notify.SanitizeLine(err.Error(), 512))
}

// WriteEvents takes a batch of raw events for the event outputs
// (event_outputs): it queues the batch once per event output in the
// outbox, like findings, and returns; each output's worker sends it (one
// retried attempt per batch; outputs split large batches) or dead-letters
// it. A hung SIEM delays only its own queue. Events carry no idempotency
// key: SIEMs dedupe on the event id.
func (r *Router) WriteEvents(ctx context.Context, evs []schema.Event) error {
	if !r.enter() {
		return ErrClosed
	}
	defer r.cmu.RUnlock()
	if len(evs) == 0 || len(r.cfg.EventOutputs) == 0 {
		return nil
	}
	bounded := make([]schema.Event, len(evs))
	for i, ev := range evs {
		bounded[i] = notify.BoundEvent(ev, r.cfg.MaxFieldBytes)
	}
	var names []string
	for _, name := range r.cfg.EventOutputs {
		if r.outputs[name].ev == nil {
			r.log.Error("output cannot take raw events; skipped", "output", name)
			continue
		}
		names = append(names, name)
	}
	if len(names) == 0 {
		return nil
	}
	return r.appendRetrying(ctx, func() error { return r.box.AppendEvents(names, bounded, r.clock.Now()) })
}

// deliverEvents sends one batch through out's retry loop, dead-lettering
// it when that fails. An error means the batch was neither delivered nor
// dead-lettered.
func (r *Router) deliverEvents(ctx context.Context, out *output, evs []schema.Event) error {
	attempts, err := out.retry.Do(ctx, func(ctx context.Context) error { return out.ev.SendEvents(ctx, evs) }, r.observe(out.name))
	if err == nil {
		r.m.eventsSent.WithLabelValues(out.name).Add(float64(len(evs)))
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("output %s, %d events: %w", out.name, len(evs), err)
	}
	return r.deadLetter(out, err, attempts, deadletter.Record{Events: evs})
}

// deadLetter writes rec (its finding or events set) for out with err's
// reason.
func (r *Router) deadLetter(out *output, err error, attempts int, rec deadletter.Record) error {
	if r.dlq == nil {
		return fmt.Errorf("output %s (no dead-letter file): %w", out.name, err)
	}
	d := notify.Classify(err)
	rec.Time, rec.Output, rec.Reason, rec.Attempts = r.clock.Now().UTC(), out.name, string(d.Reason), attempts
	rec.Error = notify.SanitizeLine(err.Error(), 1024)
	if werr := r.dlq.Write(rec); werr != nil {
		return fmt.Errorf("output %s: %w", out.name, errors.Join(err, werr))
	}
	r.m.deadLetter.WithLabelValues(out.name, string(d.Reason)).Inc()
	what := "events"
	if rec.Finding != nil {
		what = rec.Finding.ID
	}
	r.log.Warn("alert dead-lettered", "what", what, "reason", string(d.Reason), "attempts", attempts,
		"err", notify.SanitizeLine(err.Error(), 512))
	return nil
}

func (r *Router) observe(name string) func(notify.Attempt) {
	return func(a notify.Attempt) {
		r.m.failed.WithLabelValues(name, string(a.Decision.Reason)).Inc()
		if a.Wait > 0 {
			r.m.retries.WithLabelValues(name).Inc()
			r.log.Debug("delivery attempt failed; retrying", "output", name, "attempt", a.N, "reason", string(a.Decision.Reason),
				"wait", a.Wait, "err", notify.SanitizeLine(a.Err.Error(), 512))
		}
	}
}

// bind returns a context that also ends when the router closes.
func (r *Router) bind(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(r.base, cancel)
	return ctx, func() { stop(); cancel() }
}

// Close stops the delivery workers (an alert in flight stays queued and is
// delivered after a restart; the ledger and, for Slack, the message
// lookup keep it from posting twice), then closes every output, the
// outbox, the dead-letter file and the ledger.
func (r *Router) Close() error {
	var errs []error
	r.closeOnce.Do(func() {
		r.cancelBase()
		r.cmu.Lock()
		r.closed = true
		r.cmu.Unlock()
		r.workers.Wait()
		for _, name := range r.order {
			if out := r.outputs[name]; out.closeFn != nil {
				if err := out.closeFn(); err != nil {
					errs = append(errs, fmt.Errorf("output %s: %w", name, err))
				}
			}
		}
		errs = append(errs, r.box.Close())
		if r.dlq != nil {
			errs = append(errs, r.dlq.Close())
		}
		errs = append(errs, r.ledger.Close())
	})
	return errors.Join(errs...)
}
