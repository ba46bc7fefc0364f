package sigma

import (
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"

	"auditwatch/schema"
)

// Records whose hits need only the event's fields. Most hits of a large
// rule set are single-event rules whose finding (or the burst it joins)
// is made of the normalized event alone: the rule id, the event's time,
// id, principal, action, resource, address and account (single, repeat).
// For such a hit Wants tells the reader not to keep the record, and
// remembers the hits by the event's identity instead: no copy of the
// record, nothing for the collector, no hash of its text. The evaluator
// finds them by the same identity when the event (without a record)
// reaches it.
//
// A record keeps its copy (the earlier path: memo by the record's text)
// when its hits need more than the event: a hit feeding a correlation
// (which reads the record's fields), an event without time or id (the
// finding's time and id come from the record), a Vault entry (the event
// is completed by pairing after Wants), an STS call (the reader keeps
// those records anyway, see cloudtrail.IssuesCredentials), or a second
// pending record of the same identity with other hits.

// bareOK reports whether the findings of hits on ev need only ev's
// normalized fields.
func (s *Set) bareOK(ev *schema.Event, hits []Hit) bool {
	if !bareEvent(ev) {
		return false
	}
	for _, h := range hits {
		if len(s.feeds[h.Rule]) > 0 {
			return false
		}
	}
	return true
}

// bareEvent: the event is one whose hits may go without its record.
func bareEvent(ev *schema.Event) bool {
	return ev.Source == schema.SourceCloudTrail && ev.ID != "" && !ev.Time.IsZero() && !strings.HasPrefix(ev.Action, "sts:")
}

// bareMemo holds the hits of records Wants let go, by the event fields
// that name the record and that nothing between the reader and the
// evaluator rewrites (enrichment sets the network context and may link
// the principal: neither is part of the identity). The map is keyed by a
// seeded hash of the event's id and time (unique per record in practice)
// and an entry holds the whole identity, compared in full: two records
// whose id and time agree but not the rest never share an entry. An entry
// counts the pending events of its identity; the evaluator takes one.
// Unlike hitMemo it never starts over (a dropped entry would be a lost
// hit): full, Wants keeps records again. Two pending records of one
// identity (one record read twice) with the same hits share an entry;
// with other hits, or another identity under the same key, the second
// keeps its record. Only a record forged with another's id, time, action,
// resource, account and address and no hit can take the entry first: the
// finding is then raised at that event, whose fields in the finding are
// the same but for the principal.
// Pending entries belong to the Set: a rule reload drops them (replay,
// the only caller of Wants, loads its rules once).
type bareMemo struct {
	mu   sync.Mutex
	n    atomic.Int64
	m    map[uint64]bareHits
	seed maphash.Seed
}

type bareHits struct {
	id      bareID
	pending int
	hits    memoHits
}

// bareID is a record's identity: the event's id and time and the fields
// of a finding that nothing after the reader rewrites.
type bareID struct {
	id, action, resource, account, ip string
	t                                 int64
}

func newBareMemo() *bareMemo { return &bareMemo{m: map[uint64]bareHits{}, seed: maphash.MakeSeed()} }

// bareKey is what the map key hashes (by the map hasher: the id in place,
// no copy).
type bareKey struct {
	id string
	t  int64
}

func (m *bareMemo) key(ev *schema.Event) (uint64, bareID) {
	t := ev.Time.UnixNano()
	return maphash.Comparable(m.seed, bareKey{ev.ID, t}), bareID{ev.ID, ev.Action, ev.Resource, ev.Account, ev.SourceIPRaw, t}
}

// put remembers hits for ev; false when it cannot (the record must be
// kept): the memo is full, or another pending record under the same key
// had another identity or other hits.
func (m *bareMemo) put(ev *schema.Event, hits []Hit) bool {
	k, id := m.key(ev)
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.m[k]; ok {
		if e.id != id || !e.hits.equal(hits) {
			return false
		}
		e.pending++
		m.m[k] = e
		return true
	}
	if len(m.m) >= maxMemo {
		return false
	}
	e := bareHits{id: id, pending: 1, hits: memoHits{n: len(hits)}}
	if len(hits) <= len(e.hits.one) {
		copy(e.hits.one[:], hits)
	} else {
		e.hits.more = append([]Hit(nil), hits...)
	}
	m.m[k] = e
	m.n.Store(int64(len(m.m)))
	return true
}

// take appends the hits remembered for ev to out and counts one pending
// event of its identity as handled.
func (m *bareMemo) take(ev *schema.Event, out []Hit) ([]Hit, bool) {
	if m.n.Load() == 0 || !bareEvent(ev) {
		return out, false
	}
	k, id := m.key(ev)
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.m[k]
	if !ok || e.id != id {
		return out, false
	}
	if e.pending--; e.pending == 0 {
		delete(m.m, k)
		m.n.Store(int64(len(m.m)))
	} else {
		m.m[k] = e
	}
	return e.hits.appendTo(out), true
}

func (e *memoHits) appendTo(out []Hit) []Hit {
	if e.more != nil {
		return append(out, e.more...)
	}
	return append(out, e.one[:e.n]...)
}

func (e *memoHits) equal(hits []Hit) bool {
	if e.n != len(hits) {
		return false
	}
	have := e.more
	if have == nil {
		have = e.one[:e.n]
	}
	for i := range hits {
		if have[i] != hits[i] {
			return false
		}
	}
	return true
}
