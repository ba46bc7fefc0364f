package detect

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"auditwatch/detect/state"
	"auditwatch/schema"
)

// firstTime raises a finding when a principal, past its learning period,
// touches an in-scope resource (canonicalised) it has never touched, or not
// within forget_after. New pairs of one principal within group_window are
// one incident: each later one is an update of the first finding (same
// DedupeKey, higher Revision and Count, its own Resource and evidence), so
// grouping never hides a new pair.
type firstTime struct {
	e        *Engine
	cfg      *FirstTimeAccessConfig
	pairs    *table[pairState]
	groups   *table[groupState]
	written  *table[pairState] // per resource: last write (rollout)
	rollouts *globMemo         // cfg.RolloutActions
	h        hasher
	// recent: reported first reads a late write may still explain (see
	// resolve); saved with every checkpoint.
	recent      []recentRead
	recentBytes int // estimated bytes held by recent (bounded by maxRecentBytes)
	recentDirty bool
	pruned      int64 // engine watermark at the last pruneRecent
}

type pairState struct{ Last int64 }

type pairCodec struct{}

func (pairCodec) encode(v *pairState) ([]byte, error) { return encodeVarints(v.Last), nil }
func (pairCodec) decode(b []byte, v *pairState) error {
	xs, err := decodeVarints(b, 1)
	if err != nil {
		return err
	}
	v.Last = xs[0]
	return nil
}

// burst is an open incident that later events update.
type burst struct {
	Key      string   `json:"k,omitempty"` // DedupeKey; empty = none open
	Rev      int      `json:"r,omitempty"`
	Count    int      `json:"c,omitempty"`
	Reported int      `json:"rp,omitempty"` // Count at the last finding
	First    int64    `json:"f,omitempty"`
	Last     int64    `json:"l,omitempty"`
	IDs      []string `json:"i,omitempty"`
	Items    []string `json:"it,omitempty"` // resources / IPs seen (bounded)
	// Explained: new pairs of a first_time_access group a rollout write
	// arriving after them explained (see firstTime.resolve).
	Explained int `json:"ex,omitempty"`
}

// extend widens the burst's span to t (events may arrive out of order).
func (b *burst) extend(t int64) {
	b.First, b.Last = min(b.First, t), max(b.Last, t)
}

func (b *burst) open(now int64, cooldown time.Duration) bool {
	return b.Key != "" && now-b.Last <= cooldown.Nanoseconds()
}

func (b *burst) addID(id string, max int) {
	if len(b.IDs) < max {
		b.IDs = append(b.IDs, clip(id))
	}
}

func (b *burst) addItem(s string, max int) bool {
	s = clip(s)
	for _, x := range b.Items {
		if x == s {
			return false
		}
	}
	if len(b.Items) < max {
		b.Items = append(b.Items, s)
	}
	return true
}

// fill copies the burst into f (count, evidence, span, ids).
func (b *burst) fill(f *schema.Finding, det string, triggerID string) {
	f.DedupeKey = b.Key
	f.Revision = b.Rev
	f.Count = b.Count
	f.EventIDs = append([]string(nil), b.IDs...)
	if !contains(f.EventIDs, triggerID) {
		f.EventIDs = append(f.EventIDs, triggerID)
	}
	f.FirstTime = time.Unix(0, b.First).UTC()
	f.LastTime = time.Unix(0, b.Last).UTC()
	f.ID = schema.MakeID(det, b.Key, strconv.Itoa(b.Rev), strconv.Itoa(b.Count), triggerID)
}

type groupState struct {
	B burst `json:"b"`
}

func newFirstTime(e *Engine) *firstTime {
	cfg := &e.cfg.FirstTimeAccess
	return &firstTime{e: e, cfg: cfg, h: e.newHasher(),
		pairs: newTable(schema.DetectorFirstTimeAccess+".pairs", cfg.MaxPairs, e.cfg.MaxSpill, e.st, codec[pairState](pairCodec{}), e.log, e.m).
			expire(cfg.ForgetAfter.D(), func(v *pairState) int64 { return v.Last }),
		groups: newTable(schema.DetectorFirstTimeAccess+".groups", e.cfg.MaxPrincipals, e.cfg.MaxSpill, e.st, codec[groupState](jsonCodec[groupState]{}), e.log, e.m).
			expire(cfg.GroupWindow.D(), func(v *groupState) int64 { return v.B.Last }),
		written: newTable(schema.DetectorFirstTimeAccess+".written", e.cfg.MaxPrincipals, e.cfg.MaxSpill, e.st, codec[pairState](pairCodec{}), e.log, e.m).
			expire(max(cfg.RolloutGrace.D(), time.Minute), func(v *pairState) int64 { return v.Last }),
		rollouts: newGlobMemo(cfg.RolloutActions)}
}

// recentRead is a first read already reported that a write arriving later
// (dated within the rollout grace before it) would explain.
type recentRead struct {
	Ev    schema.Event
	Res   string
	Key   string // the DedupeKey of the finding that reported it
	First int64  // the principal's first-seen time when the read arrived
	Late  bool
	Skew  string
}

// maxRecent and maxRecentBytes bound the remembered reads in number and
// in bytes (each holds an event whose attacker-controlled fields may be
// up to a record's size); beyond them a read is reported as usual but a
// late write no longer resolves it (nothing lost).
const (
	maxRecent      = 10_000
	maxRecentBytes = 16 << 20
)

// recentSize estimates the bytes a remembered read holds.
func recentSize(r *recentRead) int {
	n := 256 + len(r.Res) + len(r.Key) + len(r.Skew)
	for _, p := range eventStrings(&r.Ev) {
		n += len(*p)
	}
	for _, p := range r.Ev.Policies {
		n += 16 + len(p)
	}
	return n
}

// resolvable reports whether a write explaining the reported first read
// at t may still arrive on time: rollouts are on, the secret is one a
// rollout action writes (Vault kv, Secrets Manager, SSM parameters), and
// the source's watermark is not yet past t by its lateness.
func (d *firstTime) resolvable(ev *schema.Event, t int64) bool {
	if d.cfg.RolloutGrace <= 0 || len(d.recent) >= maxRecent || d.recentBytes >= maxRecentBytes {
		return false
	}
	switch ev.Source {
	case schema.SourceVault:
		if _, typ, _ := d.e.scope.vaultMount(ev); typ != "kv" {
			return false
		}
	case schema.SourceCloudTrail:
		if !strings.HasPrefix(ev.Action, "secretsmanager:") && !strings.HasPrefix(ev.Action, "ssm:") {
			return false
		}
	default:
		return false
	}
	sc := d.e.source(ev.Source)
	return sc.wm-sc.lateness < t
}

func (d *firstTime) remember(ev *schema.Event, c *evalCtx, res, key string) {
	r := recentRead{Ev: *ev, Res: res, Key: key, First: c.first.UnixNano(), Late: c.late, Skew: c.skew}
	// Not the original record (up to a record's size limit each): a
	// revision does not need it, and a restored read has none either.
	r.Ev.Raw = nil
	if sz := recentSize(&r); d.recentBytes+sz <= maxRecentBytes {
		d.recent = append(d.recent, r)
		d.recentBytes += sz
		d.recentDirty = true
	}
}

// setRecent replaces the remembered reads with kept (a prefix-reuse of
// d.recent) and recounts their bytes.
func (d *firstTime) setRecent(kept []recentRead) {
	if len(kept) == len(d.recent) {
		return
	}
	clear(d.recent[len(kept):])
	d.recent = kept
	d.recentBytes = 0
	for i := range kept {
		d.recentBytes += recentSize(&kept[i])
	}
	d.recentDirty = true
}

// pruneRecent forgets the reads no write can explain any more (their
// source's watermark is past them by the lateness).
func (d *firstTime) pruneRecent() {
	kept := d.recent[:0]
	for _, r := range d.recent {
		if sc := d.e.source(r.Ev.Source); sc.wm-sc.lateness < r.Ev.Time.UnixNano() {
			kept = append(kept, r)
		}
	}
	d.setRecent(kept)
}

// resolve sends, for each reported first read of res that the write w
// (at time wt, arriving after it) explains, a revision of its finding:
// the read is a rollout's. When every new pair of the finding's group is
// explained so, the revision resolves it (attribute status=resolved,
// severity info). A group replaced by a newer one since is left as is.
func (d *firstTime) resolve(w *schema.Event, res string, wt int64, out []schema.Finding) []schema.Finding {
	grace := d.cfg.RolloutGrace.D().Nanoseconds()
	kept := d.recent[:0]
	var due []recentRead
	for _, r := range d.recent {
		t := r.Ev.Time.UnixNano()
		if sc := d.e.source(r.Ev.Source); sc.wm-sc.lateness >= t {
			continue // past the lateness: no write explains it any more
		}
		if r.Res == res && wt <= t && t-wt <= grace {
			due = append(due, r)
			continue
		}
		kept = append(kept, r)
	}
	d.setRecent(kept)
	max := d.e.cfg.MaxEvidence
	for i := range due {
		r := &due[i]
		g, _ := d.groups.get(d.h.sum(r.Ev.Principal), true)
		b := &g.v.B
		if b.Key != r.Key {
			continue
		}
		d.groups.touch(g)
		b.Rev++
		b.Explained++
		b.addID(w.ID, max)
		c := evalCtx{e: d.e, late: r.Late, skew: r.Skew, hasPrincipal: true, first: time.Unix(0, r.First).UTC()}
		f := d.e.finding(schema.DetectorFirstTimeAccess, d.cfg.Severity, &r.Ev, &c)
		b.fill(&f, schema.DetectorFirstTimeAccess, w.ID)
		f.Time = w.Time
		f.Resource = res
		who := nameOf(w)
		f.Summary = fmt.Sprintf("%s's first read of %s is explained by a rollout: %s wrote it at %s", nameOf(&r.Ev), clip(res), who, w.Time.UTC().Format(time.RFC3339))
		f.Reason = fmt.Sprintf("%s wrote %s (%s) at %s, %s before this read and within the %s rollout grace; the write arrived after the read; %d of %d new resources of this finding are explained by rollouts",
			who, clip(res), clip(w.Action), w.Time.UTC().Format(time.RFC3339), r.Ev.Time.Sub(w.Time), d.cfg.RolloutGrace.D(), b.Explained, b.Count)
		f.Attributes["explained_by"] = clip(w.Principal)
		f.Attributes["rollout_write"] = w.ID
		if b.Explained >= b.Count {
			f.Severity = schema.SeverityInfo
			f.Attributes[StatusAttr] = StatusResolved
		}
		out = append(out, f)
	}
	return out
}

// recentKey is where the remembered reads are saved (engine space).
var recentKey = []byte("first_time_access/recent")

type recentJSON struct {
	Ev    []byte `json:"e"`
	Res   string `json:"r"`
	Key   string `json:"k"`
	First int64  `json:"f"`
	Late  bool   `json:"l,omitempty"`
	Skew  string `json:"s,omitempty"`
}

// saveRecent puts the remembered reads in a checkpoint when they changed.
func (d *firstTime) saveRecent(b *state.Batch) error {
	if !d.recentDirty {
		return nil
	}
	d.recentDirty = false
	if len(d.recent) == 0 {
		b.Delete(spaceEngine, recentKey)
		return nil
	}
	js := make([]recentJSON, len(d.recent))
	for i := range d.recent {
		r := &d.recent[i]
		js[i] = recentJSON{Ev: appendEvent(nil, 0, &r.Ev), Res: r.Res, Key: r.Key, First: r.First, Late: r.Late, Skew: r.Skew}
	}
	raw, err := json.Marshal(js)
	if err != nil {
		return fmt.Errorf("first_time_access recent reads: %w", err)
	}
	b.Put(spaceEngine, recentKey, raw)
	return nil
}

// restoreRecent reads the remembered reads of the last checkpoint.
func (d *firstTime) restoreRecent() error {
	raw, err := d.e.st.Get(spaceEngine, recentKey)
	if err != nil || raw == nil {
		return err
	}
	var js []recentJSON
	if err := json.Unmarshal(raw, &js); err != nil {
		return fmt.Errorf("first_time_access recent reads: %w", err)
	}
	d.recent, d.recentBytes = d.recent[:0], 0
	for _, j := range js {
		r := recentRead{Res: j.Res, Key: j.Key, First: j.First, Late: j.Late, Skew: j.Skew}
		dec := decoder{b: j.Ev}
		dec.readEvent(&r.Ev)
		if dec.err != nil {
			return fmt.Errorf("first_time_access recent reads: %w", dec.err)
		}
		d.recent = append(d.recent, r)
		d.recentBytes += recentSize(&r)
	}
	return nil
}

func (d *firstTime) tables() []tableStats { return []tableStats{d.pairs, d.groups, d.written} }

// RolloutWrites returns the test for the events that start a rollout
// under cfg (first_time_access.rollout_actions, Vault writes on kv mounts):
// a deployment that partitions events by principal delivers them to every
// partition (stream.Record.Note) so each partition's readers of the
// secret are judged against them (Engine.Note).
func RolloutWrites(cfg Config) func(*schema.Event) bool {
	cfg.SetDefaults()
	fc := &cfg.FirstTimeAccess
	if fc.RolloutGrace <= 0 {
		return func(*schema.Event) bool { return false }
	}
	sc := newScope(fc.Scope, fc.VaultMounts)
	rollouts := newGlobMemo(fc.RolloutActions)
	var mu sync.Mutex // globMemo caches; the ingest stage may call from several sources
	return func(ev *schema.Event) bool {
		if ev.Failed() || ServiceInvoked(ev) {
			return false
		}
		mu.Lock()
		ok := rollouts.match(ev.Action)
		mu.Unlock()
		if !ok {
			return false
		}
		if ev.Source == schema.SourceVault {
			if _, typ, _ := sc.vaultMount(ev); typ != "kv" {
				return false
			}
		}
		return CanonicalResource(ev) != ""
	}
}

// noteWrite records a successful write of a secret (a rollout starts);
// first reads of it already reported that it explains are resolved.
func (d *firstTime) noteWrite(ev *schema.Event, out []schema.Finding) []schema.Finding {
	if d.cfg.RolloutGrace <= 0 || ev.Failed() || ServiceInvoked(ev) || !d.rollouts.match(ev.Action) {
		return out
	}
	if ev.Source == schema.SourceVault {
		if _, typ, _ := d.e.scope.vaultMount(ev); typ != "kv" {
			return out
		}
	}
	res := CanonicalResource(ev)
	if res == "" {
		return out
	}
	n, _ := d.written.get(d.h.sum("w", res), true)
	t := ev.Time.UnixNano()
	if t > n.v.Last {
		n.v.Last = t
		d.written.touch(n)
	}
	if len(d.recent) > 0 {
		out = d.resolve(ev, res, t, out)
	}
	return out
}

// rollingOut reports whether res was written within the rollout grace
// before t.
func (d *firstTime) rollingOut(res string, t int64) bool {
	if d.cfg.RolloutGrace <= 0 {
		return false
	}
	n, found := d.written.get(d.h.sum("w", res), false)
	return found && n != nil && n.v.Last <= t && t-n.v.Last <= d.cfg.RolloutGrace.D().Nanoseconds()
}

func (d *firstTime) process(ev *schema.Event, c *evalCtx, out []schema.Finding) []schema.Finding {
	out = d.judge(ev, c, out)
	// Forget what no write can explain any more, at most once per minute
	// of event time (resolve checks each entry itself, so when this runs
	// changes nothing but memory).
	if len(d.recent) > 0 && d.e.maxWM-d.pruned >= int64(time.Minute) {
		d.pruned = d.e.maxWM
		d.pruneRecent()
	}
	return out
}

func (d *firstTime) judge(ev *schema.Event, c *evalCtx, out []schema.Finding) []schema.Finding {
	if !c.hasPrincipal {
		return out
	}
	if ev.Failed() && (!on(d.cfg.IncludeDenied) || ev.FailureKind != schema.FailurePermissionDenied) {
		return out
	}
	res, ok := c.scope(ev)
	if !ok {
		return d.noteWrite(ev, out)
	}
	t := ev.Time.UnixNano()
	n, found := d.pairs.get(d.h.sum(ev.Principal, res), true)
	isNew := !found || t-n.v.Last > d.cfg.ForgetAfter.D().Nanoseconds()
	if t > n.v.Last {
		if isNew || t-n.v.Last > int64(time.Minute) {
			d.pairs.touch(n)
		}
		n.v.Last = t
	}
	if !isNew || c.history || !c.learned(ev.Time, d.cfg.LearningPeriod.D()) || d.rollingOut(res, t) {
		return out
	}
	n0 := len(out)
	out = d.raise(ev, c, res, out)
	if len(out) > n0 && d.resolvable(ev, t) {
		d.remember(ev, c, res, out[len(out)-1].DedupeKey)
	}
	return out
}

// raise reports the new pair (principal, res) of ev: a new group's
// finding or an update of the principal's open group.
func (d *firstTime) raise(ev *schema.Event, c *evalCtx, res string, out []schema.Finding) []schema.Finding {
	t := ev.Time.UnixNano()
	max := d.e.cfg.MaxEvidence
	g, _ := d.groups.get(c.principalKey(ev), true)
	b := &g.v.B
	d.groups.touch(g)
	if b.open(t, d.cfg.GroupWindow.D()) {
		b.Count++
		b.extend(t)
		b.addID(ev.ID, max)
		b.addItem(res, max)
		// One incident, and no new pair lost: every new resource is an
		// update of the group's finding (alerts thread it), naming it.
		b.Rev++
	} else {
		*b = burst{Key: schema.MakeID(schema.DetectorFirstTimeAccess, ev.Principal, res, ev.ID), First: t, Last: t, Count: 1}
		b.addID(ev.ID, max)
		b.addItem(res, max)
	}
	b.Reported = b.Count
	f := d.e.finding(schema.DetectorFirstTimeAccess, d.cfg.Severity, ev, c)
	b.fill(&f, schema.DetectorFirstTimeAccess, ev.ID)
	f.Resource = res
	verb := "accessed"
	if ev.Failed() {
		verb = "tried (denied)"
	}
	f.Summary = fmt.Sprintf("%s %s %s for the first time", nameOf(ev), verb, clip(res))
	f.Reason = fmt.Sprintf("first %s of %s by %s in %s of history (principal first seen %s; pairs unseen for %s are forgotten)",
		map[bool]string{true: "attempt", false: "read"}[ev.Failed()], clip(res), nameOf(ev), historySpan(c.first, ev.Time), c.first.Format(time.RFC3339), historySpan(time.Time{}, time.Time{}.Add(d.cfg.ForgetAfter.D())))
	if b.Count > 1 {
		f.Summary = fmt.Sprintf("%s touched %d resources for the first time, latest %s", nameOf(ev), b.Count, clip(res))
		f.Reason += fmt.Sprintf("; %d new resources, none more than %s apart (first ones: %s)", b.Count, d.cfg.GroupWindow.D(), strings.Join(b.Items, ", "))
	}
	f.Attributes["outcome"] = ev.Outcome
	f.Attributes["logged_resource"] = ev.Resource
	return append(out, f)
}
