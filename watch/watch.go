package watch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"auditwatch/ingest/source"
	"auditwatch/internal/redact"
	"auditwatch/schema"
)

// FindingSink durably takes findings (every output).
type FindingSink interface {
	WriteFindings(ctx context.Context, fs []schema.Finding) error
}

// Runner watches the sources' batches (silence, canary events) and runs
// the canary rounds and checks on a clock.
type Runner struct {
	Silence   *Silence // nil: off
	Canary    *Canary  // nil: off
	Heartbeat string   // URL called while canaries come back
	// MatchAtIngest: canary events count as arrived in Publisher (the
	// Kafka ingest stage, whose canary then proves the path to the
	// parser; the detect stage's passive canary proves the rest).
	// Otherwise they count as arrived in Detected only.
	MatchAtIngest bool
	// SilenceState, when set, is where the silence baselines are saved
	// (each tick that changed them, and at the end of Run); the caller
	// loads them with Silence.Load before the sources start.
	SilenceState string
	sink         FindingSink
	now          func() time.Time
	log          *slog.Logger
	http         *http.Client

	mu      sync.Mutex
	pending []schema.Finding

	// failed heartbeats are logged at most once per beatLogEvery: the
	// first at once, then a count of those since
	beatFails  int
	beatLogged time.Time

	blind      *prometheus.GaugeVec
	canaryEvs  prometheus.Counter
	heartbeats *prometheus.CounterVec
	findings   *prometheus.CounterVec
}

// NewRunner wires the watchers to sink; now is the clock (nil: time.Now).
func NewRunner(sil *Silence, can *Canary, heartbeat string, sink FindingSink, now func() time.Time, hc *http.Client, logger *slog.Logger, reg prometheus.Registerer) *Runner {
	if now == nil {
		now = time.Now
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	r := &Runner{Silence: sil, Canary: can, Heartbeat: heartbeat, sink: sink, now: now, log: logger, http: hc,
		blind: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "auditwatch_canary_blind",
			Help: "1 while a canary's audit event is overdue (pipeline_blind), by canary."}, []string{"canary"}),
		canaryEvs: prometheus.NewCounter(prometheus.CounterOpts{Name: "auditwatch_canary_events_total",
			Help: "Canary audit events that came through the detect stage (kept out of detectors, baselines and storage)."}),
		heartbeats: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "auditwatch_canary_heartbeats_total",
			Help: "Heartbeat URL calls by outcome."}, []string{"outcome"}),
		findings: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "auditwatch_watch_findings_total",
			Help: "source_silent and pipeline_blind findings raised, by detector."}, []string{"detector"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{r.blind, r.canaryEvs, r.heartbeats, r.findings} {
			if err := reg.Register(c); err != nil {
				r.log.Warn("watch metrics", "err", err)
			}
		}
	}
	return r
}

// BlindGauge is auditwatch_canary_blind.
func (r *Runner) BlindGauge() *prometheus.GaugeVec { return r.blind }

func (r *Runner) add(fs []schema.Finding) {
	if len(fs) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range fs {
		r.findings.WithLabelValues(f.Detector).Inc()
		r.log.Warn("pipeline watch", "detector", f.Detector, "severity", string(f.Severity), "summary", f.Summary)
	}
	r.pending = append(r.pending, fs...)
}

// Publisher returns next wrapped: every batch is an arrival of its
// source. Canary events go on to the detect stage, which labels them
// (Detected) and keeps them from detectors, baselines and storage; with
// MatchAtIngest they also count as arrived here.
func (r *Runner) Publisher(next source.Publisher) source.Publisher {
	return source.PublisherFunc(func(ctx context.Context, b source.Batch) error {
		now := r.now()
		if r.Silence != nil {
			r.add(r.Silence.Observe(b.Source, len(b.Events), now))
		}
		if r.MatchAtIngest && r.Canary != nil {
			for i := range b.Events {
				_, fs := r.Canary.Match(&b.Events[i], now)
				r.add(fs)
			}
		}
		return next.Publish(ctx, b)
	})
}

// Disarm stops a passive canary expecting events (see NewPassiveCanary).
func (r *Runner) Disarm() {
	if r.Canary != nil {
		r.Canary.Disarm()
	}
}

// Detected is the detect stage's canary hook: it reports whether ev is a
// canary event, which then reaches no detector, baseline or store; unless
// replayed (a partition's state being rebuilt from events seen before),
// such an event counts as arrived through the whole pipeline.
func (r *Runner) Detected(ev *schema.Event, replayed bool) bool {
	if r.Canary == nil {
		return false
	}
	if replayed {
		return r.Canary.Is(ev)
	}
	ok, fs := r.Canary.Match(ev, r.now())
	r.add(fs)
	if ok {
		r.canaryEvs.Inc()
	}
	return ok
}

// Tick checks deadlines, runs a canary round when due, calls the
// heartbeat while canaries come back, and writes the findings.
func (r *Runner) Tick(ctx context.Context) error {
	now := r.now()
	if r.Silence != nil {
		r.add(r.Silence.Check(now))
	}
	if r.Canary != nil {
		fs, healthy := r.Canary.Check(now)
		r.add(fs)
		for k, b := range r.Canary.Blind() {
			v := 0.0
			if b {
				v = 1
			}
			r.blind.WithLabelValues(k).Set(v)
		}
		if healthy && r.Heartbeat != "" {
			r.beat(ctx)
		}
		if r.Canary.Due(now) {
			if err := r.Canary.Probe(ctx, now); err != nil {
				r.log.Warn("canary read failed", "err", err)
			}
		}
	}
	err := r.flush(ctx)
	r.saveSilence()
	return err
}

func (r *Runner) saveSilence() {
	if r.Silence == nil || r.SilenceState == "" {
		return
	}
	if err := r.Silence.Save(r.SilenceState); err != nil {
		r.log.Warn("silence baselines not saved", "err", err)
	}
}

// beatLogEvery bounds the log lines of failed heartbeats.
const beatLogEvery = time.Minute

func (r *Runner) beat(ctx context.Context) {
	if err := r.callHeartbeat(ctx); err != nil {
		r.heartbeats.WithLabelValues("error").Inc()
		r.beatFailed(err)
		return
	}
	r.heartbeats.WithLabelValues("ok").Inc()
	if !r.beatLogged.IsZero() {
		r.log.Info("heartbeat calls succeed again", "failed_since_last_line", r.beatFails)
		r.beatFails = 0
		r.beatLogged = time.Time{}
	}
}

// callHeartbeat calls the heartbeat URL once. Its errors never carry the
// URL (a credential): a transport error keeps only its cause.
func (r *Runner) callHeartbeat(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.Heartbeat, nil)
	if err != nil {
		return errors.New("heartbeat request: bad URL")
	}
	resp, err := r.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return redact.Error(fmt.Errorf("heartbeat call: %w", err))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("heartbeat call: HTTP status %d", resp.StatusCode)
	}
	return nil
}

// beatFailed logs a failed heartbeat: the first of a run of failures at
// once, then one line per beatLogEvery with how many failed since.
func (r *Runner) beatFailed(err error) {
	r.beatFails++
	now := r.now()
	if !r.beatLogged.IsZero() && now.Sub(r.beatLogged) < beatLogEvery {
		return
	}
	r.log.Warn("heartbeat call failed: the dead man's switch will fire", "err", err, "failed_since_last_line", r.beatFails)
	r.beatFails = 0
	r.beatLogged = now
}

func (r *Runner) flush(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.pending) == 0 || r.sink == nil {
		return nil
	}
	if err := r.sink.WriteFindings(ctx, r.pending); err != nil {
		return fmt.Errorf("write watch findings: %w", err)
	}
	r.pending = nil
	return nil
}

// Run ticks every interval until ctx ends.
func (r *Runner) Run(ctx context.Context, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := r.flush(fctx); err != nil {
				r.log.Warn("watch findings not written at shutdown", "err", err)
			}
			r.saveSilence()
			return nil
		case <-t.C:
			if err := r.Tick(ctx); err != nil && ctx.Err() == nil {
				r.log.Warn("watch tick", "err", err)
			}
		}
	}
}
