package sigma

import (
	"math/bits"
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
// writes the hits on the event itself (marks, below), or when it cannot,
// remembers the hits by the event's identity instead: no copy of the
// record, nothing for the collector, no hash of its text. The evaluator
// finds them by the same identity when the event (without a record)
// reaches it.
//
// A record whose hit feeds a correlation (which reads the record's
// fields) keeps its copy, its hits remembered by the same identity; the
// evaluator finds them by the event that carries the record. The other
// records kept are remembered by their text (hitMemo): an event without
// time or id (the finding's time and id come from the record), a Vault
// entry (the event is completed by pairing after Wants), an STS call (the
// reader keeps those records anyway, see cloudtrail.IssuesCredentials),
// and a second pending record of the same identity with other hits.

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
// the principal: neither is part of the identity). The map is keyed by the
// event's id (unique per record in practice; the map hashes it in place)
// and an entry holds the whole identity, compared in full: two records
// whose id agrees but not the rest never share an entry. An entry counts
// the pending events of its identity; the evaluator takes one.
// Unlike hitMemo it never starts over (a dropped entry would be a lost
// hit): full, Wants keeps records again. Two pending records of one
// identity (one record read twice) with the same hits share an entry;
// with other hits, or another identity under the same id, the second
// keeps its record. Only a record forged with another's id, time, action,
// resource, account and address and no hit can take the entry first: the
// finding is then raised at that event, whose fields in the finding are
// the same but for the principal.
// Pending entries belong to the Set: a rule reload drops them (replay,
// the only caller of Wants, loads its rules once).
//
// The reader puts and the evaluator takes at the same time, from two
// goroutines: the entries are spread over shards by the id, each with its
// own lock, so that the two rarely wait for each other (the evaluator
// takes what the reader put a few hundred records before).
type bareMemo struct {
	// used: something was put (set once: run, which never calls Wants,
	// takes nothing; a count both goroutines update would be one more
	// cache line moving between them per hit)
	used   atomic.Bool
	shards [bareShards]bareShard
}

// pending counts the entries not taken yet.
func (m *bareMemo) pending() int {
	n := 0
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// bareShards: shards of a bareMemo (a power of two).
const bareShards = 32

type bareShard struct {
	mu sync.Mutex
	m  map[string]bareHits
	_  [48]byte // a shard per cache line
}

// bareHits is an entry: 128 bytes at most, so that the map takes its
// fast path for string keys.
type bareHits struct {
	id         bareID
	pending, n int32
	one        [2]Hit
	more       *[]Hit // more than two hits
}

func (e *bareHits) appendTo(out []Hit) []Hit {
	if e.more != nil {
		return append(out, *e.more...)
	}
	return append(out, e.one[:e.n]...)
}

func (e *bareHits) equal(hits []Hit) bool {
	if int(e.n) != len(hits) {
		return false
	}
	have := e.one[:min(e.n, 2)]
	if e.more != nil {
		have = *e.more
	}
	for i := range hits {
		if have[i] != hits[i] {
			return false
		}
	}
	return true
}

// bareID is a record's identity beside its id: the event's time and the
// fields of a finding that nothing after the reader rewrites.
type bareID struct {
	action, resource, account, ip string
	t                             int64
}

func newBareMemo() *bareMemo {
	m := &bareMemo{}
	for i := range m.shards {
		m.shards[i].m = map[string]bareHits{}
	}
	return m
}

func idOf(ev *schema.Event) bareID {
	return bareID{ev.Action, ev.Resource, ev.Account, ev.SourceIPRaw, ev.Time.UnixNano()}
}

// shard picks the id's shard from its last bytes (ids end in random
// hex digits; any spread is correct, a poor one only waits more).
func (m *bareMemo) shard(id string) *bareShard {
	h := uint(len(id))
	for i := max(0, len(id)-4); i < len(id); i++ {
		h = h*31 + uint(id[i])
	}
	return &m.shards[h%bareShards]
}

// put remembers hits for ev; false when it cannot (the record must be
// kept): the memo is full, or another pending record under the same id
// had another identity or other hits.
func (m *bareMemo) put(ev *schema.Event, hits []Hit) bool {
	id := idOf(ev)
	sh := m.shard(ev.ID)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e, ok := sh.m[ev.ID]; ok {
		if e.id != id || !e.equal(hits) {
			return false
		}
		e.pending++
		sh.m[ev.ID] = e
		return true
	}
	if len(sh.m) >= maxMemo/bareShards {
		return false
	}
	e := bareHits{id: id, pending: 1, n: int32(len(hits))}
	if len(hits) <= len(e.one) {
		copy(e.one[:], hits)
	} else {
		more := append([]Hit(nil), hits...)
		e.more = &more
	}
	sh.m[ev.ID] = e
	if !m.used.Load() {
		m.used.Store(true)
	}
	return true
}

// take appends the hits remembered for ev to out and counts one pending
// event of its identity as handled.
func (m *bareMemo) take(ev *schema.Event, out []Hit) ([]Hit, bool) {
	if !m.used.Load() || !bareEvent(ev) {
		return out, false
	}
	id := idOf(ev)
	sh := m.shard(ev.ID)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.m[ev.ID]
	if !ok || e.id != id {
		return out, false
	}
	if e.pending--; e.pending == 0 {
		delete(sh.m, ev.ID)
	} else {
		sh.m[ev.ID] = e
	}
	return e.appendTo(out), true
}

// Hits written on the event (schema.Event.Mark): the common hit (SigmaHQ's
// AssumeRole rule matches most CloudTrail records) goes from Wants to the
// evaluator with the event itself, so nothing is shared between the reader
// and the evaluator and nothing is looked up by the event's identity. The
// mark names the Set (an owner number no other Set in the process has) and
// the hits as bits: bit p is hits[p] of the Set's marks. It is written only
// when it gives back exactly the hits Wants found (each hit one of the
// first 64 marked rules, in load order, none twice; else the hits go to
// bareMemo as before). Each event carries its own hits: records sharing an
// id cannot take each other's, and a rule reload (another Set, another
// owner) ignores the marks of the old one, as it drops bareMemo's entries.

// marks is a Set's table of the rules whose hits may be written on events.
type marks struct {
	owner uint64
	// hits: bit position → the hit (CloudTrail single rules that feed no
	// correlation, in load order, at most 64)
	// (a rule's bit is in the rule itself, markPos, valid while
	// markOwner is this owner)
	hits []Hit
}

// markOwners numbers the Sets (from 1: owner 0 is no mark).
var markOwners atomic.Uint64

func newMarks(s *Set) marks {
	m := marks{owner: markOwners.Add(1)}
	for _, r := range s.single {
		if len(m.hits) == 64 {
			break
		}
		if sourceOf(r.LogSource) != srcCloudTrail || len(s.feeds[r]) > 0 {
			continue
		}
		r.markOwner, r.markPos = m.owner, uint8(len(m.hits))
		m.hits = append(m.hits, Hit{Rule: r, Standalone: !r.referenced || r.generated})
	}
	return m
}

// has reports whether r has a bit in these marks (then it feeds no
// correlation of the Set).
func (m *marks) has(r *Rule) bool { return m.owner != 0 && r.markOwner == m.owner }

// encode writes hits as bits; false when decode would not give them back
// exactly.
func (m *marks) encode(hits []Hit) (uint64, bool) {
	var b uint64
	last := -1
	for _, h := range hits {
		if h.Rule == nil || !m.has(h.Rule) {
			return 0, false
		}
		p := h.Rule.markPos
		if int(p) <= last || int(p) >= len(m.hits) || m.hits[p] != h {
			return 0, false
		}
		b |= 1 << p
		last = int(p)
	}
	return b, b != 0
}

// decode appends the hits of mk to out; false when mk is not this Set's.
func (m *marks) decode(mk schema.Mark, out []Hit) ([]Hit, bool) {
	if mk.Owner == 0 || mk.Owner != m.owner || mk.Bits == 0 {
		return out, false
	}
	n := len(out)
	for b := mk.Bits; b != 0; b &= b - 1 {
		p := bits.TrailingZeros64(b)
		if p >= len(m.hits) {
			return out[:n], false
		}
		out = append(out, m.hits[p])
	}
	return out, true
}
