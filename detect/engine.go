package detect

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
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
	// keyLearnUntil holds the end of the history a store learned
	// (`auditwatch baseline`, replay --learn-until): principals seen
	// before it stay learned from then on, in every later run.
	keyLearnUntil = []byte("learn_until")
	// keyHash holds the store's hashKey (16 bytes).
	keyHash = []byte("hashkey")
)

// detector is one detection rule over in-order events.
type detector interface {
	process(ev *schema.Event, c *evalCtx, out []schema.Finding) []schema.Finding
	tables() []tableStats
}

// Engine runs every enabled detector over events as they arrive.
// It is not safe for concurrent use: one goroutine owns it (one per stream
// partition).
type Engine struct {
	cfg Config
	st  *state.Store
	log *slog.Logger
	m   *metrics

	principals *table[principalState]
	tabs       []tableStats // every table (principals and the detectors')
	// pool, when set, is the process's state budget this engine shares
	// (SharePool); poolVer is the pool version its limits follow.
	pool    *Pool
	poolVer uint64
	scope   scope
	dets    []detector
	h       hasher
	hkey    hashKey // shared by every hasher of the engine
	// clockRead is the last wall-clock reading (ns) ahead used, for
	// clockUses events since (ahead)
	clockRead int64
	clockUses int
	saveHKey  bool // hkey is new: the next checkpoint stores it

	// Event time: one watermark per source (the newest event time seen
	// from it, events dated too far ahead excluded), so one late source
	// never makes another's events late.
	sources map[string]*sourceClock
	maxWM   int64 // newest watermark of any source (unix ns)
	// maxLate is the largest lateness of any source: how long window
	// state is kept for events arriving late.
	maxLate int64
	now     func() time.Time

	// pending: events a store written by an older version held in its
	// reorder buffer; evaluated before the next event.
	pending           []schema.Event
	legacySegs        []segment
	in                schema.Event // the event being taken in (keeps ev off the heap)
	ctx               evalCtx
	lastSkewLog       time.Time
	lastEvictLog      time.Time
	loggedLearnEvicts uint64

	stats    Stats
	ownStore bool
}

// sourceClock is one source's event-time watermark.
type sourceClock struct {
	wm       int64 // newest event time seen, unix ns (0: none yet)
	lateness int64
}

// maxSources bounds the per-source clocks: Source is set by the parsers
// (cloudtrail, vault, ...), anything beyond shares the "other" clock.
const maxSources = 16

// Stats are the engine's counters since it started.
type Stats struct {
	Events uint64
	// Late: events more than their source's lateness behind its
	// watermark (processed at once, findings marked Late).
	Late uint64
	// Ahead: events dated more than max_ahead after the wall clock;
	// Behind: events more than max_behind behind their source's watermark.
	// Both are processed and their findings flagged (time_skew); neither
	// moves a watermark.
	Ahead, Behind uint64
	// FirstSeenRevised: events that arrived after a later event of the
	// same principal and moved its first-seen time earlier: decisions
	// already taken for that principal used the later first-seen time (a
	// learning period judged on what was known at arrival).
	FirstSeenRevised uint64
	// StateBytes: estimated bytes of detector state in memory (tables and
	// unsaved spill), bounded by Config.StateBudget; LearningEvictions:
	// principals evicted from memory while still learning.
	StateBytes        int64
	LearningEvictions uint64
	// OneOffDropped: unsaved entries of new keys (principals not saved
	// before their event, or none) dropped when evicted before a
	// checkpoint admitted them (see table).
	OneOffDropped uint64
	// Held: unsaved entries of new keys that checkpoints have not written
	// yet (a flood's; see table.flush). A crash loses them: such a
	// principal's next event is taken for its first.
	Held         int
	Findings     map[string]uint64
	Suppressed   uint64 // privileged use inside a maintenance window
	Evictions    uint64 // sum over Tables
	SpillDropped uint64 // sum over Tables
	Expired      uint64 // sum over Tables
	Tables       []TableStats
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
	// OneOffDropped counts unsaved entries of new keys dropped when
	// evicted before a checkpoint admitted them.
	OneOffDropped uint64
	// Held counts unsaved entries of new keys that checkpoints have not
	// written yet.
	Held int
}

// clock is the saved event-time state. The fields after Sources are
// read from stores written by versions that had a reorder buffer.
type clock struct {
	Sources map[string]int64 `json:"sources,omitempty"`
	MaxWM   int64            `json:"max_wm,omitempty"`

	MaxSeen     time.Time `json:"max_seen"`
	Released    time.Time `json:"released"`
	RelSeq      uint64    `json:"rel_seq"`
	HasReleased bool      `json:"has_released"`
	Segments    []segment `json:"segments"`
}

// segment is a saved run of reorder-buffer events (older versions).
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

// New builds an Engine over st, restoring the detector state and
// watermarks of the last Checkpoint. cfg gets its defaults filled and is
// validated here.
func New(cfg Config, st *state.Store, logger *slog.Logger, reg prometheus.Registerer) (*Engine, error) {
	if st == nil {
		return nil, ErrNoStore
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("detect: config: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	e := &Engine{cfg: cfg, st: st, log: logger, m: newMetrics(reg), sources: map[string]*sourceClock{}, now: cfg.Now}
	lim := cfg.StateBudget()
	e.m.mem = &memBudget{limit: lim, spillLimit: lim / 8}
	if e.now == nil {
		e.now = time.Now
	}
	e.maxLate = cfg.AllowedLateness.D().Nanoseconds()
	for _, d := range cfg.Lateness {
		e.maxLate = max(e.maxLate, d.D().Nanoseconds())
	}
	if err := e.loadHashKey(); err != nil {
		return nil, err
	}
	e.h = e.newHasher()
	e.stats.Findings = make(map[string]uint64)
	e.principals = e.newPrincipalTable()
	learnFor := max(cfg.UnexpectedIP.LearningPeriod, cfg.FirstTimeAccess.LearningPeriod, cfg.AccessVolumeSpike.LearningPeriod).D().Nanoseconds()
	e.principals.learning = func(v *principalState) bool { return e.maxWM-v.First < learnFor }
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
	if on(cfg.SecretEnumeration.Enabled) {
		e.dets = append(e.dets, newEnumeration(e))
	}
	if on(cfg.NewLocation.Enabled) {
		e.dets = append(e.dets, newNewLocation(e))
	}
	if on(cfg.Honeytoken.Enabled) && cfg.Honeytoken.any() {
		e.dets = append(e.dets, newHoneytoken(e))
	}
	e.tabs = e.allTables()
	shareBudget(lim, e.tabs)
	if err := e.restoreLearnUntil(); err != nil {
		return nil, err
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

// EndHistory sets where the learned history ends (learn_until) for the
// rest of this engine's life and its next checkpoints: `auditwatch
// baseline` ends it at the last event it learned.
func (e *Engine) EndHistory(t time.Time) { e.cfg.LearnUntil = t.UTC() }

// restoreLearnUntil makes the stored end of the learned history count:
// the later of it and the configured learn_until applies.
func (e *Engine) restoreLearnUntil() error {
	raw, err := e.st.Get(spaceEngine, keyLearnUntil)
	if err != nil {
		return fmt.Errorf("detect: restore learn_until: %w", err)
	}
	if raw == nil {
		return nil
	}
	var t time.Time
	if err := t.UnmarshalText(raw); err != nil {
		return fmt.Errorf("detect: restore learn_until: %w", err)
	}
	if t.After(e.cfg.LearnUntil) {
		e.cfg.LearnUntil = t
	}
	return nil
}

func (e *Engine) restore() error {
	for _, d := range e.dets {
		if ft, ok := d.(*firstTime); ok {
			if err := ft.restoreRecent(); err != nil {
				return fmt.Errorf("detect: restore: %w", err)
			}
		}
	}
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
	for src, wm := range c.Sources {
		e.source(src).wm = wm
	}
	e.maxWM = c.MaxWM
	if e.maxWM == 0 && !c.MaxSeen.IsZero() {
		e.maxWM = c.MaxSeen.UnixNano()
	}
	// A store written with a reorder buffer: the events it still held
	// are evaluated before the next event, so none is lost.
	for _, sg := range c.Segments {
		raw, err := e.st.Get(spaceEngine, sg.key())
		if err != nil {
			return fmt.Errorf("detect: restore reorder buffer: %w", err)
		}
		e.legacySegs = append(e.legacySegs, sg)
		if raw == nil {
			continue
		}
		d := decoder{b: raw}
		for len(d.b) > 0 {
			var ev schema.Event
			seq := d.readEvent(&ev)
			if d.err != nil {
				return fmt.Errorf("detect: restore reorder buffer: segment %d: %w", sg.First, d.err)
			}
			t, rel := ev.Time.UnixNano(), c.Released.UnixNano()
			if c.HasReleased && (t < rel || t == rel && seq <= c.RelSeq) {
				continue // released before the checkpoint
			}
			e.pending = append(e.pending, ev)
		}
	}
	sort.SliceStable(e.pending, func(i, j int) bool { return e.pending[i].Time.Before(e.pending[j].Time) })
	return nil
}

// source returns the clock of an event source.
func (e *Engine) source(name string) *sourceClock {
	if sc := e.sources[name]; sc != nil {
		return sc
	}
	if len(e.sources) >= maxSources {
		name = "other"
		if sc := e.sources[name]; sc != nil {
			return sc
		}
	}
	late, ok := e.cfg.Lateness[name]
	if !ok {
		late = e.cfg.AllowedLateness
	}
	sc := &sourceClock{lateness: late.D().Nanoseconds()}
	e.sources[name] = sc
	return sc
}

// Config returns the effective configuration (defaults filled).
func (e *Engine) Config() Config { return e.cfg }

// Process takes one event and decides on it at once: the findings
// returned are those this event raises. Windowed detectors count a late
// event in the window it belongs to. An event more than its source's
// lateness behind that source's watermark is late: its findings carry
// Late. An event dated more than max_ahead after the wall clock, or more
// than max_behind behind its source's watermark, is flagged
// (time_skew=ahead|behind) and counted; an event dated ahead never moves
// the watermark.
func (e *Engine) Process(ev schema.Event) []schema.Finding {
	if e.pool != nil && e.pool.ver.Load() != e.poolVer {
		e.reshare()
	}
	var out []schema.Finding
	if len(e.pending) > 0 {
		out = e.evaluatePending(out)
	}
	e.stats.Events++
	e.m.events.Inc()
	t := ev.Time.UnixNano()
	sc := e.source(ev.Source)
	late, skew := false, ""
	if e.ahead(t) {
		skew = "ahead"
		e.stats.Ahead++
		e.m.skewed("ahead")
		e.logSkew(&ev, skew)
	} else {
		if sc.wm != 0 && t < sc.wm-sc.lateness {
			late = true
			e.stats.Late++
			e.m.late.Inc()
			if t < sc.wm-e.cfg.MaxBehind.D().Nanoseconds() {
				skew = "behind"
				e.stats.Behind++
				e.m.skewed("behind")
				e.logSkew(&ev, skew)
			}
		}
		if t > sc.wm {
			sc.wm = t
			e.maxWM = max(e.maxWM, t)
		}
	}
	e.in = ev
	return e.evaluate(&e.in, late, skew, out)
}

// Note takes a copy of an event that belongs to another partition's
// principal but that this partition's detectors need: a secret's rollout
// write (see RolloutWrites). It records the write and returns the
// revisions resolving the first reads it explains; it moves no watermark
// and counts as no event.
func (e *Engine) Note(ev schema.Event) []schema.Finding {
	for _, d := range e.dets {
		if ft, ok := d.(*firstTime); ok {
			out := ft.noteWrite(&ev, nil)
			for i := range out {
				e.stats.Findings[out[i].Detector]++
				e.m.finding(out[i].Detector)
			}
			return out
		}
	}
	return nil
}

// logSkew warns about an event dated far from its source's time, at most
// once a minute (every log field is attacker-controlled: counts and the
// bounded source name only).
func (e *Engine) logSkew(ev *schema.Event, skew string) {
	if now := time.Now(); now.Sub(e.lastSkewLog) >= time.Minute {
		e.lastSkewLog = now
		e.log.Warn("detect: event dated far from its source's time: processed, flagged, watermark unchanged",
			"time_skew", skew, "source", clip(ev.Source), "ahead_total", e.stats.Ahead, "behind_total", e.stats.Behind)
	}
}

func (e *Engine) evaluatePending(out []schema.Finding) []schema.Finding {
	evs := e.pending
	e.pending = nil
	for i := range evs {
		e.in = evs[i]
		out = e.evaluate(&e.in, false, "", out)
		if t := evs[i].Time.UnixNano(); t > e.maxWM {
			e.maxWM = t
		}
	}
	return out
}

// Flush evaluates events restored from a store written by an older
// version with a reorder buffer (Process does so before its first event);
// a caller with no input calls it once after New. It returns nil
// otherwise.
func (e *Engine) Flush() []schema.Finding {
	if len(e.pending) == 0 {
		return nil
	}
	return e.evaluatePending(nil)
}

// Watermark returns the newest event time seen from source (zero when
// none).
func (e *Engine) Watermark(source string) time.Time {
	if sc := e.sources[source]; sc != nil && sc.wm != 0 {
		return time.Unix(0, sc.wm).UTC()
	}
	return time.Time{}
}

// ahead reports whether t is more than max_ahead after the wall clock.
// With the real clock, a reading is reused while events stay before it
// plus max_ahead (the clock only moves on, so such an event is not ahead
// of a newer reading either) for up to 4,096 events; an event past it
// reads the clock again.
func (e *Engine) ahead(t int64) bool {
	lim := e.cfg.MaxAhead.D().Nanoseconds()
	if e.cfg.Now == nil && e.clockUses < 4096 && e.clockRead != 0 && t <= e.clockRead+lim {
		e.clockUses++
		return false
	}
	now := e.now().UnixNano()
	e.clockRead, e.clockUses = now, 0
	return t > now+lim
}

// stateNow is the event time against which idle state expires: the
// newest watermark minus the largest lateness, so that state a late event
// may still need is kept.
func (e *Engine) stateNow() int64 { return e.maxWM - e.maxLate }

func identity(ev *schema.Event) bool {
	return ev.Principal != "" && ev.PrincipalType != schema.PrincipalTypeAnonymous
}

func (e *Engine) evaluate(ev *schema.Event, late bool, skew string, out []schema.Finding) []schema.Finding {
	e.ctx = evalCtx{e: e, late: late, skew: skew}
	c := &e.ctx
	c.history = !e.cfg.LearnUntil.IsZero() && ev.Time.Before(e.cfg.LearnUntil)
	// Entries the detectors create for a principal known before this
	// event, or from the history before learn_until (the baseline asked
	// for), are admitted to the store even under a flood (table.go).
	e.m.mem.known, e.m.mem.owner = c.history, 0
	if identity(ev) {
		pk := e.h.sum("p", ev.Principal)
		n, found := e.principals.get(pk, true)
		// Known: saved (or about to be), not merely seen before: a flood
		// that sends each principal twice is still unknown principals.
		e.m.mem.known = found && n.proven || c.history
		if !e.m.mem.known {
			e.m.mem.owner = ownerOf(pk)
		}
		t := ev.Time.UnixNano()
		if n.v.First == 0 || t < n.v.First {
			if n.v.First != 0 {
				e.stats.FirstSeenRevised++
				e.m.firstSeenRevised.Inc()
			}
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
	e.m.mem.known, e.m.mem.owner = false, 0
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
	skew         string // "ahead", "behind" or empty
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
	if c.skew != "" {
		f.Attributes["time_skew"] = c.skew
	}
	// the person or service behind a Vault-issued key (package identity)
	if ev.KeyIssue != "" {
		f.Attributes["key_issue"] = ev.KeyIssue
		f.Attributes["aws_principal"] = ev.KeyPrincipal
		f.Attributes["access_key"] = ev.AccessKey
	}
	// where the address is (package netinfo)
	if ev.Country != "" {
		f.Attributes["country"] = ev.Country
	}
	if ev.ASN != 0 {
		f.Attributes["asn"] = strconv.Itoa(ev.ASN)
		if ev.ASOrg != "" {
			f.Attributes["as_org"] = ev.ASOrg
		}
	}
	return f
}

// Checkpoint persists, in one transaction, every dirty and spilled state
// entry, the per-source watermarks and meta (the caller's
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
		if e.maxWM != 0 {
			if err := t.sweepInto(&b, e.stateNow()); err != nil {
				return fmt.Errorf("detect: checkpoint %s: %w", t.name(), err)
			}
		}
	}
	// Entries of principals admitted now were proven with them (flush).
	clear(e.m.mem.promoted)
	if len(e.pending) == 0 {
		for _, sg := range e.legacySegs {
			b.Delete(spaceEngine, sg.key())
		}
	}
	for _, d := range e.dets {
		if ft, ok := d.(*firstTime); ok {
			if err := ft.saveRecent(&b); err != nil {
				return fmt.Errorf("detect: checkpoint: %w", err)
			}
		}
	}
	c := clock{Sources: make(map[string]int64, len(e.sources)), MaxWM: e.maxWM}
	for src, sc := range e.sources {
		if sc.wm != 0 {
			c.Sources[src] = sc.wm
		}
	}
	if len(e.pending) > 0 {
		// Not evaluated yet: keep the old buffer readable as it was.
		c.Segments = e.legacySegs
	}
	cl, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("detect: checkpoint clock: %w", err)
	}
	b.Put(spaceEngine, keyClock, cl)
	if !e.cfg.LearnUntil.IsZero() {
		lu, err := e.cfg.LearnUntil.UTC().MarshalText()
		if err != nil {
			return fmt.Errorf("detect: checkpoint learn_until: %w", err)
		}
		b.Put(spaceEngine, keyLearnUntil, lu)
	}
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
	held := 0
	for _, t := range tabs {
		held += t.heldCount()
		before := t.expiredCount()
		t.committed()
		if n := t.expiredCount() - before; n > 0 {
			e.m.expiredN(t.name(), n)
		}
	}
	if len(e.pending) == 0 {
		e.legacySegs = nil
	}
	e.saveHKey = false
	e.m.stateBytes.Set(float64(e.m.mem.used))
	e.m.held.Set(float64(held))
	if n := e.m.mem.learningEvictions - e.loggedLearnEvicts; n > 0 {
		e.m.learningEvictions.Add(float64(n))
		e.loggedLearnEvicts = e.m.mem.learningEvictions
		if time.Since(e.lastEvictLog) >= time.Minute {
			e.lastEvictLog = time.Now()
			e.log.Warn("detect: memory budget forces eviction of principals still in their learning period (reloaded from the store when they return; a flood of new keys?)",
				"evicted_learning_total", e.m.mem.learningEvictions, "state_bytes", e.m.mem.used, "budget_bytes", e.m.mem.limit)
		}
	}
	e.m.checkpoints.Inc()
	e.m.checkpointSeconds.Observe(time.Since(start).Seconds())
	return nil
}

// NeedCheckpoint reports that evicted entries waiting for a checkpoint
// have reached their share of the memory budget, or that the next
// checkpoint would write more than maxPending entries: the caller should
// checkpoint now (spilling them to the store). Beyond twice that share
// the oldest are dropped (counted in SpillDropped).
func (e *Engine) NeedCheckpoint() bool {
	if e.m.mem.spilled > e.m.mem.spillLimit {
		return true
	}
	n := 0
	for _, t := range e.tabs {
		n += t.pendingWrites()
	}
	return n > maxPending
}

// maxPending bounds the entries one checkpoint writes (see NeedCheckpoint):
// under a flood of new keys a checkpoint of 100,000 events would change
// most pages of the store in one transaction, holding a copy of each.
const maxPending = 8_192

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
	if e.pool != nil {
		e.pool.leave()
		e.pool = nil
	}
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
	s.StateBytes, s.LearningEvictions, s.OneOffDropped = e.m.mem.used, e.m.mem.learningEvictions, e.m.mem.oneOffDropped
	s.Evictions, s.SpillDropped, s.Expired = 0, 0, 0
	for _, t := range e.allTables() {
		size, ev, sd, le, sp := t.stats()
		ex := t.expiredCount()
		s.Tables = append(s.Tables, TableStats{Space: t.name(), Size: size, Evictions: ev, SpillDropped: sd, LoadErrors: le, Spilled: sp, Expired: ex, OneOffDropped: t.oneOffs(), Held: t.heldCount()})
		s.Held += t.heldCount()
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
	t := newTable(spacePrincipals, e.cfg.MaxPrincipals, e.cfg.MaxSpill, e.st, codec[principalState](principalCodec{}), e.log, e.m).
		expire(retain, func(v *principalState) int64 { return max(v.First, v.Last) })
	t.owners = true
	return t
}

// jsonCodec persists a value as JSON.
type jsonCodec[V any] struct{}

func (jsonCodec[V]) encode(v *V) ([]byte, error) { return json.Marshal(v) }
func (jsonCodec[V]) decode(b []byte, v *V) error { return json.Unmarshal(b, v) }
