package sigma

import (
	"fmt"
	"sync/atomic"
	"time"

	"auditwatch/schema"
)

// Engine is the detector engine a Detector runs beside (detect.Engine).
type Engine interface {
	Process(ev schema.Event) []schema.Finding
	Checkpoint(meta map[string][]byte) error
	Meta() (map[string][]byte, error)
	Close() error
}

type drainer interface {
	Drain() []schema.Finding
	Buffered() int
}

// MetaKey is the checkpoint meta entry holding the correlation state: it
// is saved in the same transaction as the engine's state and the input
// position, so a restart resumes every open correlation window exactly
// where the input resumes.
const MetaKey = "sigma/correlations"

// Detector runs Sigma rules on each event's original record, then hands
// the event (without its record: the engine has no use for it) to the
// engine. Single-event rules fire on arrival and ignore learning periods.
// The rule set can be replaced while running (SetRules); the swap happens
// before the next event.
type Detector struct {
	inner   Engine
	ev      *Evaluator
	cur     atomic.Pointer[Evaluator] // ev, for Counters
	pending atomic.Pointer[Set]
	// limits carried over to the evaluator of a new rule set
	maxGroups int
	cooldown  time.Duration
}

// Configure applies the config's limits: open correlation groups and
// bursts (MaxGroups) and the cool-down of repeated matches. Call before
// the first event.
func (d *Detector) Configure(c Config) {
	d.maxGroups, d.cooldown = c.MaxGroups, c.RepeatCooldown()
	d.ev.corr.MaxGroups, d.ev.corr.Cooldown = d.maxGroups, d.cooldown
}

// NewDetector wraps inner with the rule set s and restores the
// correlation state from inner's checkpoint meta.
func NewDetector(inner Engine, s *Set) (*Detector, error) {
	d := &Detector{inner: inner, ev: NewEvaluator(s), maxGroups: 100000}
	d.cur.Store(d.ev)
	meta, err := inner.Meta()
	if err != nil {
		return nil, err
	}
	if b, ok := meta[MetaKey]; ok {
		if err := d.ev.corr.Restore(b); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// Counters sums the evaluation counters: records that could not be read,
// events without a record, and correlation inputs late, repeated (a
// replay after a restart) or dropped with an evicted group. Safe from any
// goroutine.
func (d *Detector) Counters() (unreadable, noRecord, late, repeated, evicted int64) {
	ev := d.cur.Load()
	return ev.Unparsed.Load(), ev.NoRaw.Load(), ev.corr.Late.Load(), ev.corr.Repeated.Load(), ev.corr.Evicted.Load()
}

// SetRules replaces the rule set (safe from any goroutine). Open
// correlation windows of rules kept in the new set carry over.
func (d *Detector) SetRules(s *Set) { d.pending.Store(s) }

// Rules is the rule set in use.
func (d *Detector) Rules() *Set { return d.ev.set }

// Evaluator exposes the evaluator (counters, correlation state).
func (d *Detector) Evaluator() *Evaluator { return d.ev }

func (d *Detector) swap() {
	// (a load first: a swap per event is a locked instruction)
	if d.pending.Load() == nil {
		return
	}
	s := d.pending.Swap(nil)
	if s == nil {
		return
	}
	snap, err := d.ev.corr.Snapshot()
	ne := NewEvaluator(s)
	ne.corr.MaxGroups, ne.corr.Cooldown = d.maxGroups, d.cooldown
	if err == nil {
		_ = ne.corr.Restore(snap) // groups of rules no longer loaded are dropped
	}
	ne.Unparsed.Store(d.ev.Unparsed.Load())
	ne.NoRaw.Store(d.ev.NoRaw.Load())
	d.ev = ne
	d.cur.Store(ne)
}

// Process evaluates the rules, then runs the engine.
func (d *Detector) Process(ev schema.Event) []schema.Finding {
	d.swap()
	// an event without its record counts as such, unless Wants let the
	// record go because the event alone makes its findings
	out := d.ev.Process(&ev, nil)
	ev.Raw = nil
	fs := d.inner.Process(ev)
	if len(out) == 0 {
		return fs
	}
	return append(fs, out...)
}

// Checkpoint saves the correlation state with the engine's.
func (d *Detector) Checkpoint(meta map[string][]byte) error {
	snap, err := d.ev.corr.Snapshot()
	if err != nil {
		return err
	}
	m := make(map[string][]byte, len(meta)+1)
	for k, v := range meta {
		m[k] = v
	}
	m[MetaKey] = snap
	if err := d.inner.Checkpoint(m); err != nil {
		return fmt.Errorf("sigma: %w", err)
	}
	return nil
}

// Meta is the engine's meta without the correlation state.
func (d *Detector) Meta() (map[string][]byte, error) {
	m, err := d.inner.Meta()
	if err != nil {
		return nil, err
	}
	delete(m, MetaKey)
	return m, nil
}

// Close closes the engine.
func (d *Detector) Close() error { return d.inner.Close() }

// Note forwards a note (an event of another partition the engine's state
// needs: pipeline.Noter) to the engine; rules do not see it.
func (d *Detector) Note(ev schema.Event) []schema.Finding {
	if n, ok := d.inner.(interface {
		Note(schema.Event) []schema.Finding
	}); ok {
		return n.Note(ev)
	}
	return nil
}

// Join forwards findings raised beside the engine (pipeline.Joiner) to
// it, when it takes them.
func (d *Detector) Join(fs []schema.Finding) []schema.Finding {
	if j, ok := d.inner.(interface {
		Join([]schema.Finding) []schema.Finding
	}); ok {
		return j.Join(fs)
	}
	return fs
}

// NeedCheckpoint forwards the engine's request for an early checkpoint.
func (d *Detector) NeedCheckpoint() bool {
	nc, ok := d.inner.(interface{ NeedCheckpoint() bool })
	return ok && nc.NeedCheckpoint()
}

type flusher interface{ Flush() []schema.Finding }

// Flush runs the engine's Flush, when it has one.
func (d *Detector) Flush() []schema.Finding {
	if f, ok := d.inner.(flusher); ok {
		return f.Flush()
	}
	return nil
}

// Drain drains the engine's reorder buffer, when it has one.
func (d *Detector) Drain() []schema.Finding {
	if dr, ok := d.inner.(drainer); ok {
		return dr.Drain()
	}
	return nil
}

// Buffered is the engine's reorder buffer length, when it has one.
func (d *Detector) Buffered() int {
	if dr, ok := d.inner.(drainer); ok {
		return dr.Buffered()
	}
	return 0
}
