package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"auditwatch/schema"
	"auditwatch/stream"
)

// StoreStageConfig configures a StoreStage.
type StoreStageConfig struct {
	// Store takes the records' events and findings (store.Writer through
	// the command's wiring).
	Store StoreSink
	// Topic names the consumed topic in metrics and status.
	Topic string
	// CommitInterval: a partition's acknowledged offset is committed at
	// most this often (and when the partition is given up).
	CommitInterval time.Duration
	Logger         *slog.Logger
	Registerer     prometheus.Registerer
}

// StoreStage is the stream.Handler that stores a topic in its own consumer
// group: each batch of records is submitted to the Store and the stage
// reads on; a partition's offset is committed only up to the records the
// Store has acknowledged. A slow or stalled store therefore holds only
// this group (its lag grows; the topic keeps the records), never the
// consumers that alert or detect. A crash or a rebalance reads the
// unacknowledged records again and stores them again (at least once); the
// tables tolerate that (docs/STORAGE.md "Repeats").
type StoreStage struct {
	cfg StoreStageConfig
	log *slog.Logger

	stored   prometheus.Counter
	pending  prometheus.Gauge
	commitsM prometheus.Counter

	mu    sync.Mutex
	parts map[int]*storePart
}

// storePart is one owned partition. Its fields are read and written
// under StoreStage.mu (acknowledgements arrive on the store's goroutine).
type storePart struct {
	commit    func(ctx context.Context, partition int, next int64) error
	submitted int64 // offset after the last submitted record; -1 before any
	acked     int64 // offset after the last acknowledged record; -1 before any
	committed int64
	pending   int // records submitted, not yet acknowledged
	inflight  []storeInflight
	gone      bool // revoked: late acknowledgements no longer count
	last      time.Time
}

// storeInflight is a submitted batch waiting for its acknowledgement.
type storeInflight struct {
	next int64
	n    int
	at   time.Time
}

// NewStoreStage returns a StoreStage.
func NewStoreStage(cfg StoreStageConfig) (*StoreStage, error) {
	if cfg.Store == nil {
		return nil, errors.New("store stage: Store is required")
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
	labels := prometheus.Labels{"topic": cfg.Topic}
	s := &StoreStage{cfg: cfg, log: log, parts: map[int]*storePart{},
		stored: prometheus.NewCounter(prometheus.CounterOpts{Name: "auditwatch_store_stage_records_total", ConstLabels: labels,
			Help: "Records of the topic the store acknowledged, by topic."}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "auditwatch_store_stage_pending_records", ConstLabels: labels,
			Help: "Records handed to the store and not yet acknowledged, by topic (their offsets are not committed)."}),
		commitsM: prometheus.NewCounter(prometheus.CounterOpts{Name: "auditwatch_store_stage_commits_total", ConstLabels: labels,
			Help: "Offset commits of the store consumer group, by topic."}),
	}
	for _, c := range []prometheus.Collector{s.stored, s.pending, s.commitsM} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("store stage metrics: %w", err)
		}
	}
	return s, nil
}

// Assigned starts each partition at its committed offset.
func (s *StoreStage) Assigned(_ context.Context, a stream.Assignment) (map[int]int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for p, c := range a.Committed {
		s.parts[p] = &storePart{commit: a.Commit, submitted: -1, acked: -1, committed: c, last: time.Now()}
	}
	return nil, nil
}

// Handle submits the events and findings of recs to the store and commits
// what the store has acknowledged when due. It waits only while the
// store's queue is full.
func (s *StoreStage) Handle(ctx context.Context, p int, recs []stream.Record) error {
	s.mu.Lock()
	pt := s.parts[p]
	s.mu.Unlock()
	if pt == nil {
		return fmt.Errorf("store stage %s: partition %d is not assigned", s.cfg.Topic, p)
	}
	if len(recs) > 0 {
		var evs []schema.Event
		var fs []schema.Finding
		for i := range recs {
			r := &recs[i]
			switch {
			case r.Event != nil && !r.Note:
				// A note is a copy of an event for other partitions'
				// state; the event itself is on its own partition.
				evs = append(evs, *r.Event)
			case r.Finding != nil:
				fs = append(fs, *r.Finding)
			}
		}
		b := storeInflight{next: recs[len(recs)-1].Offset + 1, n: len(evs) + len(fs), at: time.Now()}
		s.mu.Lock()
		pt.inflight = append(pt.inflight, b)
		pt.pending += b.n
		pt.submitted = b.next
		s.mu.Unlock()
		s.pending.Add(float64(b.n))
		if err := s.cfg.Store.Submit(ctx, evs, fs, func() { s.acked(pt, b) }); err != nil {
			return fmt.Errorf("store stage %s: partition %d: %w", s.cfg.Topic, p, err)
		}
	}
	if time.Since(pt.last) >= s.cfg.CommitInterval {
		return s.commit(ctx, p, pt)
	}
	return nil
}

// acked records a batch's acknowledgement (the store acknowledges in
// submission order).
func (s *StoreStage) acked(pt *storePart, b storeInflight) {
	s.mu.Lock()
	if len(pt.inflight) > 0 && pt.inflight[0].next == b.next {
		pt.inflight = pt.inflight[1:]
	}
	pt.acked = b.next
	gone := pt.gone
	if !gone {
		pt.pending -= b.n
	}
	s.mu.Unlock()
	if !gone {
		s.pending.Sub(float64(b.n))
	}
	s.stored.Add(float64(b.n))
}

// commit commits the partition's acknowledged offset if it moved.
func (s *StoreStage) commit(ctx context.Context, p int, pt *storePart) error {
	s.mu.Lock()
	pt.last = time.Now()
	next := pt.acked
	s.mu.Unlock()
	if next < 0 || next == pt.committed {
		return nil
	}
	if err := pt.commit(ctx, p, next); err != nil {
		return fmt.Errorf("store stage %s: partition %d: commit %d: %w", s.cfg.Topic, p, next, err)
	}
	pt.committed = next
	s.commitsM.Inc()
	return nil
}

// Revoked writes what the store has queued (bounded by ctx) and commits
// what it acknowledged; records after that are read again by the next
// owner.
func (s *StoreStage) Revoked(ctx context.Context, parts []int) error {
	var errs []error
	flushed := false
	for _, p := range parts {
		s.mu.Lock()
		pt := s.parts[p]
		delete(s.parts, p)
		s.mu.Unlock()
		if pt == nil {
			continue
		}
		s.mu.Lock()
		waiting := pt.pending > 0 || pt.acked < pt.submitted
		s.mu.Unlock()
		if waiting && !flushed {
			flushed = true
			if err := flushBounded(ctx, s.cfg.Store); err != nil {
				s.log.Warn("store not flushed when the partition was given up; what it had not acknowledged is read and stored again", "topic", s.cfg.Topic, "partition", p, "err", err)
			}
		}
		if err := s.commit(ctx, p, pt); err != nil {
			errs = append(errs, err)
		}
		s.mu.Lock()
		n := pt.pending
		pt.pending, pt.gone = 0, true
		s.mu.Unlock()
		s.pending.Sub(float64(n))
	}
	return errors.Join(errs...)
}

// StoreStatus is a store stage's state for /readyz.
type StoreStatus struct {
	Topic string
	// Pending records were handed to the store and not acknowledged;
	// Oldest is how long the oldest of them has waited.
	Pending int
	Oldest  time.Duration
	// Partitions owned.
	Partitions int
}

// Status reports what waits for the store.
func (s *StoreStage) Status() StoreStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := StoreStatus{Topic: s.cfg.Topic, Partitions: len(s.parts)}
	for _, pt := range s.parts {
		st.Pending += pt.pending
		if len(pt.inflight) > 0 {
			st.Oldest = max(st.Oldest, time.Since(pt.inflight[0].at))
		}
	}
	return st
}

// WriteStatus writes the status as one /readyz line.
func (s *StoreStage) WriteStatus(w io.Writer) {
	st := s.Status()
	fmt.Fprintf(w, "store %s: partitions %d, records waiting for the store %d", st.Topic, st.Partitions, st.Pending)
	if st.Pending > 0 {
		fmt.Fprintf(w, ", oldest %s", st.Oldest.Round(time.Millisecond))
	}
	fmt.Fprintln(w)
}

// revokeFlushTimeout bounds the store flush when partitions are given up:
// a healthy store writes a block in well under a second; a stalled one
// must not hold a rebalance or a stop (what it has not acknowledged is
// read again by the next owner).
const revokeFlushTimeout = 3 * time.Second

// flushBounded flushes st within ctx and revokeFlushTimeout.
func flushBounded(ctx context.Context, st StoreSink) error {
	ctx, cancel := context.WithTimeout(ctx, revokeFlushTimeout)
	defer cancel()
	return st.Flush(ctx)
}
