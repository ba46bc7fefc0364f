package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"auditwatch/schema"
	"auditwatch/stream"
)

// Meta keys of a detector checkpoint.
const (
	// MetaOffset holds the partition's next input offset (Kafka).
	MetaOffset = "stream/offset"
	// MetaSourcePrefix prefixes each source's position (embedded).
	MetaSourcePrefix = "source/"
)

// OpenDetector opens the detector engine of a partition. fresh asks for
// empty state (the partition's state is being rebuilt).
type OpenDetector func(partition int, fresh bool) (Detector, error)

// DetectConfig configures a DetectStage.
type DetectConfig struct {
	// Open opens a partition's engine.
	Open OpenDetector
	// Findings takes the findings (alert router and sinks in one process;
	// a findings-topic publisher on Kafka).
	Findings FindingSink
	// Events, optional, takes every event (storage in one process).
	Events EventSink
	// Replayable is true on Kafka: offsets are stored in the checkpoint
	// and a partition without matching local state is rebuilt.
	Replayable bool
	// CheckpointEvents and CheckpointInterval: checkpoint after whichever
	// comes first.
	CheckpointEvents   int
	CheckpointInterval time.Duration
	// IdleDrain: when a partition has had no records for this long, events
	// still waiting in its engine's event-time reorder buffer are released
	// (a Drainer's Drain), so a quiet stream still alerts on its last
	// events. Zero disables it.
	IdleDrain time.Duration
	// Stage names the stage in metrics ("detect"); Logger and Registerer.
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Enrich, optional, sees every event before its detector and may
	// rewrite it (credential linking names the Vault identity behind an
	// AWS key); the findings it returns go on with the detector's. The
	// rewritten event is what the detector and the event sinks see.
	Enrich func(ctx context.Context, ev *schema.Event, out []schema.Finding) []schema.Finding
	// BeforeCheckpoint, optional, runs at each checkpoint before the
	// engine's state and the input position are saved: what Enrich keeps
	// between events (impossible travel's last places) is made durable
	// first, so a restart resumes where that state left off.
	BeforeCheckpoint func() error
	// Canary, optional, labels the end-to-end canary's events: an event
	// it reports goes to no Enrich, detector or event sink (it is counted
	// as arrived by the canary; replayed is true for records the previous
	// owner already handled, which must not count again).
	Canary func(ev *schema.Event, replayed bool) bool
	// Observe, optional, sees every event handed to a detector and every
	// finding released, ev nil for those of an idle drain (tests and
	// latency measurement).
	Observe func(ev *schema.Event, fs []schema.Finding)
}

// Drainer is a Detector with an event-time reorder buffer that can be
// released early (detect.Engine satisfies it).
type Drainer interface {
	Drain() []schema.Finding
	Buffered() int
}

// Noter is a Detector that takes notes: events of other partitions its
// state needs (stream.Record.Note); what it returns goes on as findings.
type Noter interface {
	Note(ev schema.Event) []schema.Finding
}

// Joiner is a Detector that also takes the findings raised beside it for
// the same event (Enrich's), before they go on: it may correlate them
// (incident ids) or drop some (allow entries); what it returns goes on.
type Joiner interface {
	Join(fs []schema.Finding) []schema.Finding
}

// DetectStage is the stream.Handler that runs detectors over the events
// topic.
type DetectStage struct {
	cfg DetectConfig
	log *slog.Logger
	m   detectMetrics

	mu    sync.Mutex
	parts map[int]*partition
}

type partition struct {
	id        int
	det       Detector
	commit    func(ctx context.Context, partition int, next int64) error
	next      int64 // offset after the last handled record; -1 before any
	committed int64
	// suppressBelow: findings of records below this offset were already
	// published by the previous owner (rebuild).
	suppressBelow int64
	positions     map[string][]byte
	findings      []schema.Finding
	events        []schema.Event
	since         int
	last          time.Time
	lastRecord    time.Time
}

type detectMetrics struct {
	events, suppressed, checkpoints, rebuilds, drains prometheus.Counter
	findings                                          *prometheus.CounterVec
	partitions                                        prometheus.Gauge
}

// NewDetectStage returns a DetectStage.
func NewDetectStage(cfg DetectConfig) (*DetectStage, error) {
	if cfg.Open == nil || cfg.Findings == nil {
		return nil, errors.New("detect stage: Open and Findings are required")
	}
	if cfg.CheckpointEvents <= 0 {
		cfg.CheckpointEvents = 20000
	}
	if cfg.CheckpointInterval <= 0 {
		cfg.CheckpointInterval = time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := cfg.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := detectMetrics{
		events: prometheus.NewCounter(prometheus.CounterOpts{Name: "auditwatch_detect_stage_events_total",
			Help: "Events taken from the stream by the detect stage."}),
		suppressed: prometheus.NewCounter(prometheus.CounterOpts{Name: "auditwatch_detect_stage_rebuild_suppressed_findings_total",
			Help: "Findings not published while rebuilding a partition's state (the previous owner published them)."}),
		checkpoints: prometheus.NewCounter(prometheus.CounterOpts{Name: "auditwatch_detect_stage_commits_total",
			Help: "Checkpoint+commit cycles of the detect stage."}),
		rebuilds: prometheus.NewCounter(prometheus.CounterOpts{Name: "auditwatch_detect_stage_rebuilds_total",
			Help: "Partitions whose detector state was rebuilt by replay on assignment."}),
		drains: prometheus.NewCounter(prometheus.CounterOpts{Name: "auditwatch_detect_stage_idle_drains_total",
			Help: "Times an idle partition's reorder buffer was released early."}),
		findings: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "auditwatch_detect_stage_findings_total",
			Help: "Findings handed on by the detect stage, by detector."}, []string{"detector"}),
		partitions: prometheus.NewGauge(prometheus.GaugeOpts{Name: "auditwatch_detect_stage_partitions",
			Help: "Partitions owned by this detect stage."}),
	}
	for _, c := range []prometheus.Collector{m.events, m.suppressed, m.checkpoints, m.rebuilds, m.drains, m.findings, m.partitions} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("detect stage metrics: %w", err)
		}
	}
	return &DetectStage{cfg: cfg, log: log, m: m, parts: map[int]*partition{}}, nil
}

// Assigned opens (restoring or rebuilding) each assigned partition's engine.
func (s *DetectStage) Assigned(ctx context.Context, a stream.Assignment) (map[int]int64, error) {
	start := map[int]int64{}
	for p, committed := range a.Committed {
		pt, from, err := s.open(p, committed, a.Oldest[p])
		if err != nil {
			return nil, err
		}
		pt.commit = a.Commit
		s.mu.Lock()
		s.parts[p] = pt
		s.mu.Unlock()
		s.m.partitions.Inc()
		if s.cfg.Replayable {
			start[p] = from
		}
	}
	return start, nil
}

func (s *DetectStage) open(p int, committed, oldest int64) (*partition, int64, error) {
	det, err := s.cfg.Open(p, false)
	if err != nil {
		return nil, 0, fmt.Errorf("open detector of partition %d: %w", p, err)
	}
	now := time.Now()
	pt := &partition{id: p, det: det, next: -1, committed: committed, positions: map[string][]byte{}, last: now, lastRecord: now}
	meta, err := det.Meta()
	if err != nil {
		det.Close()
		return nil, 0, fmt.Errorf("partition %d: %w", p, err)
	}
	if !s.cfg.Replayable {
		for k, v := range meta {
			if len(k) > len(MetaSourcePrefix) && k[:len(MetaSourcePrefix)] == MetaSourcePrefix {
				pt.positions[k[len(MetaSourcePrefix):]] = v
			}
		}
		return pt, 0, nil
	}
	stored := int64(-1)
	if v, ok := meta[MetaOffset]; ok {
		if n, err := strconv.ParseInt(string(v), 10, 64); err == nil {
			stored = n
		}
	}
	switch {
	case stored >= 0 && (committed < 0 || stored == committed):
		// Local state is exactly at the group's position.
		s.log.Info("partition state restored", "partition", p, "offset", stored)
		pt.next = stored
		return pt, stored, nil
	case committed < 0:
		// Nothing committed and no state: a new partition.
		return pt, oldest, nil
	default:
		// Rebuild from the retained history; the previous owner already
		// published everything below committed.
		det.Close()
		det, err = s.cfg.Open(p, true)
		if err != nil {
			return nil, 0, fmt.Errorf("rebuild detector of partition %d: %w", p, err)
		}
		pt.det = det
		pt.suppressBelow = committed
		s.m.rebuilds.Inc()
		s.log.Info("partition state rebuilt by replay", "partition", p, "from", oldest, "committed", committed, "local", stored)
		return pt, oldest, nil
	}
}

// Positions returns the source positions restored for partition p
// (embedded stream: where each source resumes).
func (s *DetectStage) Positions(p int) map[string][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	pt := s.parts[p]
	if pt == nil {
		return nil
	}
	out := make(map[string][]byte, len(pt.positions))
	for k, v := range pt.positions {
		out[k] = v
	}
	return out
}

func (s *DetectStage) part(p int) (*partition, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pt := s.parts[p]
	if pt == nil {
		return nil, fmt.Errorf("partition %d is not assigned", p)
	}
	return pt, nil
}

// Handle runs a partition's records through its engine and checkpoints
// when due.
func (s *DetectStage) Handle(ctx context.Context, p int, recs []stream.Record) error {
	pt, err := s.part(p)
	if err != nil {
		return err
	}
	for i := range recs {
		r := &recs[i]
		if r.Source != "" {
			pt.positions[r.Source] = r.Position
		}
		pt.next = r.Offset + 1
		if r.Event == nil {
			continue
		}
		if r.Note {
			// Another partition's event this one's detectors need (a
			// rollout write): state only, not an event of this partition.
			if n, ok := pt.det.(Noter); ok {
				if fs := n.Note(*r.Event); len(fs) > 0 {
					if r.Offset < pt.suppressBelow {
						s.m.suppressed.Add(float64(len(fs)))
					} else {
						pt.findings = append(pt.findings, fs...)
					}
				}
				pt.since++
			}
			continue
		}
		s.m.events.Inc()
		if s.cfg.Canary != nil && s.cfg.Canary(r.Event, s.cfg.Replayable && r.Offset < pt.suppressBelow) {
			pt.since++
			continue
		}
		var efs []schema.Finding
		if s.cfg.Enrich != nil {
			efs = s.cfg.Enrich(ctx, r.Event, nil)
			if j, ok := pt.det.(Joiner); ok && len(efs) > 0 {
				efs = j.Join(efs)
			}
		}
		fs := pt.det.Process(*r.Event)
		if len(efs) > 0 {
			fs = append(efs, fs...)
		}
		if s.cfg.Observe != nil {
			s.cfg.Observe(r.Event, fs)
		}
		if s.cfg.Events != nil && !(s.cfg.Replayable && r.Offset < pt.suppressBelow) {
			pt.events = append(pt.events, *r.Event)
		}
		if len(fs) > 0 {
			if r.Offset < pt.suppressBelow {
				s.m.suppressed.Add(float64(len(fs)))
			} else {
				pt.findings = append(pt.findings, fs...)
			}
		}
		pt.since++
	}
	// Idle means no events: position-only records (a source that polls
	// and finds nothing new) do not count.
	for i := range recs {
		if recs[i].Event != nil {
			pt.lastRecord = time.Now()
			break
		}
	}
	if s.cfg.IdleDrain > 0 && time.Since(pt.lastRecord) >= s.cfg.IdleDrain {
		s.drain(pt)
	}
	// Findings go on with the batch that raised them, not at the next
	// checkpoint: the sink (the alert outbox, the findings topic) holds
	// them durably, and a crash before the checkpoint raises them again
	// with the same ids, which the sinks' ledgers drop. Waiting for the
	// checkpoint interval (1 s) was most of append-to-alert latency.
	if len(pt.findings) > 0 {
		if err := s.handOnFindings(ctx, pt); err != nil {
			return err
		}
	}
	// An engine whose unsaved evicted state has reached its memory share
	// asks for a checkpoint early (detect.Engine.NeedCheckpoint).
	nc, _ := pt.det.(interface{ NeedCheckpoint() bool })
	if pt.since >= s.cfg.CheckpointEvents || (pt.since > 0 || len(pt.findings) > 0) && time.Since(pt.last) >= s.cfg.CheckpointInterval ||
		pt.since > 0 && nc != nil && nc.NeedCheckpoint() {
		return s.checkpoint(ctx, pt)
	}
	return nil
}

// drain releases an idle partition's reorder buffer.
func (s *DetectStage) drain(pt *partition) {
	d, ok := pt.det.(Drainer)
	if !ok || d.Buffered() == 0 {
		return
	}
	fs := d.Drain()
	s.m.drains.Inc()
	pt.since++ // the buffer changed: checkpoint it
	if s.cfg.Observe != nil {
		s.cfg.Observe(nil, fs)
	}
	if len(fs) == 0 {
		return
	}
	// Below the previous owner's committed offset it had drained or
	// raised these itself; at that offset it may have committed them
	// still buffered (saved with its state, never released): hand them
	// on (at worst again, with the same ids).
	if s.cfg.Replayable && pt.next < pt.suppressBelow {
		s.m.suppressed.Add(float64(len(fs)))
		return
	}
	pt.findings = append(pt.findings, fs...)
}

// checkpoint hands pending findings and events on, persists the engine
// state with the input position, then commits the input.
func (s *DetectStage) checkpoint(ctx context.Context, pt *partition) error {
	pt.last = time.Now()
	if s.cfg.Replayable && pt.next <= pt.suppressBelow {
		// Still rebuilding: nothing may be committed below the previous
		// owner's position.
		return nil
	}
	if err := s.handOnFindings(ctx, pt); err != nil {
		return err
	}
	if len(pt.events) > 0 {
		if err := s.cfg.Events.WriteEvents(ctx, pt.events); err != nil {
			return fmt.Errorf("partition %d: hand on events: %w", pt.id, err)
		}
		pt.events = pt.events[:0]
	}
	meta := make(map[string][]byte, len(pt.positions)+1)
	for k, v := range pt.positions {
		meta[MetaSourcePrefix+k] = v
	}
	if pt.next >= 0 {
		meta[MetaOffset] = []byte(strconv.FormatInt(pt.next, 10))
	}
	if s.cfg.BeforeCheckpoint != nil {
		if err := s.cfg.BeforeCheckpoint(); err != nil {
			return fmt.Errorf("partition %d: %w", pt.id, err)
		}
	}
	if err := pt.det.Checkpoint(meta); err != nil {
		return fmt.Errorf("partition %d: %w", pt.id, err)
	}
	if pt.next >= 0 && pt.commit != nil {
		if err := pt.commit(ctx, pt.id, pt.next); err != nil {
			return fmt.Errorf("partition %d: commit offset %d: %w", pt.id, pt.next, err)
		}
		pt.committed = pt.next
	}
	pt.since = 0
	s.m.checkpoints.Inc()
	return nil
}

// handOnFindings writes a partition's pending findings to the findings
// sink (nothing while a rebuilt partition is below the previous owner's
// position; at it, only a drain's findings can be pending).
func (s *DetectStage) handOnFindings(ctx context.Context, pt *partition) error {
	if len(pt.findings) == 0 || s.cfg.Replayable && pt.next < pt.suppressBelow {
		return nil
	}
	if err := s.cfg.Findings.WriteFindings(ctx, pt.findings); err != nil {
		return fmt.Errorf("partition %d: hand on findings: %w", pt.id, err)
	}
	for i := range pt.findings {
		s.m.findings.WithLabelValues(pt.findings[i].Detector).Inc()
	}
	pt.findings = pt.findings[:0]
	return nil
}

// Revoked checkpoints and closes the partitions given up.
func (s *DetectStage) Revoked(ctx context.Context, parts []int) error {
	var errs []error
	for _, p := range parts {
		pt, err := s.part(p)
		if err != nil {
			continue
		}
		if pt.since > 0 || len(pt.findings) > 0 {
			if err := s.checkpoint(ctx, pt); err != nil {
				errs = append(errs, err)
			}
		}
		if err := pt.det.Close(); err != nil {
			errs = append(errs, err)
		}
		s.mu.Lock()
		delete(s.parts, p)
		s.mu.Unlock()
		s.m.partitions.Dec()
	}
	return errors.Join(errs...)
}
