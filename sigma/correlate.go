package sigma

import (
	"encoding/json"
	"fmt"
	"hash/maphash"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Fields is what a correlation reads from one input: a record of a
// single-event rule, or the group of a correlation that fired.
type Fields interface {
	Field(path []string) (string, bool)
}

// groupFields is the Fields of a fired correlation: its group-by values.
type groupFieldsMap map[string]string

func (g groupFieldsMap) Field(path []string) (string, bool) {
	v, ok := g[strings.Join(path, ".")]
	return v, ok
}

// Firing is one correlation rule reaching its condition.
type Firing struct {
	Rule  *Rule
	Group map[string]string // group-by field → value
	First time.Time
	Last  time.Time
	Count int64 // events, distinct values or rules, by type
	// EventIDs is bounded evidence (the latest events of the window).
	EventIDs []string
}

// ID derives the firing's deterministic finding id parts.
func (f *Firing) key() []string {
	parts := []string{f.Rule.Key(), f.First.UTC().Format(time.RFC3339Nano)}
	for _, k := range sortedGroupKeys(f.Group) {
		parts = append(parts, k, f.Group[k])
	}
	return append(parts, f.EventIDs...)
}

func sortedGroupKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// maxEvidence bounds the event ids kept per group.
const maxEvidence = 10

// maxCount bounds the events or values kept per group.
const maxCount = 10000

// groupState is one correlation group's window (JSON in snapshots): the
// inputs not yet part of a finding, bounded by type (event_count: at most
// the count needed; value_count: the latest input per value; temporal: the
// latest per rule; temporal_ordered: per step, the chain ending there
// that started latest), and the keys of the latest inputs, so that a
// restart that delivers an event again does not count it twice.
type groupState struct {
	Rule  string   `json:"r"`
	Group []string `json:"g"`
	Ev    []evRef  `json:"e,omitempty"`
	Seen  []string `json:"s,omitempty"`
	Last  int64    `json:"l"`
	// seenH: a hash of each key in Seen (seenHash), compared before the
	// key; rebuilt when it does not match Seen (after a restore)
	seenH []uint64
}

// seenSeed seeds seenHash.
var seenSeed = maphash.MakeSeed()

// seenHash hashes an input key (the input's index and event id) without
// building it.
func seenHash(in int, eventID string) uint64 {
	return maphash.String(seenSeed, eventID) ^ uint64(in+1)*0x9e3779b97f4a7c15
}

// seenBefore reports whether the input key is among the group's latest
// (a repeat), and remembers it when it is not.
func (g *groupState) seenBefore(in int, eventID string) bool {
	if len(g.seenH) != len(g.Seen) {
		g.seenH = g.seenH[:0]
		for _, k := range g.Seen {
			n, id, _ := strings.Cut(k, ":")
			i, _ := strconv.Atoi(n)
			g.seenH = append(g.seenH, seenHash(i, id))
		}
	}
	h := seenHash(in, eventID)
	key := ""
	for i, x := range g.seenH {
		if x != h {
			continue
		}
		if key == "" {
			key = strconv.Itoa(in) + ":" + eventID
		}
		if g.Seen[i] == key {
			return true
		}
	}
	if key == "" {
		key = strconv.Itoa(in) + ":" + eventID
	}
	g.Seen = append(g.Seen, key)
	g.seenH = append(g.seenH, h)
	if len(g.Seen) > maxSeen {
		g.Seen = g.Seen[len(g.Seen)-maxSeen:]
		g.seenH = g.seenH[len(g.seenH)-maxSeen:]
	}
	return false
}

type evRef struct {
	ID    string   `json:"i"`
	T     int64    `json:"t"`
	In    int      `json:"n"`           // input rule's index (ordered: the step)
	V     string   `json:"v,omitempty"` // value_count: the field's value
	S     int64    `json:"a,omitempty"` // ordered: the chain's start
	Chain []string `json:"c,omitempty"` // ordered: the chain's event ids
}

// maxSeen bounds the input keys remembered per group for repeats.
const maxSeen = 128

// Correlator evaluates a Set's correlation rules over rule hits in event
// time. Its state is bounded (MaxGroups groups; the least recently seen
// is evicted and counted) and can be snapshotted and restored, so a
// restart resumes every open window. Not safe for concurrent use.
type Correlator struct {
	set       *Set
	groups    map[string]*groupState
	MaxGroups int
	// Cooldown groups repeated matches of a single-event rule by one
	// principal into one finding with revisions (see burst.go); 0 raises
	// a finding per match.
	Cooldown time.Duration
	bursts   map[string]*burstState
	newest   int64
	kbuf     []byte // scratch: a burst's key
	gkey     []byte // scratch: a correlation group's key
	goffs    []int  // scratch: where its values lie in gkey
	// clock: the wall clock as last read (Now nil) plus maxAhead, and the matches
	// judged against it since (ahead)
	clock     time.Time
	clockUsed int
	// print: idPrint of the event's id when printed (the Evaluator has
	// it from the event's mark: the id's text is not read again)
	print   uint64
	printed bool
	// Now is the wall clock events dated ahead are judged by; nil:
	// time.Now.
	Now func() time.Time
	// Evicted counts groups dropped to stay within MaxGroups; Late counts
	// inputs older than their window; Repeated inputs seen before (a
	// replay after a restart).
	Evicted, Late, Repeated atomic.Int64
}

// NewCorrelator returns an empty Correlator for the set.
func NewCorrelator(s *Set) *Correlator {
	return &Correlator{set: s, groups: map[string]*groupState{}, bursts: map[string]*burstState{}, MaxGroups: 100000}
}

// Groups is the number of open groups.
func (c *Correlator) Groups() int { return len(c.groups) }

// Feed hands the correlator one hit of rule r (a single-event rule) at
// event time t with the record's fields and event id; it returns the
// correlations that fire, chains included.
func (c *Correlator) Feed(r *Rule, f Fields, t time.Time, eventID string) []Firing {
	var out []Firing
	c.feed(r, f, t, eventID, &out, 0)
	return out
}

func (c *Correlator) feed(r *Rule, f Fields, t time.Time, eventID string, out *[]Firing, depth int) {
	if depth > 16 {
		return
	}
	for _, cr := range c.set.feeds[r] {
		for in, rr := range cr.Correlation.rules {
			if rr != r {
				continue
			}
			if fr, ok := c.one(cr, in, r, f, t, eventID); ok {
				*out = append(*out, fr)
				gf := groupFieldsMap(fr.Group)
				c.feed(cr, gf, fr.Last, strings.Join(fr.EventIDs, ","), out, depth+1)
			}
		}
	}
}

func (c *Correlator) one(cr *Rule, in int, inRule *Rule, f Fields, t time.Time, eventID string) (Firing, bool) {
	corr := cr.Correlation
	var paths [][]string
	var valuePath []string
	if in < len(corr.inPaths) && corr.rules[in] == inRule {
		paths, valuePath = corr.inPaths[in], corr.inField[in]
	} else {
		paths, valuePath = corr.groupFields(inRule), fieldPath(corr, inRule)
	}
	// the group's key in scratch memory (a group found allocates
	// nothing), and where each value lies in it
	rec, _ := f.(*Record)
	c.gkey = append(append(c.gkey[:0], cr.Key()...), 0)
	c.goffs = c.goffs[:0]
	for i, p := range paths {
		var v string
		var ok bool
		if rec != nil {
			v, ok = rec.fieldView(p)
		} else {
			v, ok = f.Field(p)
		}
		if !ok {
			// an input without the group-by field takes no part
			return Firing{}, false
		}
		if i > 0 {
			c.gkey = append(c.gkey, 0)
		}
		c.goffs = append(c.goffs, len(c.gkey))
		c.gkey = append(c.gkey, v...)
	}
	groupValue := func(i int) string {
		end := len(c.gkey)
		if i+1 < len(c.goffs) {
			end = c.goffs[i+1] - 1
		}
		return string(c.gkey[c.goffs[i]:end])
	}
	ref := evRef{ID: eventID, T: t.UnixNano(), In: in}
	if corr.Type == CorrValueCount {
		v, ok := f.Field(valuePath)
		if !ok {
			return Firing{}, false
		}
		ref.V = v
	}
	g := c.groups[string(c.gkey)]
	if g == nil {
		group := make([]string, len(paths))
		for i := range group {
			group[i] = groupValue(i)
		}
		c.bound()
		g = &groupState{Rule: cr.Key(), Group: group}
		c.groups[string(c.gkey)] = g
	}
	span := int64(corr.Timespan)
	if ref.T < g.Last-span {
		c.Late.Add(1)
		return Firing{}, false
	}
	if g.seenBefore(in, eventID) {
		c.Repeated.Add(1)
		return Firing{}, false
	}
	g.Last = max(g.Last, ref.T)
	from := g.Last - span
	kept := g.Ev[:0]
	for _, e := range g.Ev {
		start := e.T
		if corr.Type == CorrTemporalOrdered {
			start = e.S
		}
		if start >= from {
			kept = append(kept, e)
		}
	}
	g.Ev = kept
	var count int64
	var take []evRef
	switch corr.Type {
	case CorrEventCount:
		g.Ev = append(g.Ev, ref)
		if len(g.Ev) > maxCount {
			g.Ev = g.Ev[len(g.Ev)-maxCount:]
		}
		count = int64(len(g.Ev))
		if !corr.holds(count) {
			return Firing{}, false
		}
		take = g.Ev
	case CorrValueCount:
		g.Ev = replaceWhere(g.Ev, ref, func(e evRef) bool { return e.V == ref.V })
		if len(g.Ev) > maxCount {
			g.Ev = g.Ev[len(g.Ev)-maxCount:]
		}
		count = int64(len(g.Ev))
		if !corr.holds(count) {
			return Firing{}, false
		}
		take = g.Ev
	case CorrTemporal:
		g.Ev = replaceWhere(g.Ev, ref, func(e evRef) bool { return e.In == ref.In })
		count = int64(len(g.Ev))
		if len(corr.Conds) == 0 {
			if count != int64(len(corr.rules)) {
				return Firing{}, false
			}
		} else if !corr.holds(count) {
			return Firing{}, false
		}
		take = g.Ev
	case CorrTemporalOrdered:
		// the rules in order, each input no earlier than the one before,
		// all within the timespan: keep per step the chain that started
		// latest
		cand := evRef{ID: ref.ID, T: ref.T, In: in, S: ref.T, Chain: []string{ref.ID}}
		if in > 0 {
			prev := -1
			for i, e := range g.Ev {
				if e.In == in-1 {
					prev = i
				}
			}
			if prev < 0 || g.Ev[prev].T > ref.T || g.Ev[prev].S < ref.T-span {
				return Firing{}, false
			}
			p := g.Ev[prev]
			cand.S = p.S
			cand.Chain = append(append([]string(nil), p.Chain...), ref.ID)
		}
		if in < len(corr.rules)-1 {
			for i, e := range g.Ev {
				if e.In == in {
					if cand.S >= e.S {
						g.Ev[i] = cand
					}
					return Firing{}, false
				}
			}
			g.Ev = append(g.Ev, cand)
			return Firing{}, false
		}
		count = int64(len(corr.rules))
		take = []evRef{cand}
	}
	first := ref.T
	var ids []string
	for _, e := range take {
		first = min(first, e.T)
		if e.Chain != nil {
			first = min(first, e.S)
			ids = append(ids, e.Chain...)
		} else {
			ids = append(ids, e.ID)
		}
	}
	if len(ids) > maxEvidence {
		ids = ids[len(ids)-maxEvidence:]
	}
	// a window that fired starts over (its inputs are in this finding)
	g.Ev = nil
	fr := Firing{Rule: cr, Group: map[string]string{}, First: time.Unix(0, first).UTC(), Last: time.Unix(0, ref.T).UTC(), Count: count, EventIDs: ids}
	for i, name := range corr.GroupBy {
		fr.Group[name] = groupValue(i)
	}
	return fr, true
}

// replaceWhere replaces the entry same matches with e, or appends e.
func replaceWhere(evs []evRef, e evRef, same func(evRef) bool) []evRef {
	for i := range evs {
		if same(evs[i]) {
			evs[i] = e
			return evs
		}
	}
	return append(evs, e)
}

func fieldPath(corr *Correlation, in *Rule) []string {
	f := corr.Field
	if a, ok := corr.Aliases[f]; ok {
		if ff, ok := a[in.Name]; ok {
			f = ff
		} else if ff, ok := a[in.ID]; ok {
			f = ff
		}
	}
	return strings.Split(f, ".")
}

// bound evicts the least recently seen group when the limit is reached.
func (c *Correlator) bound() {
	if c.MaxGroups <= 0 || len(c.groups) < c.MaxGroups {
		return
	}
	var oldK string
	oldT := int64(1<<63 - 1)
	for k, g := range c.groups {
		if g.Last < oldT {
			oldK, oldT = k, g.Last
		}
	}
	delete(c.groups, oldK)
	c.Evicted.Add(1)
}

// Expire drops groups whose window ended before t (memory only; the
// result is the same either way).
func (c *Correlator) Expire(t time.Time) {
	now := t.UnixNano()
	for k, g := range c.groups {
		r := c.ruleByKey(g.Rule)
		if r == nil || g.Last < now-int64(r.Correlation.Timespan) {
			delete(c.groups, k)
		}
	}
}

func (c *Correlator) ruleByKey(k string) *Rule {
	for _, r := range c.set.corrs {
		if r.Key() == k {
			return r
		}
	}
	return nil
}

type snapshot struct {
	V      int           `json:"v"`
	Groups []*groupState `json:"groups"`
	Bursts []*burstState `json:"bursts,omitempty"`
}

// Snapshot encodes every open group.
func (c *Correlator) Snapshot() ([]byte, error) {
	s := snapshot{V: 1, Groups: make([]*groupState, 0, len(c.groups))}
	keys := make([]string, 0, len(c.groups))
	for k := range c.groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		s.Groups = append(s.Groups, c.groups[k])
	}
	c.expireBursts()
	s.Bursts = c.snapshotBursts()
	b, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("sigma: correlation snapshot: %w", err)
	}
	return b, nil
}

// Restore replaces the state with a snapshot; groups of rules no longer in
// the set are dropped.
func (c *Correlator) Restore(b []byte) error {
	var s snapshot
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("sigma: correlation snapshot: %w", err)
	}
	c.groups = map[string]*groupState{}
	for _, g := range s.Groups {
		r := c.ruleByKey(g.Rule)
		if r == nil || len(g.Group) != len(r.Correlation.GroupBy) {
			continue
		}
		c.groups[g.Rule+"\x00"+strings.Join(g.Group, "\x00")] = g
	}
	c.restoreBursts(s.Bursts)
	return nil
}
