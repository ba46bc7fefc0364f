package sigma

import (
	"fmt"
	"sort"
	"strconv"
	"time"

	"auditwatch/schema"
)

// Repeated matches: a single-event rule that matches many records of one
// principal (SigmaHQ's AssumeRole rule matches every call of an assumed
// role) would otherwise raise one finding per record, and every finding
// costs the whole output pipeline. As the built-in detectors do with
// bursts, the first match of a rule by a principal raises a finding at
// once; later matches within the cool-down (measured from the latest
// match) join it, and a new revision (same DedupeKey, higher Revision and
// Count) is raised each time the count doubles. Cooldown 0 raises one
// finding per match. The state is part of the correlation snapshot, so a
// restart resumes the same bursts and raises the same findings.

// burstState is one open burst (JSON in snapshots).
type burstState struct {
	Rule     string   `json:"r"`
	Who      string   `json:"w"`
	Key      string   `json:"k"` // DedupeKey: the first finding's id
	Rev      int      `json:"v,omitempty"`
	Count    int      `json:"c"`
	Reported int      `json:"p"`
	First    int64    `json:"f"`
	Last     int64    `json:"l"`
	IDs      []string `json:"i,omitempty"` // bounded evidence
	// fp: a fingerprint of each of IDs, in the same order (idPrint); the
	// repeat check compares them first, as the ids' text lies scattered
	// in memory. Not in snapshots: rebuilt when it does not match IDs.
	fp []uint64
}

// idPrint is a fingerprint of an event id: its length and last eight
// bytes (ids of one burst mostly differ there). Equal ids have equal
// prints; equal prints are compared in full.
func idPrint(id string) uint64 {
	n := len(id)
	var v uint64
	for i := max(0, n-8); i < n; i++ {
		v = v<<8 | uint64(id[i])
	}
	return v ^ uint64(n)*0x9E3779B97F4A7C15
}

func burstWho(ev *schema.Event) string {
	switch {
	case ev.Principal != "":
		return ev.Principal
	case ev.PrincipalName != "":
		return ev.PrincipalName
	case ev.SourceIP != "":
		return ev.SourceIP
	}
	return ev.SourceIPRaw
}

// repeat handles one standalone hit of r: it returns the finding to raise,
// if any.
func (c *Correlator) repeat(r *Rule, ev *schema.Event, evID string, t time.Time) (schema.Finding, bool) {
	if c.Cooldown <= 0 {
		return single(r, ev, evID), true
	}
	who := burstWho(ev)
	// the key in scratch memory: a lookup allocates nothing
	c.kbuf = append(append(append(c.kbuf[:0], r.Key()...), 0), who...)
	tn := t.UnixNano()
	if tn > c.newest && !c.ahead(t) {
		c.newest = tn
	}
	cd := int64(c.Cooldown)
	b := c.bursts[string(c.kbuf)]
	if b != nil && tn-b.Last <= cd && b.First-tn <= cd {
		id := clip(evID)
		if len(b.fp) != len(b.IDs) {
			// (restored from a snapshot)
			b.fp = b.fp[:0]
			for _, x := range b.IDs {
				b.fp = append(b.fp, idPrint(x))
			}
		}
		fp := c.print
		if !c.printed {
			fp = idPrint(id)
		}
		for i, x := range b.fp {
			if x == fp && b.IDs[i] == id {
				// delivered again (a replay after a restart): counted once
				c.Repeated.Add(1)
				return schema.Finding{}, false
			}
		}
		b.Count++
		b.First, b.Last = min(b.First, tn), max(b.Last, tn)
		// the latest ids: evidence, and what a repeat is recognized by
		if len(b.IDs) == maxEvidence {
			b.IDs = append(b.IDs[:0], b.IDs[1:]...)
			b.fp = append(b.fp[:0], b.fp[1:]...)
		}
		b.IDs = append(b.IDs, id)
		b.fp = append(b.fp, fp)
		if b.Count < 2*b.Reported {
			return schema.Finding{}, false
		}
		b.Rev++
		b.Reported = b.Count
		f := single(r, ev, evID)
		f.DedupeKey = b.Key
		f.Revision = b.Rev
		f.Count = b.Count
		f.EventIDs = append([]string(nil), b.IDs...)
		f.FirstTime = time.Unix(0, b.First).UTC()
		f.LastTime = time.Unix(0, b.Last).UTC()
		f.ID = schema.MakeID(DetectorName, b.Key, strconv.Itoa(b.Rev), strconv.Itoa(b.Count), evID)
		f.Summary = clip(fmt.Sprintf("%s (%d matches since %s)", f.Summary, b.Count, f.FirstTime.Format(time.RFC3339)))
		return f, true
	}
	f := single(r, ev, evID)
	if b == nil {
		c.boundBursts()
		b = &burstState{}
		c.bursts[string(c.kbuf)] = b
	}
	id := clip(evID)
	fp := c.print
	if !c.printed {
		fp = idPrint(id)
	}
	*b = burstState{Rule: r.Key(), Who: who, Key: f.DedupeKey, Count: 1, Reported: 1, First: tn, Last: tn, IDs: []string{id}, fp: []uint64{fp}}
	return f, true
}

// maxAhead: a match dated more than this after the wall clock (a skewed
// clock or a forged eventTime) does not move the horizon bursts expire by,
// as the detector engine's watermarks ignore such events (its max_ahead
// default); otherwise one such record would close every open burst.
const maxAhead = time.Hour

// The wall clock only moves on: a time within maxAhead of an earlier
// reading is within it of now, so the clock is read again only when the
// last reading would call t ahead, or after clockReuse matches (a clock
// set back is noticed within them). A Now set (tests) is called each time.
func (c *Correlator) ahead(t time.Time) bool {
	if c.Now != nil {
		return t.Sub(c.Now()) > maxAhead
	}
	// (c.clock is kept as the reading plus maxAhead: t.Sub(reading) <=
	// maxAhead is !t.After(c.clock), and After is cheaper than Sub)
	if c.clockUsed > 0 && c.clockUsed < clockReuse && !t.After(c.clock) {
		c.clockUsed++
		return false
	}
	now := time.Now()
	c.clock, c.clockUsed = now.Round(0).Add(maxAhead), 1
	return t.Sub(now) > maxAhead
}

// clockReuse bounds the matches judged against one reading of the clock.
const clockReuse = 4096

// boundBursts makes room for one more burst: over MaxGroups, the least
// recently matched eighth is dropped (counted as evicted).
func (c *Correlator) boundBursts() {
	if c.MaxGroups <= 0 || len(c.bursts) < c.MaxGroups {
		return
	}
	type kv struct {
		k string
		t int64
	}
	all := make([]kv, 0, len(c.bursts))
	for k, b := range c.bursts {
		all = append(all, kv{k, b.Last})
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].t != all[j].t {
			return all[i].t < all[j].t
		}
		return all[i].k < all[j].k
	})
	n := max(1, len(all)/8)
	for _, e := range all[:n] {
		delete(c.bursts, e.k)
	}
	c.Evicted.Add(int64(n))
}

// Bursts is the number of open bursts.
func (c *Correlator) Bursts() int { return len(c.bursts) }

func (c *Correlator) snapshotBursts() []*burstState {
	keys := make([]string, 0, len(c.bursts))
	for k := range c.bursts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]*burstState, 0, len(keys))
	for _, k := range keys {
		out = append(out, c.bursts[k])
	}
	return out
}

func (c *Correlator) restoreBursts(bs []*burstState) {
	c.bursts = map[string]*burstState{}
	keys := map[string]bool{}
	for _, r := range c.set.single {
		keys[r.Key()] = true
	}
	for _, b := range bs {
		if b == nil || !keys[b.Rule] {
			continue
		}
		c.bursts[b.Rule+"\x00"+b.Who] = b
		c.newest = max(c.newest, b.Last)
	}
}

// expireBursts drops bursts no later match can still join: matched last
// more than twice the cool-down and an hour before the newest match (an
// event that late is past any lateness the engine accepts).
func (c *Correlator) expireBursts() {
	if c.Cooldown <= 0 {
		clear(c.bursts)
		return
	}
	limit := c.newest - 2*int64(c.Cooldown) - int64(time.Hour)
	for k, b := range c.bursts {
		if b.Last < limit {
			delete(c.bursts, k)
		}
	}
}
