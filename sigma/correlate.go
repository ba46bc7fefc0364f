package sigma

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
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

// groupState is one correlation group's window (JSON in snapshots).
type groupState struct {
	Rule   string           `json:"r"`
	Group  []string         `json:"g"`
	Times  []int64          `json:"t,omitempty"` // event_count: event times (unix ns)
	Values map[string]int64 `json:"v,omitempty"` // value_count: value → latest time
	Steps  []int64          `json:"s,omitempty"` // temporal: latest time per rule; ordered: latest start per step
	IDs    []string         `json:"i,omitempty"`
	Last   int64            `json:"l"`
}

// Correlator evaluates a Set's correlation rules over rule hits in event
// time. Its state is bounded (MaxGroups groups; the least recently seen
// is evicted and counted) and can be snapshotted and restored, so a
// restart resumes every open window. Not safe for concurrent use.
type Correlator struct {
	set       *Set
	groups    map[string]*groupState
	MaxGroups int
	// Evicted counts groups dropped to stay within MaxGroups; Late counts
	// inputs older than their window.
	Evicted, Late int64
}

// NewCorrelator returns an empty Correlator for the set.
func NewCorrelator(s *Set) *Correlator {
	return &Correlator{set: s, groups: map[string]*groupState{}, MaxGroups: 100000}
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
		if fr, ok := c.one(cr, r, f, t, eventID); ok {
			*out = append(*out, fr)
			gf := groupFieldsMap(fr.Group)
			c.feed(cr, gf, fr.Last, strings.Join(fr.EventIDs, ","), out, depth+1)
		}
	}
}

func (c *Correlator) one(cr, in *Rule, f Fields, t time.Time, eventID string) (Firing, bool) {
	corr := cr.Correlation
	paths := corr.groupFields(in)
	group := make([]string, len(paths))
	for i, p := range paths {
		v, ok := f.Field(p)
		if !ok {
			// an input without the group-by field takes no part
			return Firing{}, false
		}
		group[i] = v
	}
	key := cr.Key() + "\x00" + strings.Join(group, "\x00")
	g := c.groups[key]
	if g == nil {
		c.bound()
		g = &groupState{Rule: cr.Key(), Group: group}
		c.groups[key] = g
	}
	now := t.UnixNano()
	if now < g.Last-int64(corr.Timespan) {
		c.Late++
		return Firing{}, false
	}
	if now > g.Last {
		g.Last = now
	}
	from := g.Last - int64(corr.Timespan)
	g.IDs = append(g.IDs, eventID)
	if len(g.IDs) > maxEvidence {
		g.IDs = g.IDs[len(g.IDs)-maxEvidence:]
	}
	var count int64
	first := now
	fire := false
	switch corr.Type {
	case CorrEventCount:
		kept := g.Times[:0]
		for _, x := range g.Times {
			if x >= from {
				kept = append(kept, x)
			}
		}
		g.Times = append(kept, now)
		if len(g.Times) > maxCount {
			g.Times = g.Times[len(g.Times)-maxCount:]
		}
		count = int64(len(g.Times))
		for _, x := range g.Times {
			first = min(first, x)
		}
		fire = corr.holds(count)
	case CorrValueCount:
		v, ok := f.Field(fieldPath(corr, in))
		if !ok {
			return Firing{}, false
		}
		if g.Values == nil {
			g.Values = map[string]int64{}
		}
		for k, x := range g.Values {
			if x < from {
				delete(g.Values, k)
			}
		}
		if old, ok := g.Values[v]; !ok || now > old {
			g.Values[v] = now
		}
		if len(g.Values) > maxCount {
			// drop the oldest value
			var ok string
			oldest := int64(1<<63 - 1)
			for k, x := range g.Values {
				if x < oldest {
					ok, oldest = k, x
				}
			}
			delete(g.Values, ok)
		}
		count = int64(len(g.Values))
		for _, x := range g.Values {
			first = min(first, x)
		}
		fire = corr.holds(count)
	case CorrTemporal:
		if len(g.Steps) != len(corr.rules) {
			g.Steps = make([]int64, len(corr.rules))
		}
		for i, rr := range corr.rules {
			if rr == in && now > g.Steps[i] {
				g.Steps[i] = now
			}
		}
		for _, x := range g.Steps {
			if x != 0 && x >= from {
				count++
				first = min(first, x)
			}
		}
		if len(corr.Conds) == 0 {
			fire = count == int64(len(corr.rules))
		} else {
			fire = corr.holds(count)
		}
	case CorrTemporalOrdered:
		if len(g.Steps) != len(corr.rules) {
			g.Steps = make([]int64, len(corr.rules))
		}
		for j := len(corr.rules) - 1; j >= 0; j-- {
			if corr.rules[j] != in {
				continue
			}
			if j == 0 {
				g.Steps[0] = max(g.Steps[0], now)
				continue
			}
			if s := g.Steps[j-1]; s != 0 && s >= now-int64(corr.Timespan) && s <= now {
				g.Steps[j] = max(g.Steps[j], s)
			}
		}
		last := g.Steps[len(g.Steps)-1]
		for _, x := range g.Steps {
			if x != 0 {
				count++
			}
		}
		if last != 0 {
			first = last
			fire = true
		}
	}
	if !fire {
		return Firing{}, false
	}
	fr := Firing{Rule: cr, Group: map[string]string{}, First: time.Unix(0, first).UTC(), Last: time.Unix(0, now).UTC(), Count: count, EventIDs: append([]string(nil), g.IDs...)}
	for i, name := range corr.GroupBy {
		fr.Group[name] = group[i]
	}
	// a window that fired starts over
	delete(c.groups, key)
	return fr, true
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
	c.Evicted++
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
	return nil
}
