// Package alert owns the alert stage: the Router that takes findings from
// the detectors and raw events from the pipeline and hands each to the
// outputs its routes name — after silences, per-output minimum severity,
// grouping of repeats by dedupe key and an idempotency check — through
// one shared retry loop, writing whatever cannot be delivered to the
// dead-letter file. The `alerts:` configuration section is defined here.
//
// Each output lives in its own package (alert/slack, alert/hec,
// alert/syslog, alert/webhook, alert/kafka) and makes one delivery attempt
// per call; what they share (the Alert type, error classification, the
// retry loop) is in alert/notify.
package alert

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"auditwatch/alert/deadletter"
	"auditwatch/alert/hec"
	"auditwatch/alert/kafka"
	"auditwatch/alert/ledger"
	"auditwatch/alert/notify"
	"auditwatch/alert/slack"
	"auditwatch/alert/syslog"
	"auditwatch/alert/webhook"
	"auditwatch/schema"
)

// Notifier delivers one alert to one output, making one attempt; the
// router retries according to notify.Classify.
type Notifier interface {
	Notify(ctx context.Context, a notify.Alert) error
}

// EventSender delivers a batch of raw events to a SIEM output, making one
// attempt for the whole batch.
type EventSender interface {
	SendEvents(ctx context.Context, evs []schema.Event) error
}

// Errors of the router.
var (
	ErrClosed         = errors.New("alert router is closed")
	ErrInvalidFinding = errors.New("invalid finding")
	// ErrNotHandedOff means an output neither delivered nor dead-lettered
	// an alert (the context ended, or the dead-letter file failed); the
	// caller must not acknowledge the finding and should redeliver it.
	ErrNotHandedOff = errors.New("alert not handed off")
)

type output struct {
	name    string
	typ     string
	minSev  schema.Severity
	n       Notifier
	ev      EventSender
	retry   notify.Retry
	closeFn func() error
}

// Router routes findings and events to outputs. Safe for concurrent use.
type Router struct {
	cfg     Config
	log     *slog.Logger
	clock   notify.Clock
	m       *metrics
	ledger  *ledger.Ledger
	dlq     *deadletter.File
	outputs map[string]*output
	order   []string

	keys *keyLocks // serialise the findings of one dedupe key

	base       context.Context // cancelled by Close: in-flight deliveries stop
	cancelBase context.CancelFunc

	gmu    sync.Mutex
	groups map[string]*group
	gorder []string // insertion order for eviction (lazy)

	closeOnce sync.Once
	cmu       sync.RWMutex
	closed    bool
}

type group struct {
	start  time.Time
	repeat int
	count  int
	seen   map[string]struct{} // id/revision already counted (bounded)
}

// Option changes how New builds the router.
type Option func(*options)

type options struct {
	clock     notify.Clock
	notifiers map[string]any
	slackOpts []slack.Option
	hecOpts   []hec.Option
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

// WithSlackOptions passes options to every Slack output built.
func WithSlackOptions(opts ...slack.Option) Option {
	return func(o *options) { o.slackOpts = append(o.slackOpts, opts...) }
}

// WithHECOptions passes options to every HEC output built.
func WithHECOptions(opts ...hec.Option) Option {
	return func(o *options) { o.hecOpts = append(o.hecOpts, opts...) }
}

// New validates cfg, opens the ledger and the dead-letter file and builds
// every output.
func New(cfg Config, logger *slog.Logger, reg prometheus.Registerer, opts ...Option) (*Router, error) {
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var o options
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
	r := &Router{cfg: cfg, log: logger, clock: o.clock, m: m, outputs: map[string]*output{}, groups: map[string]*group{},
		keys: &keyLocks{m: map[string]*keyLock{}}}
	r.base, r.cancelBase = context.WithCancel(context.Background())
	if r.ledger, err = ledger.Open(cfg.StatePath, cfg.StateRetention, o.clock.Now()); err != nil {
		return nil, err
	}
	if cfg.DeadLetter.Path != "" {
		if r.dlq, err = deadletter.Open(cfg.DeadLetter.Path); err != nil {
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
			so := append([]slack.Option{slack.WithClock(r.clock), slack.WithThreads(r.ledger.Scoped(oc.Name))}, o.slackOpts...)
			built, err = slack.New(*oc.Slack, log, so...)
		case TypeHEC:
			built, err = hec.New(*oc.HEC, log, append([]hec.Option{hec.WithClock(r.clock)}, o.hecOpts...)...)
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

// Handle delivers f to every output its routes name. It returns once each
// of them has delivered it or dead-lettered it (nil), or with an error
// wrapping ErrNotHandedOff when some output did neither (the caller should
// redeliver later; outputs that did deliver will not post again). A
// finding id and revision already handled by an output is skipped.
func (r *Router) Handle(ctx context.Context, f schema.Finding) error {
	if !r.enter() {
		return ErrClosed
	}
	defer r.cmu.RUnlock()
	if f.ID == "" {
		return fmt.Errorf("%w: empty id (detector %q)", ErrInvalidFinding, notify.SanitizeLine(f.Detector, 64))
	}
	now := r.clock.Now()
	if s, ok := r.silenced(f, now); ok {
		r.m.suppressed.WithLabelValues("silence").Inc()
		r.log.Debug("finding silenced", "finding", f.ID, "reason", notify.SanitizeLine(s.Reason, 200), "until", s.Until)
		return nil
	}
	names := r.route(f)
	if len(names) == 0 {
		r.m.suppressed.WithLabelValues("unrouted").Inc()
		return nil
	}
	key := f.DedupeKey
	if key == "" {
		key = f.ID
	}
	ctx, cancel := r.bind(ctx)
	defer cancel()
	unlock := r.keys.lock(key)
	defer unlock()

	a := r.groupAlert(f, key, now)
	a.Finding = notify.BoundFinding(f, r.cfg.MaxFieldBytes, r.cfg.MaxEvidenceIDs, 32)

	var wg sync.WaitGroup
	errs := make([]error, len(names))
	for i, name := range names {
		out := r.outputs[name]
		if out.minSev != "" && f.Severity.Rank() < out.minSev.Rank() {
			r.m.suppressed.WithLabelValues("min_severity").Inc()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = r.deliver(ctx, out, a)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (r *Router) deliver(ctx context.Context, out *output, a notify.Alert) error {
	f := a.Finding
	lkey := ledger.Key(out.name, f.ID, f.Revision)
	done, _, err := r.ledger.Done(lkey)
	if err != nil {
		return fmt.Errorf("%w: output %s: %w", ErrNotHandedOff, out.name, err)
	}
	if done {
		r.m.suppressed.WithLabelValues("duplicate").Inc()
		return nil
	}
	start := r.clock.Now()
	attempts, err := out.retry.Do(ctx, func(ctx context.Context) error { return out.n.Notify(ctx, a) }, r.observe(out.name))
	if err == nil {
		r.m.sent.WithLabelValues(out.name).Inc()
		r.m.latency.WithLabelValues(out.name).Observe(r.clock.Now().Sub(start).Seconds())
		if merr := r.ledger.Mark(lkey, ledger.Delivered, r.clock.Now()); merr != nil {
			// Delivered but not recorded: a redelivery may post again.
			r.log.Error("alert delivered but not recorded", "finding", f.ID, "err", merr)
		}
		return nil
	}
	d := notify.Classify(err)
	if ctx.Err() != nil || d.Reason == notify.ReasonCanceled {
		return fmt.Errorf("%w: output %s, finding %s: %w", ErrNotHandedOff, out.name, f.ID, err)
	}
	if r.dlq == nil {
		return fmt.Errorf("%w: output %s, finding %s (no dead-letter file): %w", ErrNotHandedOff, out.name, f.ID, err)
	}
	fc := f
	if werr := r.dlq.Write(deadletter.Record{Time: r.clock.Now().UTC(), Output: out.name, Reason: string(d.Reason),
		Error: notify.SanitizeLine(err.Error(), 1024), Attempts: attempts, Finding: &fc}); werr != nil {
		return fmt.Errorf("%w: output %s, finding %s: %w", ErrNotHandedOff, out.name, f.ID, errors.Join(err, werr))
	}
	r.m.deadLetter.WithLabelValues(out.name, string(d.Reason)).Inc()
	r.log.Warn("alert dead-lettered", "finding", f.ID, "reason", string(d.Reason), "attempts", attempts,
		"err", notify.SanitizeLine(err.Error(), 512))
	if merr := r.ledger.Mark(lkey, ledger.DeadLettered, r.clock.Now()); merr != nil {
		r.log.Error("dead-lettered alert not recorded", "finding", f.ID, "err", merr)
	}
	return nil
}

func (r *Router) observe(name string) func(notify.Attempt) {
	return func(a notify.Attempt) {
		r.m.failed.WithLabelValues(name, string(a.Decision.Reason)).Inc()
		if a.Wait > 0 {
			r.m.retries.WithLabelValues(name).Inc()
			r.log.Debug("delivery attempt failed; retrying", "attempt", a.N, "reason", string(a.Decision.Reason),
				"wait", a.Wait, "err", notify.SanitizeLine(a.Err.Error(), 512))
		}
	}
}

// HandleEvent forwards one raw event to the event outputs.
func (r *Router) HandleEvent(ctx context.Context, ev schema.Event) error {
	return r.HandleEvents(ctx, []schema.Event{ev})
}

// HandleEvents forwards a batch of raw events to every event output (one
// retried attempt per output per batch; outputs split large batches). A
// batch an output cannot deliver is dead-lettered. Events carry no
// idempotency key here: SIEMs dedupe on the event id.
func (r *Router) HandleEvents(ctx context.Context, evs []schema.Event) error {
	if !r.enter() {
		return ErrClosed
	}
	defer r.cmu.RUnlock()
	if len(evs) == 0 || len(r.cfg.EventOutputs) == 0 {
		return nil
	}
	ctx, cancel := r.bind(ctx)
	defer cancel()
	bounded := make([]schema.Event, len(evs))
	for i, ev := range evs {
		bounded[i] = notify.BoundEvent(ev, r.cfg.MaxFieldBytes)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(r.cfg.EventOutputs))
	for i, name := range r.cfg.EventOutputs {
		out := r.outputs[name]
		if out.ev == nil {
			errs[i] = fmt.Errorf("output %s cannot take raw events", name)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			attempts, err := out.retry.Do(ctx, func(ctx context.Context) error { return out.ev.SendEvents(ctx, bounded) }, r.observe(name))
			if err == nil {
				r.m.eventsSent.WithLabelValues(name).Add(float64(len(bounded)))
				return
			}
			d := notify.Classify(err)
			if ctx.Err() != nil || r.dlq == nil {
				errs[i] = fmt.Errorf("%w: output %s, %d events: %w", ErrNotHandedOff, name, len(bounded), err)
				return
			}
			if werr := r.dlq.Write(deadletter.Record{Time: r.clock.Now().UTC(), Output: name, Reason: string(d.Reason),
				Error: notify.SanitizeLine(err.Error(), 1024), Attempts: attempts, Events: bounded}); werr != nil {
				errs[i] = fmt.Errorf("%w: output %s: %w", ErrNotHandedOff, name, errors.Join(err, werr))
				return
			}
			r.m.deadLetter.WithLabelValues(name, string(d.Reason)).Inc()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// silenced returns the first unexpired silence matching f.
func (r *Router) silenced(f schema.Finding, now time.Time) (SilenceConfig, bool) {
	for _, s := range r.cfg.Silences {
		if now.Before(s.Until) && s.Match.matches(f) {
			return s, true
		}
	}
	return SilenceConfig{}, false
}

// route returns the distinct outputs f goes to, in route order.
func (r *Router) route(f schema.Finding) []string {
	var names []string
	seen := map[string]bool{}
	add := func(ns []string) {
		for _, n := range ns {
			if !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
	}
	matched := false
	for _, rt := range r.cfg.Routes {
		if !rt.Match.matches(f) {
			continue
		}
		matched = true
		add(rt.Outputs)
		if !rt.Continue {
			break
		}
	}
	if !matched {
		add(r.cfg.DefaultOutputs)
	}
	return names
}

// groupAlert advances the group of key and describes f's place in it.
func (r *Router) groupAlert(f schema.Finding, key string, now time.Time) notify.Alert {
	r.gmu.Lock()
	defer r.gmu.Unlock()
	g := r.groups[key]
	if g != nil && r.cfg.GroupWindow > 0 && now.Sub(g.start) >= r.cfg.GroupWindow {
		delete(r.groups, key)
		g = nil
	}
	if g == nil {
		r.evictGroups(now)
		g = &group{start: now, seen: map[string]struct{}{}}
		r.groups[key] = g
		r.gorder = append(r.gorder, key)
	}
	id := f.ID + "\x00" + fmt.Sprint(f.Revision)
	if _, dup := g.seen[id]; !dup {
		if len(g.seen) < 1024 {
			g.seen[id] = struct{}{}
		}
		g.repeat++
		g.count += cmp.Or(f.Count, 1)
	}
	r.m.groupsAlive.Set(float64(len(r.groups)))
	return notify.Alert{Update: g.repeat > 1, Repeat: g.repeat, GroupCount: g.count, GroupStart: g.start}
}

// evictGroups drops expired groups and, when the table is full, the oldest.
func (r *Router) evictGroups(now time.Time) {
	if len(r.gorder) < 2*r.cfg.MaxGroups && len(r.groups) < r.cfg.MaxGroups {
		return
	}
	kept := r.gorder[:0]
	for _, k := range r.gorder {
		g, ok := r.groups[k]
		if !ok {
			continue
		}
		if r.cfg.GroupWindow > 0 && now.Sub(g.start) >= r.cfg.GroupWindow {
			delete(r.groups, k)
			continue
		}
		kept = append(kept, k)
	}
	for len(r.groups) >= r.cfg.MaxGroups && len(kept) > 0 {
		k := kept[0]
		kept = kept[1:]
		if _, ok := r.groups[k]; ok {
			delete(r.groups, k)
			r.m.evictions.Inc()
		}
	}
	r.gorder = append([]string(nil), kept...)
}

// bind returns a context that also ends when the router closes.
func (r *Router) bind(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(r.base, cancel)
	return ctx, func() { stop(); cancel() }
}

// keyLocks is a mutex per dedupe key, dropped when unused, so a finding
// stuck in retries holds back only later findings of its own incident.
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	mu   sync.Mutex
	refs int
}

func (k *keyLocks) lock(key string) func() {
	k.mu.Lock()
	l := k.m[key]
	if l == nil {
		l = &keyLock{}
		k.m[key] = l
	}
	l.refs++
	k.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		k.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}

// Close cancels in-flight deliveries (their Handle calls return
// ErrNotHandedOff, so the caller redelivers after a restart), waits for
// them to return, then closes every output, the dead-letter file and the
// ledger.
func (r *Router) Close() error {
	var errs []error
	r.closeOnce.Do(func() {
		r.cancelBase()
		r.cmu.Lock()
		r.closed = true
		r.cmu.Unlock()
		for _, name := range r.order {
			if out := r.outputs[name]; out.closeFn != nil {
				if err := out.closeFn(); err != nil {
					errs = append(errs, fmt.Errorf("output %s: %w", name, err))
				}
			}
		}
		if r.dlq != nil {
			errs = append(errs, r.dlq.Close())
		}
		errs = append(errs, r.ledger.Close())
	})
	return errors.Join(errs...)
}

// WriteFindings hands every finding of fs to Handle (the pipeline's
// finding-sink shape). Findings already delivered are skipped by the
// idempotency ledger, so a batch retried after an error posts nothing
// twice.
func (r *Router) WriteFindings(ctx context.Context, fs []schema.Finding) error {
	var errs []error
	for _, f := range fs {
		if err := r.Handle(ctx, f); err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
		}
	}
	return errors.Join(errs...)
}

// WriteEvents forwards raw events to the event outputs (the pipeline's
// event-sink shape).
func (r *Router) WriteEvents(ctx context.Context, evs []schema.Event) error {
	return r.HandleEvents(ctx, evs)
}

// ReplayStats counts what Replay did.
type ReplayStats struct {
	Findings, Events int // records delivered again
	Failed           int // records that failed again (and were dead-lettered again)
	Skipped          int // records naming an output no longer configured
}

// Replay reads a dead-letter file (usually a copy of the live one, moved
// aside) and delivers every record again to the output that failed it,
// through the same retry loop. A finding's idempotency key is forgotten
// first, so the replay is not skipped as a duplicate; a record that fails
// again is dead-lettered again (to the router's live file).
func (r *Router) Replay(ctx context.Context, path string) (ReplayStats, error) {
	if !r.enter() {
		return ReplayStats{}, ErrClosed
	}
	defer r.cmu.RUnlock()
	ctx, cancel := r.bind(ctx)
	defer cancel()
	var st ReplayStats
	err := deadletter.ReadFile(path, func(line int, rec deadletter.Record) error {
		out, ok := r.outputs[rec.Output]
		if !ok {
			st.Skipped++
			r.log.Warn("dead-letter record for an unknown output skipped", "line", line, "output", notify.SanitizeLine(rec.Output, 64))
			return nil
		}
		switch {
		case rec.Finding != nil:
			f := *rec.Finding
			if err := r.ledger.Forget(ledger.Key(out.name, f.ID, f.Revision)); err != nil {
				return err
			}
			a := notify.Alert{Finding: f, Repeat: 1, GroupCount: max(f.Count, 1)}
			if err := r.deliver(ctx, out, a); err != nil {
				return fmt.Errorf("line %d: %w", line, err)
			}
			if done, how, _ := r.ledger.Done(ledger.Key(out.name, f.ID, f.Revision)); done && how == ledger.Delivered {
				st.Findings++
			} else {
				st.Failed++
			}
		case len(rec.Events) > 0 && out.ev == nil:
			st.Skipped++
		case len(rec.Events) > 0:
			attempts, err := out.retry.Do(ctx, func(ctx context.Context) error { return out.ev.SendEvents(ctx, rec.Events) }, r.observe(out.name))
			if err == nil {
				st.Events += len(rec.Events)
				r.m.eventsSent.WithLabelValues(out.name).Add(float64(len(rec.Events)))
				return nil
			}
			if ctx.Err() != nil {
				return fmt.Errorf("%w: line %d: %w", ErrNotHandedOff, line, err)
			}
			d := notify.Classify(err)
			st.Failed++
			if werr := r.dlq.Write(deadletter.Record{Time: r.clock.Now().UTC(), Output: out.name, Reason: string(d.Reason),
				Error: notify.SanitizeLine(err.Error(), 1024), Attempts: attempts, Events: rec.Events}); werr != nil {
				return fmt.Errorf("%w: line %d: %w", ErrNotHandedOff, line, werr)
			}
		}
		return nil
	})
	return st, err
}
