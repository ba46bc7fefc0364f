package detect

import (
	"fmt"
	"strconv"
	"strings"
	"time"

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

func (d *firstTime) tables() []tableStats { return []tableStats{d.pairs, d.groups, d.written} }

// noteWrite records a successful write of a secret (a rollout starts).
func (d *firstTime) noteWrite(ev *schema.Event) {
	if d.cfg.RolloutGrace <= 0 || ev.Failed() || ServiceInvoked(ev) || !d.rollouts.match(ev.Action) {
		return
	}
	if ev.Source == schema.SourceVault {
		if _, typ, _ := d.e.scope.vaultMount(ev); typ != "kv" {
			return
		}
	}
	res := CanonicalResource(ev)
	if res == "" {
		return
	}
	n, _ := d.written.get(d.h.sum("w", res), true)
	if t := ev.Time.UnixNano(); t > n.v.Last {
		n.v.Last = t
		d.written.touch(n)
	}
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
	if !c.hasPrincipal {
		return out
	}
	if ev.Failed() && (!on(d.cfg.IncludeDenied) || ev.FailureKind != schema.FailurePermissionDenied) {
		return out
	}
	res, ok := c.scope(ev)
	if !ok {
		d.noteWrite(ev)
		return out
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
