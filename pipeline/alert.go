package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"auditwatch/schema"
	"auditwatch/stream"
)

// FindingsPublisher is the FindingSink of a detect stage on Kafka: it puts
// findings on the findings topic keyed by dedupe key and returns once all
// in-sync replicas hold them.
type FindingsPublisher struct {
	Stream stream.Stream
	Topic  string
}

// WriteFindings publishes fs and waits for the acknowledgement.
func (p FindingsPublisher) WriteFindings(ctx context.Context, fs []schema.Finding) error {
	recs := make([]stream.Record, len(fs))
	for i := range fs {
		key := fs[i].DedupeKey
		if key == "" {
			key = fs[i].ID
		}
		recs[i] = stream.Record{Key: key, Finding: &fs[i]}
	}
	ack := make(chan error, 1)
	if err := p.Stream.Publish(ctx, p.Topic, recs, func(err error) { ack <- err }); err != nil {
		return err
	}
	select {
	case err := <-ack:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// AlertConfig configures an AlertStage.
type AlertConfig struct {
	// Findings takes every finding of the topic (alert router, storage,
	// findings file). It must tolerate a finding it has already taken.
	// The alert router takes a finding into its outbox (one queue per
	// output) and returns, so offsets advance however slow an output is;
	// each output's progress lives in its outbox queue.
	Findings FindingSink
	// CommitInterval: a partition's offset is committed at most this often
	// (always on revoke); a crash replays what followed, which the sinks
	// drop by finding id.
	CommitInterval time.Duration
	Logger         *slog.Logger
	Registerer     prometheus.Registerer
}

// AlertStage is the stream.Handler of the findings topic: it hands each
// finding to the sinks and commits only what they have taken.
type AlertStage struct {
	cfg      AlertConfig
	log      *slog.Logger
	findings prometheus.Counter

	mu    sync.Mutex
	parts map[int]*alertPart
}

type alertPart struct {
	commit  func(ctx context.Context, partition int, next int64) error
	next    int64
	pending bool
	last    time.Time
}

// NewAlertStage returns an AlertStage.
func NewAlertStage(cfg AlertConfig) (*AlertStage, error) {
	if cfg.Findings == nil {
		return nil, errors.New("alert stage: Findings is required")
	}
	if cfg.CommitInterval <= 0 {
		cfg.CommitInterval = time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := cfg.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	s := &AlertStage{cfg: cfg, log: log, parts: map[int]*alertPart{},
		findings: prometheus.NewCounter(prometheus.CounterOpts{Name: "auditwatch_alert_stage_findings_total",
			Help: "Findings taken from the findings topic and handed to the outputs."})}
	if err := reg.Register(s.findings); err != nil {
		return nil, fmt.Errorf("alert stage metrics: %w", err)
	}
	return s, nil
}

// Assigned starts each partition at its committed offset.
func (s *AlertStage) Assigned(_ context.Context, a stream.Assignment) (map[int]int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for p := range a.Committed {
		s.parts[p] = &alertPart{commit: a.Commit, next: -1, last: time.Now()}
	}
	return nil, nil
}

// Handle hands the findings of recs to the sinks, then commits when due.
func (s *AlertStage) Handle(ctx context.Context, p int, recs []stream.Record) error {
	s.mu.Lock()
	pt := s.parts[p]
	s.mu.Unlock()
	if pt == nil {
		return fmt.Errorf("alert stage: partition %d is not assigned", p)
	}
	var fs []schema.Finding
	for i := range recs {
		if recs[i].Finding != nil {
			fs = append(fs, *recs[i].Finding)
		}
		pt.next = recs[i].Offset + 1
		pt.pending = true
	}
	if len(fs) > 0 {
		if err := s.cfg.Findings.WriteFindings(ctx, fs); err != nil {
			return fmt.Errorf("alert stage: partition %d: %w", p, err)
		}
		s.findings.Add(float64(len(fs)))
	}
	if pt.pending && time.Since(pt.last) >= s.cfg.CommitInterval {
		return s.commit(ctx, p, pt)
	}
	return nil
}

func (s *AlertStage) commit(ctx context.Context, p int, pt *alertPart) error {
	pt.last = time.Now()
	if !pt.pending || pt.next < 0 {
		return nil
	}
	if err := pt.commit(ctx, p, pt.next); err != nil {
		return fmt.Errorf("alert stage: partition %d: commit %d: %w", p, pt.next, err)
	}
	pt.pending = false
	return nil
}

// Revoked commits what the given-up partitions handled.
func (s *AlertStage) Revoked(ctx context.Context, parts []int) error {
	var errs []error
	for _, p := range parts {
		s.mu.Lock()
		pt := s.parts[p]
		delete(s.parts, p)
		s.mu.Unlock()
		if pt != nil {
			if err := s.commit(ctx, p, pt); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
