package pipeline

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"slices"
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
	// MetaStorePending holds, with a Store, the events the detectors have
	// taken that the store has not yet acknowledged (8-byte hashes of
	// source and id, little endian): the input position saved beside them
	// is from before them, so a restart reads them again, stores them and
	// keeps them from the detectors, whose state already has them.
	MetaStorePending = "store/pending"
	// MetaStoreFindings holds, with a Store, the findings handed on whose
	// storing was not yet acknowledged (a JSON array), stored again on a
	// restart: the events that raised them are not detected again.
	MetaStoreFindings = "store/findings"
	// MetaStoreUntil is how far the input must be read again before the
	// events of MetaStorePending that have not come back can be forgotten
	// (JSON storeUntil).
	MetaStoreUntil = "store/until"
)

// StoreSink stores events and findings without holding the detect stage:
// Submit queues them and returns at once (waiting only while its queue is
// full), and done runs once they and everything submitted before are
// durable (store.Writer satisfies it). Flush writes everything queued and
// returns when it is durable (used when the stage stops).
type StoreSink interface {
	Submit(ctx context.Context, evs []schema.Event, fs []schema.Finding, done func()) error
	Flush(ctx context.Context) error
}

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
	// Events, optional, takes every event at each checkpoint, before the
	// checkpoint (events file, SIEM forwarding through the outbox).
	Events EventSink
	// Store, optional, stores every event and finding off the detect
	// path: each checkpoint's events and each batch's findings (after the
	// Findings sink took them) are submitted and the stage goes on
	// detecting while they are written. A checkpoint saves and commits the
	// input position only up to the events the store has acknowledged;
	// the events taken after that position are listed in the checkpoint
	// (MetaStorePending), so after a crash they are read again, stored,
	// and kept from the detectors, whose saved state already has them.
	// Nothing is lost and a slow store never holds detection or alerts
	// (until its queue is full).
	Store StoreSink
	// StoreEventsOnly leaves findings out of the Store (the Kafka detect
	// stage: the alert stage stores them from the findings topic).
	StoreEventsOnly bool
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

	// With a Store: hashes of pt.events (eventHash), the submitted
	// batches not yet acknowledged (oldest first), the input position the
	// last acknowledged batch reached, and the events taken before a
	// restart that the store had not acknowledged (stored again when read
	// again, not detected again), kept until the input is read again up
	// to replayUntil.
	hashes         []uint64
	unacked        []*storeBatch
	ackedPositions map[string][]byte
	ackedNext      int64
	replayed       map[uint64]struct{}
	replayUntil    storeUntil
	// replayClock: a checkpoint written before MetaStoreUntil existed
	// carries no bound; its events are forgotten at this time.
	replayClock time.Time
	// unstored is the count of events this partition's last checkpoint
	// listed as not stored (its share of the unstored gauge).
	unstored int
}

// storeUntil is the input position up to which the events the store had
// not acknowledged are read again after a restart: the offset after them
// (Kafka) or, for each source with such events, the position the source
// had reached when they were taken (the embedded stream; a source's
// records carry the position after them, so reading that position again
// means every event before it came back). Sources left in Positions have
// not been read that far yet.
type storeUntil struct {
	Next      int64             `json:"next,omitempty"`
	Positions map[string][]byte `json:"positions,omitempty"`
}

// storeBatch is one submission to the Store: a checkpoint's events with
// the input position after them, or a batch of findings.
type storeBatch struct {
	events    bool
	positions map[string][]byte
	next      int64
	hashes    []uint64
	findings  []schema.Finding
	acked     chan struct{}
}

func newStoreBatch() *storeBatch { return &storeBatch{acked: make(chan struct{})} }

func (b *storeBatch) ack() { close(b.acked) }

func (b *storeBatch) done() bool {
	select {
	case <-b.acked:
		return true
	default:
		return false
	}
}

// legacyReplayWindow is how long after a restart the events listed by a
// checkpoint without MetaStoreUntil are expected back.
const legacyReplayWindow = 2 * time.Minute

// eventHash identifies an event across a restart: FNV-1a of its source
// and id or, for an event without id (normalized JSON lines may have
// none; the audit parsers always set one), of its source, time, principal,
// action, resource, address, outcome and original record, which a record
// read again gives again. It is never 0.
func eventHash(ev *schema.Event) uint64 {
	h := fnv.New64a()
	h.Write([]byte(ev.Source))
	h.Write([]byte{0})
	if ev.ID != "" {
		h.Write([]byte(ev.ID))
	} else {
		h.Write([]byte{1})
		h.Write(binary.LittleEndian.AppendUint64(nil, uint64(ev.Time.UnixNano())))
		for _, f := range []string{ev.Principal, ev.Action, ev.Resource, ev.SourceIP, ev.Outcome} {
			h.Write([]byte(f))
			h.Write([]byte{0})
		}
		h.Write(ev.Raw)
	}
	if v := h.Sum64(); v != 0 {
		return v
	}
	return 1
}

type detectMetrics struct {
	events, suppressed, checkpoints, rebuilds, drains, restored, storeWait prometheus.Counter
	findings                                                               *prometheus.CounterVec
	partitions                                                             prometheus.Gauge
	unstored                                                               prometheus.Gauge
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
		storeWait: prometheus.NewCounter(prometheus.CounterOpts{Name: "auditwatch_detect_stage_store_wait_seconds_total",
			Help: "Time the detect stage spent handing events and findings to the store's queue (it waits only while the queue is full)."}),
		restored: prometheus.NewCounter(prometheus.CounterOpts{Name: "auditwatch_detect_stage_store_replayed_total",
			Help: "Events read again after a restart that the detectors had taken but the store had not acknowledged: stored, not detected again."}),
		findings: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "auditwatch_detect_stage_findings_total",
			Help: "Findings handed on by the detect stage, by detector."}, []string{"detector"}),
		partitions: prometheus.NewGauge(prometheus.GaugeOpts{Name: "auditwatch_detect_stage_partitions",
			Help: "Partitions owned by this detect stage."}),
		unstored: prometheus.NewGauge(prometheus.GaugeOpts{Name: "auditwatch_detect_stage_store_pending_events",
			Help: "Events taken by the detect stage that the store has not acknowledged, as of the last checkpoint (its input position waits before them)."}),
	}
	for _, c := range []prometheus.Collector{m.events, m.suppressed, m.checkpoints, m.rebuilds, m.drains, m.restored, m.storeWait, m.findings, m.partitions, m.unstored} {
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
	pt := &partition{id: p, det: det, next: -1, committed: committed, positions: map[string][]byte{}, last: now, lastRecord: now, ackedNext: -1}
	meta, err := det.Meta()
	if err != nil {
		det.Close()
		return nil, 0, fmt.Errorf("partition %d: %w", p, err)
	}
	if err := s.restoreStore(pt, meta); err != nil {
		det.Close()
		return nil, 0, fmt.Errorf("partition %d: %w", p, err)
	}
	if !s.cfg.Replayable {
		for k, v := range meta {
			if len(k) > len(MetaSourcePrefix) && k[:len(MetaSourcePrefix)] == MetaSourcePrefix {
				pt.positions[k[len(MetaSourcePrefix):]] = v
			}
		}
		pt.ackedPositions = maps.Clone(pt.positions)
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
		pt.next, pt.ackedNext = stored, stored
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
		pt.replayed, pt.unacked, pt.replayUntil, pt.replayClock = nil, nil, storeUntil{}, time.Time{}
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
		if pt.replayed != nil && s.replayReached(pt, r.Offset) {
			// Everything taken before the restart has been read again:
			// this record and those after it are new.
			s.forgetReplayed(pt)
		}
		if r.Source != "" {
			pt.positions[r.Source] = r.Position
			if u, ok := pt.replayUntil.Positions[r.Source]; ok && bytes.Equal(u, r.Position) {
				delete(pt.replayUntil.Positions, r.Source)
			}
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
		if pt.replayed != nil {
			// Taken by the detectors before a restart, not stored then:
			// store it, do not detect it again.
			h := eventHash(r.Event)
			if _, ok := pt.replayed[h]; ok {
				delete(pt.replayed, h)
				s.m.restored.Inc()
				pt.events = append(pt.events, *r.Event)
				pt.hashes = append(pt.hashes, h)
				pt.since++
				continue
			}
		}
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
		if (s.cfg.Events != nil || s.cfg.Store != nil) && !(s.cfg.Replayable && r.Offset < pt.suppressBelow) {
			pt.events = append(pt.events, *r.Event)
			if s.cfg.Store != nil {
				pt.hashes = append(pt.hashes, eventHash(r.Event))
			}
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
	// With a Store, a checkpoint follows each acknowledgement of
	// everything submitted, so the saved and committed input position
	// (and what the sources hold until then) trails the store by moments.
	acked := len(pt.unacked) > 0 && pt.unacked[len(pt.unacked)-1].done()
	if pt.since >= s.cfg.CheckpointEvents || acked || (pt.since > 0 || len(pt.findings) > 0) && time.Since(pt.last) >= s.cfg.CheckpointInterval ||
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
	if len(pt.events) > 0 && s.cfg.Events != nil {
		if err := s.cfg.Events.WriteEvents(ctx, pt.events); err != nil {
			return fmt.Errorf("partition %d: hand on events: %w", pt.id, err)
		}
	}
	positions, next := pt.positions, pt.next
	var meta map[string][]byte
	if s.cfg.Store != nil {
		// The events go to the store's queue; the position saved and
		// committed is the one the store has acknowledged.
		b := newStoreBatch()
		b.events, b.positions, b.next, b.hashes = true, maps.Clone(pt.positions), pt.next, pt.hashes
		pt.unacked = append(pt.unacked, b)
		if err := s.submit(ctx, pt.events, nil, b.ack); err != nil {
			pt.unacked = pt.unacked[:len(pt.unacked)-1]
			return fmt.Errorf("partition %d: store events: %w", pt.id, err)
		}
		pt.hashes = nil
		var err error
		if meta, err = s.storeMeta(pt); err != nil {
			return fmt.Errorf("partition %d: %w", pt.id, err)
		}
		positions, next = pt.ackedPositions, pt.ackedNext
	} else {
		meta = make(map[string][]byte, len(pt.positions)+1)
	}
	pt.events = pt.events[:0]
	for k, v := range positions {
		meta[MetaSourcePrefix+k] = v
	}
	if next >= 0 {
		meta[MetaOffset] = []byte(strconv.FormatInt(next, 10))
	}
	if s.cfg.BeforeCheckpoint != nil {
		if err := s.cfg.BeforeCheckpoint(); err != nil {
			return fmt.Errorf("partition %d: %w", pt.id, err)
		}
	}
	if err := pt.det.Checkpoint(meta); err != nil {
		return fmt.Errorf("partition %d: %w", pt.id, err)
	}
	if next >= 0 && pt.commit != nil && next != pt.committed {
		if err := pt.commit(ctx, pt.id, next); err != nil {
			return fmt.Errorf("partition %d: commit offset %d: %w", pt.id, next, err)
		}
		pt.committed = next
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
	if s.cfg.Store != nil && !s.cfg.StoreEventsOnly {
		// Stored off the alert path, after the outbox has them; until the
		// store acknowledges them they are in every checkpoint.
		if err := s.submitFindings(ctx, pt, slices.Clone(pt.findings)); err != nil {
			return err
		}
	}
	for i := range pt.findings {
		s.m.findings.WithLabelValues(pt.findings[i].Detector).Inc()
	}
	pt.findings = pt.findings[:0]
	return nil
}

// submitFindings submits findings to the Store, tracked until
// acknowledged.
func (s *DetectStage) submitFindings(ctx context.Context, pt *partition, fs []schema.Finding) error {
	b := newStoreBatch()
	b.findings = fs
	pt.unacked = append(pt.unacked, b)
	if err := s.submit(ctx, nil, fs, b.ack); err != nil {
		pt.unacked = pt.unacked[:len(pt.unacked)-1]
		return fmt.Errorf("partition %d: store findings: %w", pt.id, err)
	}
	return nil
}

// submit hands rows to the Store, counting the time it held the stage.
func (s *DetectStage) submit(ctx context.Context, evs []schema.Event, fs []schema.Finding, done func()) error {
	start := time.Now()
	err := s.cfg.Store.Submit(ctx, evs, fs, done)
	s.m.storeWait.Add(time.Since(start).Seconds())
	return err
}

// storeMeta moves the acknowledged batches' position into pt.ackedPositions
// and pt.ackedNext and returns the checkpoint entries of what the store
// has not acknowledged: the events (hashes) and the findings.
func (s *DetectStage) storeMeta(pt *partition) (map[string][]byte, error) {
	n := 0
	for n < len(pt.unacked) && pt.unacked[n].done() {
		if b := pt.unacked[n]; b.events {
			pt.ackedPositions, pt.ackedNext = b.positions, b.next
		}
		n++
	}
	pt.unacked = append(pt.unacked[:0:0], pt.unacked[n:]...)
	s.forgetReplayed(pt)
	var pending []byte
	var fs []schema.Finding
	for h := range pt.replayed {
		pending = binary.LittleEndian.AppendUint64(pending, h)
	}
	for _, b := range pt.unacked {
		for _, h := range b.hashes {
			if h != 0 {
				pending = binary.LittleEndian.AppendUint64(pending, h)
			}
		}
		fs = append(fs, b.findings...)
	}
	s.m.unstored.Add(float64(len(pending)/8 - pt.unstored))
	pt.unstored = len(pending) / 8
	meta := map[string][]byte{}
	if len(pending) > 0 {
		meta[MetaStorePending] = pending
		raw, err := json.Marshal(s.until(pt))
		if err != nil {
			return nil, fmt.Errorf("checkpoint store bound: %w", err)
		}
		meta[MetaStoreUntil] = raw
	}
	if len(fs) > 0 {
		raw, err := json.Marshal(fs)
		if err != nil {
			return nil, fmt.Errorf("checkpoint findings not yet stored: %w", err)
		}
		meta[MetaStoreFindings] = raw
	}
	return meta, nil
}

// forgetReplayed drops the events listed before a restart once the input
// has been read again past them (those not back by then never will be:
// a source that lost them, a rebuilt partition).
func (s *DetectStage) forgetReplayed(pt *partition) {
	if pt.replayed == nil || !s.replayReached(pt, pt.next) {
		return
	}
	if len(pt.replayed) > 0 {
		s.log.Warn("events the store had not acknowledged before the restart were not read again up to where they had been taken; forgotten", "partition", pt.id, "events", len(pt.replayed))
	}
	pt.replayed, pt.replayUntil, pt.replayClock = nil, storeUntil{}, time.Time{}
}

// replayReached reports whether the input has been read again past the
// events listed before the restart, with the next record at offset:
// Kafka, offset at or past the bound; the embedded stream, every source
// read again up to its bound position (by earlier records).
func (s *DetectStage) replayReached(pt *partition, offset int64) bool {
	switch {
	case !pt.replayClock.IsZero():
		return time.Now().After(pt.replayClock)
	case s.cfg.Replayable:
		return offset >= pt.replayUntil.Next
	default:
		return len(pt.replayUntil.Positions) == 0
	}
}

// until is the bound of the events a checkpoint lists as not stored: the
// input position reached now, for each source whose position is past the
// acknowledged one, and the restored bound of sources not yet read that
// far again.
func (s *DetectStage) until(pt *partition) storeUntil {
	u := storeUntil{Next: max(pt.next, pt.replayUntil.Next)}
	if s.cfg.Replayable {
		return u
	}
	u.Positions = maps.Clone(pt.replayUntil.Positions)
	for src, pos := range pt.positions {
		if _, kept := u.Positions[src]; kept || bytes.Equal(pos, pt.ackedPositions[src]) {
			continue
		}
		if u.Positions == nil {
			u.Positions = map[string][]byte{}
		}
		u.Positions[src] = pos
	}
	return u
}

// restoreStore reads what the store had not acknowledged before a
// restart: the events to store again without detecting them, and the
// findings, submitted again now.
func (s *DetectStage) restoreStore(pt *partition, meta map[string][]byte) error {
	if s.cfg.Store == nil {
		return nil
	}
	if raw := meta[MetaStorePending]; len(raw) >= 8 {
		pt.replayed = make(map[uint64]struct{}, len(raw)/8)
		for i := 0; i+8 <= len(raw); i += 8 {
			pt.replayed[binary.LittleEndian.Uint64(raw[i:])] = struct{}{}
		}
		if raw, ok := meta[MetaStoreUntil]; ok {
			if err := json.Unmarshal(raw, &pt.replayUntil); err != nil {
				return fmt.Errorf("checkpoint store bound: %w", err)
			}
		} else {
			pt.replayClock = time.Now().Add(legacyReplayWindow)
		}
		s.log.Warn("events taken before the restart are stored when read again, not detected again", "partition", pt.id, "events", len(pt.replayed))
	}
	if raw := meta[MetaStoreFindings]; len(raw) > 0 {
		var fs []schema.Finding
		if err := json.Unmarshal(raw, &fs); err != nil {
			return fmt.Errorf("checkpoint findings not yet stored: %w", err)
		}
		if err := s.submitFindings(context.Background(), pt, fs); err != nil {
			return err
		}
	}
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
		if pt.since > 0 || len(pt.findings) > 0 || len(pt.unacked) > 0 {
			if err := s.checkpoint(ctx, pt); err != nil {
				errs = append(errs, err)
			} else if s.cfg.Store != nil && len(pt.unacked) > 0 {
				// A clean stop leaves nothing to read again: write what
				// the store has queued, then save the position after it.
				if err := flushBounded(ctx, s.cfg.Store); err != nil {
					s.log.Warn("store not flushed at stop; the events after the saved position are read again at the next start", "partition", p, "err", err)
				} else if err := s.checkpoint(ctx, pt); err != nil {
					errs = append(errs, err)
				}
			}
		}
		if err := pt.det.Close(); err != nil {
			errs = append(errs, err)
		}
		s.mu.Lock()
		delete(s.parts, p)
		s.mu.Unlock()
		s.m.partitions.Dec()
		s.m.unstored.Sub(float64(pt.unstored))
	}
	return errors.Join(errs...)
}
