package detect

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"auditwatch/detect/state"
	"auditwatch/schema"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrNoStore is returned by New without a state store.
var ErrNoStore = errors.New("detect: a state store is required")

// Spaces of the engine's own entries in the store.
const (
	spaceEngine     = "_engine"
	spaceMeta       = "_meta"
	spacePrincipals = "principals"
)

var (
	keyClock = []byte("clock")
	// keyHash holds the store's hashKey (16 bytes).
	keyHash = []byte("hashkey")
)

// detector is one detection rule over in-order events.
type detector interface {
	process(ev *schema.Event, c *evalCtx, out []schema.Finding) []schema.Finding
	tables() []tableStats
}

// Engine runs every enabled detector over events in event-time order.
// It is not safe for concurrent use: one goroutine owns it (one per stream
// partition).
type Engine struct {
	cfg Config
	st  *state.Store
	log *slog.Logger
	m   *metrics

	principals *table[principalState]
	scope      scope
	dets       []detector
	h          hasher
	hkey       hashKey // shared by every hasher of the engine
	saveHKey   bool    // hkey is new: the next checkpoint stores it

	buf          evHeap
	seq          uint64
	maxSeen      time.Time
	released     time.Time // event time of the last released event
	relSeq       uint64    // and its seq
	hasReleased  bool
	persistedSeq uint64       // events up to this seq are in saved segments
	segments     []segment    // saved segments of the reorder buffer
	scratch      schema.Event // the event being released
	in           schema.Event // the event being taken in (keeps ev off the heap)
	ctx          evalCtx

	stats    Stats
	ownStore bool
}

// Stats are the engine's counters since it started.
type Stats struct {
	Events          uint64
	Late            uint64
	Findings        map[string]uint64
	Buffered        int
	ReorderOverflow uint64
	Suppressed      uint64 // privileged use inside a maintenance window
	Evictions       uint64 // sum over Tables
	SpillDropped    uint64 // sum over Tables
	Expired         uint64 // sum over Tables
	Tables          []TableStats
}

// TableStats describes one bounded working set.
type TableStats struct {
	Space        string
	Size         int
	Evictions    uint64
	SpillDropped uint64
	Spilled      int
	LoadErrors   uint64
	// Expired counts saved entries deleted after idling past their
	// retention (forget_after, cool-downs): disk stays bounded too.
	Expired uint64
}

type clock struct {
	MaxSeen      time.Time `json:"max_seen"`
	Released     time.Time `json:"released"`
	RelSeq       uint64    `json:"rel_seq"`
	HasReleased  bool      `json:"has_released"`
	Seq          uint64    `json:"seq"`
	PersistedSeq uint64    `json:"persisted_seq"`
	Segments     []segment `json:"segments"`
}

// segment is a saved run of buffered events, in seq order. The reorder
// buffer is saved incrementally: a checkpoint writes the events that
// arrived since the previous one as one segment and deletes segments whose
// events have all been released, so a checkpoint costs what arrived since,
// not the whole buffer.
type segment struct {
	First uint64 `json:"first"`
	Last  uint64 `json:"last"`
}

func (s segment) key() []byte {
	k := make([]byte, 12)
	copy(k, "seg/")
	binary.BigEndian.PutUint64(k[4:], s.First)
	return k
}

// New builds an Engine over st, restoring the detector state, clock and
// reorder buffer of the last Checkpoint. cfg gets its defaults filled and is
// validated here.
func New(cfg Config, st *state.Store, logger *slog.Logger, reg prometheus.Registerer) (*Engine, error) {
	if st == nil {
		return nil, ErrNoStore
	}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("detect: config: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	e := &Engine{cfg: cfg, st: st, log: logger, m: newMetrics(reg)}
	if err := e.loadHashKey(); err != nil {
		return nil, err
	}
	e.h = e.newHasher()
	e.stats.Findings = make(map[string]uint64)
	e.principals = e.newPrincipalTable()
	e.scope = newScope(cfg.FirstTimeAccess.Scope, cfg.FirstTimeAccess.VaultMounts)
	if on(cfg.UnexpectedIP.Enabled) {
		e.dets = append(e.dets, newUnexpectedIP(e))
	}
	if on(cfg.FirstTimeAccess.Enabled) {
		e.dets = append(e.dets, newFirstTime(e))
	}
	if on(cfg.AuthFailureSpike.Enabled) {
		e.dets = append(e.dets, newAuthSpike(e))
	}
	if on(cfg.PrivilegedUse.Enabled) {
		e.dets = append(e.dets, newPrivileged(e))
	}
	if on(cfg.AccessVolumeSpike.Enabled) {
		e.dets = append(e.dets, newVolume(e))
	}
	if err := e.restore(); err != nil {
		return nil, err
	}
	return e, nil
}

// loadHashKey reads the store's hash key; a store never written gets a
// new random one, a store written before keys were keyed keeps SHA-256.
func (e *Engine) loadHashKey() error {
	raw, err := e.st.Get(spaceEngine, keyHash)
	if err != nil {
		return fmt.Errorf("detect: restore hash key: %w", err)
	}
	if raw != nil {
		if len(raw) != 16 {
			return fmt.Errorf("detect: restore hash key: %d bytes, want 16", len(raw))
		}
		e.hkey = hashKey{k0: binary.LittleEndian.Uint64(raw[:8]), k1: binary.LittleEndian.Uint64(raw[8:])}
		return nil
	}
	clk, err := e.st.Get(spaceEngine, keyClock)
	if err != nil {
		return fmt.Errorf("detect: restore clock: %w", err)
	}
	if clk != nil {
		e.hkey.legacy = true
		return nil
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return fmt.Errorf("detect: hash key: %w", err)
	}
	e.hkey = hashKey{k0: binary.LittleEndian.Uint64(b[:8]), k1: binary.LittleEndian.Uint64(b[8:])}
	e.saveHKey = true
	return nil
}

func (e *Engine) newHasher() hasher { return hasher{k: &e.hkey} }

func (e *Engine) restore() error {
	raw, err := e.st.Get(spaceEngine, keyClock)
	if err != nil {
		return fmt.Errorf("detect: restore clock: %w", err)
	}
	if raw == nil {
		return nil
	}
	var c clock
	if err := json.Unmarshal(raw, &c); err != nil {
		return fmt.Errorf("detect: restore clock: %w", err)
	}
	e.maxSeen, e.released, e.hasReleased, e.seq = c.MaxSeen, c.Released, c.HasReleased, c.Seq
	e.relSeq, e.persistedSeq, e.segments = c.RelSeq, c.PersistedSeq, c.Segments
	for _, sg := range e.segments {
		raw, err := e.st.Get(spaceEngine, sg.key())
		if err != nil {
			return fmt.Errorf("detect: restore reorder buffer: %w", err)
		}
		if raw == nil {
			return fmt.Errorf("detect: restore reorder buffer: segment %d missing", sg.First)
		}
		d := decoder{b: raw}
		for len(d.b) > 0 {
			var ev schema.Event
			seq := d.readEvent(&ev)
			if d.err != nil {
				return fmt.Errorf("detect: restore reorder buffer: segment %d: %w", sg.First, d.err)
			}
			t := ev.Time.UnixNano()
			if e.hasReleased && (t < e.released.UnixNano() || t == e.released.UnixNano() && seq <= e.relSeq) {
				continue // released before the checkpoint
			}
			e.buf.push(seq, &ev)
		}
	}
	e.stats.Buffered = e.buf.len()
	e.m.buffered.Set(float64(e.buf.len()))
	return nil
}

// Config returns the effective configuration (defaults filled).
func (e *Engine) Config() Config { return e.cfg }

// Process takes one event. Events within the allowed lateness of the
// newest event seen wait in the reorder buffer and are evaluated in
// event-time order; the findings returned are those of the events this call
// released. An event older than the newest event seen minus the allowed
// lateness is evaluated at once and its findings are marked Late.
func (e *Engine) Process(ev schema.Event) []schema.Finding {
	e.stats.Events++
	e.m.events.Inc()
	if !e.maxSeen.IsZero() && ev.Time.Before(e.maxSeen.Add(-e.cfg.AllowedLateness.D())) ||
		e.hasReleased && ev.Time.Before(e.released) {
		// Beyond the allowed lateness (or behind an event already released
		// early from a full buffer): it can no longer be put in order;
		// evaluate it now.
		e.stats.Late++
		e.m.late.Inc()
		e.in = ev
		return e.evaluate(&e.in, true, nil)
	}
	e.seq++
	e.in = ev
	e.buf.push(e.seq, &e.in)
	if ev.Time.After(e.maxSeen) {
		e.maxSeen = ev.Time
	}
	wm := e.maxSeen.Add(-e.cfg.AllowedLateness.D()).UnixNano()
	var out []schema.Finding
	for e.buf.len() > 0 {
		if e.buf.peekTime() > wm {
			if e.buf.len() <= e.cfg.MaxBuffered {
				break
			}
			e.stats.ReorderOverflow++
			e.m.overflow.Inc()
		}
		seq := e.buf.pop(&e.scratch)
		out = e.release(seq, &e.scratch, out)
	}
	e.stats.Buffered = e.buf.len()
	e.m.buffered.Set(float64(e.buf.len()))
	return out
}

func (e *Engine) release(seq uint64, ev *schema.Event, out []schema.Finding) []schema.Finding {
	// Releases happen in (time, seq) order, so this is the release frontier.
	e.released, e.relSeq, e.hasReleased = ev.Time, seq, true
	return e.evaluate(ev, false, out)
}

// Advance moves event time to at least t when input is idle, releasing
// the buffered events older than t minus the allowed lateness. A live
// pipeline calls it on a timer with the wall clock so that sparse traffic
// is not held back until newer events arrive; events then arriving older
// than that are late, as they would be by event time alone.
func (e *Engine) Advance(t time.Time) []schema.Finding {
	if !t.After(e.maxSeen) {
		return nil
	}
	e.maxSeen = t
	wm := e.maxSeen.Add(-e.cfg.AllowedLateness.D()).UnixNano()
	var out []schema.Finding
	for e.buf.len() > 0 && e.buf.peekTime() <= wm {
		seq := e.buf.pop(&e.scratch)
		out = e.release(seq, &e.scratch, out)
	}
	e.stats.Buffered = e.buf.len()
	e.m.buffered.Set(float64(e.buf.len()))
	return out
}

// Drain evaluates every buffered event (end of input).
func (e *Engine) Drain() []schema.Finding {
	var out []schema.Finding
	for e.buf.len() > 0 {
		seq := e.buf.pop(&e.scratch)
		out = e.release(seq, &e.scratch, out)
	}
	e.stats.Buffered = 0
	e.m.buffered.Set(0)
	return out
}

// Buffered is the number of events waiting in the reorder buffer.
func (e *Engine) Buffered() int { return e.buf.len() }

func identity(ev *schema.Event) bool {
	return ev.Principal != "" && ev.PrincipalType != schema.PrincipalTypeAnonymous
}

func (e *Engine) evaluate(ev *schema.Event, late bool, out []schema.Finding) []schema.Finding {
	e.ctx = evalCtx{e: e, late: late}
	c := &e.ctx
	c.history = !e.cfg.LearnUntil.IsZero() && ev.Time.Before(e.cfg.LearnUntil)
	if identity(ev) {
		n, _ := e.principals.get(e.h.sum("p", ev.Principal), true)
		t := ev.Time.UnixNano()
		if n.v.First == 0 || t < n.v.First {
			n.v.First = t
			e.principals.touch(n)
		}
		if t > n.v.Last+int64(time.Hour) {
			n.v.Last = t
			e.principals.touch(n)
		}
		c.first = time.Unix(0, n.v.First).UTC()
		c.hasPrincipal = true
	}
	start := len(out)
	for _, d := range e.dets {
		out = d.process(ev, c, out)
	}
	for i := start; i < len(out); i++ {
		e.stats.Findings[out[i].Detector]++
		e.m.finding(out[i].Detector)
	}
	return out
}

// evalCtx carries what every detector needs to know about one event.
type evalCtx struct {
	e            *Engine
	history      bool // before LearnUntil: learn, raise nothing
	late         bool
	hasPrincipal bool
	first        time.Time // principal first seen (event time)

	pkeyOK bool // pkey computed
	pkey   key  // key of the event's principal alone

	scoped   bool // resource/inScope computed
	inScope  bool
	resource string // canonical resource when inScope
}

// scope returns the event's canonical resource and whether it is a secret
// access (first_time_access scope), computed once per event.
func (c *evalCtx) scope(ev *schema.Event) (string, bool) {
	if !c.scoped {
		c.resource, c.inScope = c.e.scope.match(ev)
		c.scoped = true
	}
	return c.resource, c.inScope
}

// principalKey is the table key of the event's principal (several
// detectors key their state by it), computed once per event.
func (c *evalCtx) principalKey(ev *schema.Event) key {
	if !c.pkeyOK {
		c.pkey, c.pkeyOK = c.e.h.sum(ev.Principal), true
	}
	return c.pkey
}

// learned reports whether the event's principal is past period at t: its
// first event is at least period ago, or it was seen in the history and
// the history is over.
func (c *evalCtx) learned(t time.Time, period time.Duration) bool {
	if !c.hasPrincipal {
		return false
	}
	lu := c.e.cfg.LearnUntil
	if !lu.IsZero() && c.first.Before(lu) && !t.Before(lu) {
		return true
	}
	return t.Sub(c.first) >= period
}

// finding starts a Finding from its triggering event.
func (e *Engine) finding(det string, sev schema.Severity, ev *schema.Event, c *evalCtx) schema.Finding {
	f := schema.Finding{
		Detector: det, Severity: sev, Time: ev.Time,
		Principal: ev.Principal, PrincipalName: ev.PrincipalName,
		Resource: ev.Resource, SourceIP: ev.SourceIP, Source: ev.Source, Account: ev.Account,
		Count: 1, EventIDs: []string{ev.ID}, FirstTime: ev.Time, LastTime: ev.Time, Late: c.late,
		Attributes: map[string]string{"action": ev.Action},
	}
	if ev.SourceIP == "" && ev.SourceIPRaw != "" {
		f.Attributes["source_ip_raw"] = ev.SourceIPRaw
	}
	if ev.PrincipalType != "" {
		f.Attributes["principal_type"] = ev.PrincipalType
	}
	return f
}

// Checkpoint persists, in one transaction, every dirty and spilled state
// entry, the event-time clock, the reorder buffer and meta (the caller's
// input positions; it replaces the previous meta). After a crash the engine
// restarts from exactly this point.
func (e *Engine) Checkpoint(meta map[string][]byte) error {
	start := time.Now()
	var b state.Batch
	tabs := e.allTables()
	for _, t := range tabs {
		if err := t.flush(&b); err != nil {
			return fmt.Errorf("detect: checkpoint %s: %w", t.name(), err)
		}
		if e.hasReleased {
			if err := t.sweepInto(&b, e.released.UnixNano()); err != nil {
				return fmt.Errorf("detect: checkpoint %s: %w", t.name(), err)
			}
		}
	}
	// Reorder buffer: a new segment for what arrived since the last
	// checkpoint; drop segments with nothing left in the buffer.
	segs := append([]segment(nil), e.segments...)
	if blob, first, last := e.buf.appendSince(nil, e.persistedSeq); first != 0 {
		sg := segment{First: first, Last: last}
		b.Put(spaceEngine, sg.key(), blob)
		segs = append(segs, sg)
	}
	live := make([]bool, len(segs))
	for _, seq := range e.buf.seqs() {
		i := sort.Search(len(segs), func(i int) bool { return segs[i].Last >= seq })
		if i < len(segs) && segs[i].First <= seq {
			live[i] = true
		}
	}
	kept := segs[:0]
	for i, sg := range segs {
		if live[i] {
			kept = append(kept, sg)
		} else {
			b.Delete(spaceEngine, sg.key())
		}
	}
	cl, err := json.Marshal(clock{MaxSeen: e.maxSeen, Released: e.released, RelSeq: e.relSeq, HasReleased: e.hasReleased,
		Seq: e.seq, PersistedSeq: e.seq, Segments: kept})
	if err != nil {
		return fmt.Errorf("detect: checkpoint clock: %w", err)
	}
	b.Put(spaceEngine, keyClock, cl)
	if e.saveHKey {
		hk := make([]byte, 16)
		binary.LittleEndian.PutUint64(hk[:8], e.hkey.k0)
		binary.LittleEndian.PutUint64(hk[8:], e.hkey.k1)
		b.Put(spaceEngine, keyHash, hk)
	}
	b.Reset(spaceMeta)
	keys := make([]string, 0, len(meta))
	for k := range meta {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b.Put(spaceMeta, []byte(k), append([]byte(nil), meta[k]...))
	}
	if err := e.st.Commit(&b); err != nil {
		e.m.checkpointErrors.Inc()
		return fmt.Errorf("detect: checkpoint: %w", err)
	}
	for _, t := range tabs {
		before := t.expiredCount()
		t.committed()
		if n := t.expiredCount() - before; n > 0 {
			e.m.expiredN(t.name(), n)
		}
	}
	e.segments, e.persistedSeq = kept, e.seq
	e.saveHKey = false
	e.m.checkpoints.Inc()
	e.m.checkpointSeconds.Observe(time.Since(start).Seconds())
	return nil
}

// Meta returns the meta stored by the last Checkpoint (empty map if none).
func (e *Engine) Meta() (map[string][]byte, error) {
	out := map[string][]byte{}
	err := e.st.ForEach(spaceMeta, func(k, v []byte) error {
		out[string(k)] = append([]byte(nil), v...)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("detect: meta: %w", err)
	}
	return out, nil
}

// Close releases the engine. It does not checkpoint: whatever was not
// checkpointed is replayed after a restart. A store passed to New stays
// open (its owner closes it); one opened by Open is closed.
func (e *Engine) Close() error {
	if e.ownStore {
		return e.st.Close()
	}
	return nil
}

// Open opens the state store described by sc and an Engine over it that
// owns the store (Close closes both). This is how a pipeline opens one
// engine per stream partition: sc.Partition names its key-space.
func Open(cfg Config, sc state.Config, logger *slog.Logger, reg prometheus.Registerer) (*Engine, error) {
	st, err := state.Open(sc)
	if err != nil {
		return nil, err
	}
	e, err := New(cfg, st, logger, reg)
	if err != nil {
		st.Close()
		return nil, err
	}
	e.ownStore = true
	return e, nil
}

func (e *Engine) allTables() []tableStats {
	out := []tableStats{e.principals}
	for _, d := range e.dets {
		out = append(out, d.tables()...)
	}
	return out
}

// Stats returns a snapshot of the counters.
func (e *Engine) Stats() Stats {
	s := e.stats
	s.Findings = make(map[string]uint64, len(e.stats.Findings))
	for k, v := range e.stats.Findings {
		s.Findings[k] = v
	}
	s.Tables = nil
	s.Evictions, s.SpillDropped, s.Expired = 0, 0, 0
	for _, t := range e.allTables() {
		size, ev, sd, le, sp := t.stats()
		ex := t.expiredCount()
		s.Tables = append(s.Tables, TableStats{Space: t.name(), Size: size, Evictions: ev, SpillDropped: sd, LoadErrors: le, Spilled: sp, Expired: ex})
		s.Evictions += ev
		s.SpillDropped += sd
		s.Expired += ex
	}
	return s
}

// principalState is the engine-wide record of a principal.
type principalState struct {
	First int64 // first event, unix ns
	Last  int64 // last event (refreshed at most hourly), unix ns
}

type principalCodec struct{}

func (principalCodec) encode(v *principalState) ([]byte, error) {
	return encodeVarints(v.First, v.Last), nil
}
func (principalCodec) decode(b []byte, v *principalState) error {
	xs, err := decodeVarints(b, 2)
	if err != nil {
		return err
	}
	v.First, v.Last = xs[0], xs[1]
	return nil
}

func (e *Engine) newPrincipalTable() *table[principalState] {
	c := &e.cfg
	retain := max(c.UnexpectedIP.ForgetAfter, c.FirstTimeAccess.ForgetAfter, c.UnexpectedIP.LearningPeriod,
		c.FirstTimeAccess.LearningPeriod, c.AccessVolumeSpike.LearningPeriod).D()
	return newTable(spacePrincipals, e.cfg.MaxPrincipals, e.cfg.MaxSpill, e.st, codec[principalState](principalCodec{}), e.log, e.m).
		expire(retain, func(v *principalState) int64 { return max(v.First, v.Last) })
}

// jsonCodec persists a value as JSON.
type jsonCodec[V any] struct{}

func (jsonCodec[V]) encode(v *V) ([]byte, error) { return json.Marshal(v) }
func (jsonCodec[V]) decode(b []byte, v *V) error { return json.Unmarshal(b, v) }
