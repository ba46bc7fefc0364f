package trail

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"auditwatch/ingest/source"
	"auditwatch/schema"
)

// FindingSink durably takes findings (the pipeline's finding sinks).
type FindingSink interface {
	WriteFindings(ctx context.Context, fs []schema.Finding) error
}

// Live runs a Verifier beside the sources: it is their Integrity hook,
// watches the events they publish for trail management calls, checks the
// deadlines every CheckInterval and writes the findings to the sink as
// soon as they are raised.
type Live struct {
	V    *Verifier
	sink FindingSink
	now  func() time.Time
	log  *slog.Logger
	iv   time.Duration
	kick chan struct{}

	// StatePath, when set, is where the verifier's state is saved after
	// every check whose findings were written (and loaded by Restore).
	StatePath string

	mu      sync.Mutex
	pending []schema.Finding

	findings *prometheus.CounterVec
}

var _ source.Integrity = (*Live)(nil)

// NewLive wires v to sink; now is the clock (nil: time.Now).
func NewLive(v *Verifier, sink FindingSink, now func() time.Time, logger *slog.Logger, reg prometheus.Registerer) *Live {
	if now == nil {
		now = time.Now
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	l := &Live{V: v, sink: sink, now: now, log: logger, iv: v.cfg.CheckInterval.D(), kick: make(chan struct{}, 1),
		findings: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "auditwatch_trail_findings_total",
			Help: "CloudTrail integrity findings raised, by kind."}, []string{"kind"})}
	if reg != nil {
		if err := reg.Register(l.findings); err != nil {
			if are, ok := err.(prometheus.AlreadyRegisteredError); ok {
				l.findings = are.ExistingCollector.(*prometheus.CounterVec)
			}
		}
	}
	return l
}

func (l *Live) wake() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// LogFile implements source.Integrity.
func (l *Live) LogFile(name, sha string) {
	l.V.LogFile(name, sha, l.now())
	l.wake()
}

// Digest implements source.Integrity.
func (l *Live) Digest(ctx context.Context, name string, content []byte, sig string) {
	l.V.Digest(ctx, name, content, sig, l.now())
	l.wake()
}

// Publisher returns next wrapped so that the verifier sees every event.
func (l *Live) Publisher(next source.Publisher) source.Publisher {
	return source.PublisherFunc(func(ctx context.Context, b source.Batch) error {
		now := l.now()
		for i := range b.Events {
			if explainActions[b.Events[i].Action] {
				l.V.Event(&b.Events[i], now)
			}
		}
		return next.Publish(ctx, b)
	})
}

// Restore loads the state saved at StatePath.
func (l *Live) Restore() error {
	if l.StatePath == "" {
		return nil
	}
	return l.V.Load(l.StatePath)
}

// Check checks the deadlines now, writes every finding raised so far and
// then saves the state (never before its findings are written, so a crash
// repeats a finding, with the same id, rather than losing it).
func (l *Live) Check(ctx context.Context) error {
	l.V.Tick(ctx, l.now())
	if err := l.flush(ctx); err != nil {
		return err
	}
	if l.StatePath != "" {
		return l.V.Save(l.StatePath)
	}
	return nil
}

func (l *Live) flush(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, f := range l.V.Take() {
		l.findings.WithLabelValues(f.Attributes["kind"]).Inc()
		l.pending = append(l.pending, f)
	}
	if len(l.pending) == 0 || l.sink == nil {
		return nil
	}
	if err := l.sink.WriteFindings(ctx, l.pending); err != nil {
		return err
	}
	l.pending = nil
	return nil
}

// Run checks at every CheckInterval, and writes new findings as soon as
// an object raised them, until ctx ends.
func (l *Live) Run(ctx context.Context) error {
	t := time.NewTicker(l.iv)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := l.flush(fctx); err != nil {
				l.log.Warn("trail findings not written at shutdown", "err", err)
			} else if l.StatePath != "" {
				if err := l.V.Save(l.StatePath); err != nil {
					l.log.Warn("trail state not saved at shutdown", "err", err)
				}
			}
			return nil
		case <-t.C:
			if err := l.Check(ctx); err != nil && ctx.Err() == nil {
				l.log.Warn("write trail findings (retried)", "err", err)
			}
		case <-l.kick:
			if err := l.flush(ctx); err != nil && ctx.Err() == nil {
				l.log.Warn("write trail findings (retried)", "err", err)
			}
		}
	}
}
