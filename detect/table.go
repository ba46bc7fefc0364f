package detect

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math/bits"
	"time"

	"auditwatch/detect/state"
	"auditwatch/schema"
)

// key identifies one entry of a table: a keyed 128-bit hash of the
// entry's length-prefixed parts (see hashKey). Fixed-size keys keep the
// working set compact (no per-entry strings) and cannot be steered into
// collisions by attacker-chosen principals or resources.
type key [16]byte

// MarshalText writes a key as hex (compact in JSON state entries).
func (k key) MarshalText() ([]byte, error) {
	return hex.AppendEncode(nil, k[:]), nil
}

// UnmarshalText reads a key written by MarshalText.
func (k *key) UnmarshalText(b []byte) error {
	if hex.DecodedLen(len(b)) != len(k) {
		return fmt.Errorf("state key: want %d hex digits, got %d", 2*len(k), len(b))
	}
	_, err := hex.Decode(k[:], b)
	return err
}

// hashKey is the secret of the keyed hash behind table keys. A store gets
// a random one when it is first written and keeps it (so keys are stable
// across restarts); keys are SipHash-2-4-128 under it, several times
// cheaper than SHA-256 on these short inputs and, being keyed, as immune
// to chosen collisions. legacy marks a store written before keys were
// keyed: its entries are found by the SHA-256 (truncated to 128 bits) they
// were stored under, so an upgrade loses no baseline.
type hashKey struct {
	k0, k1 uint64
	legacy bool
}

// hasher builds keys without allocating. A hasher without a key (the zero
// value) uses SHA-256, as legacy stores do. It remembers the keys of the
// parts it hashed last (a small direct-mapped memo): the same principal,
// resource or pair comes back event after event, and a memo hit costs a
// string comparison instead of a hash.
type hasher struct {
	buf  []byte
	k    *hashKey
	memo *[memoSlots]memoEntry
}

// memoSlots is the size of a hasher's memo.
const (
	memoBits  = 9
	memoSlots = 1 << memoBits
)

// memoHash places a part in the memo: its length and its first and last
// eight bytes (all of a shorter part), where principals, resources and
// addresses differ. Slots only place entries (a hit compares the parts
// themselves), and keys never depend on them.
func memoHash(s string) uint64 {
	n := len(s)
	var x uint64
	if n >= 8 {
		x = load64(s) ^ bits.RotateLeft64(load64(s[n-8:]), 31)
	} else {
		for i := 0; i < n; i++ {
			x = x<<8 | uint64(s[i])
		}
	}
	return (x ^ uint64(n)<<56) * 0x9e3779b97f4a7c15
}

// load64 reads s[:8] little-endian (one load).
func load64(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// memoEntry is one remembered key: the parts it was computed from (n of
// them) and the key.
type memoEntry struct {
	n    int
	a, b string
	k    key
}

func (h *hasher) sum(parts ...string) key {
	if len(parts) == 0 || len(parts) > 2 {
		return h.compute(parts)
	}
	a, b := parts[0], ""
	if len(parts) == 2 {
		b = parts[1]
	}
	if h.memo == nil {
		h.memo = new([memoSlots]memoEntry)
	}
	// The slot comes from the parts' text (a fast seeded hash); a hit
	// compares the parts themselves.
	x := memoHash(a)
	if len(parts) == 2 {
		x = bits.RotateLeft64(x, 17) ^ memoHash(b) ^ 1
	}
	m := &h.memo[(x*0x9e3779b97f4a7c15)>>(64-memoBits)]
	if m.n == len(parts) && m.a == a && m.b == b {
		return m.k
	}
	k := h.compute(parts)
	*m = memoEntry{n: len(parts), a: a, b: b, k: k}
	return k
}

// compute hashes the length-prefixed parts under the hasher's key.
func (h *hasher) compute(parts []string) key {
	b := h.buf[:0]
	for _, p := range parts {
		b = binary.AppendUvarint(b, uint64(len(p)))
		b = append(b, p...)
	}
	h.buf = b
	var k key
	if h.k == nil || h.k.legacy {
		s := sha256.Sum256(b)
		copy(k[:], s[:16])
		return k
	}
	h0, h1 := sipHash128(h.k.k0, h.k.k1, b)
	binary.LittleEndian.PutUint64(k[:8], h0)
	binary.LittleEndian.PutUint64(k[8:], h1)
	return k
}

// codec persists a table's values.
type codec[V any] interface {
	encode(v *V) ([]byte, error)
	decode(b []byte, v *V) error
}

type node[V any] struct {
	k          key
	v          V
	prev, next *node[V]
	size       int32 // bytes accounted for this entry
	dirty      bool
	prot       bool // in the protected segment
	// proven: admitted to durable state: created for a principal known
	// before its event (or in the history), loaded back from the store or
	// spill, or written once. Other entries are written only within a
	// flush's allowance (unprovenWrites) and dropped when evicted.
	proven bool
	listed bool // in the table's dirty list
	// owner: the principal the entry was created for while unknown
	// (ownerOf its principals key; 0 for none or a known one): admitting
	// that principal admits the entry too (memBudget.promoted).
	owner uint64
}

// memBudget is the byte budget of an engine's tables: entries in memory
// and evicted entries waiting in spill maps for the next checkpoint. Each
// table gets a fixed share (tableShares) and evicts its own least valuable
// entries when an insert would pass it, so one table's flood never pushes
// out another's baselines.
type memBudget struct {
	limit int64
	used  int64
	// spillLimit bounds the spill maps' share: beyond it the engine asks
	// for a checkpoint (NeedCheckpoint), beyond twice it the oldest
	// spilled entries are dropped (counted).
	spillLimit int64
	spilled    int64
	// learningEvictions: entries evicted while their principal was still
	// learning (their baseline will be reloaded from the store, but a
	// flood is crowding out new principals).
	learningEvictions uint64
	// oneOffDropped: unproven entries evicted before a checkpoint
	// admitted them, not written to the store (admission).
	oneOffDropped uint64
	// known: the principal of the event being evaluated was saved before
	// it (proven: in the store or admitted, or from the history). Entries
	// created for it are admitted
	// at once: a long-lived principal's new pair, group or counter is
	// part of an established baseline, and dropping it under a flood
	// would change its findings (a pair reported again, a group split).
	known bool
	// owner: ownerOf the unknown principal of the event being evaluated
	// (0 when known or none): entries created now carry it.
	owner uint64
	// promoted: principals the running checkpoint admits (written within
	// the principals table's allowance, at most maxPromoted): the other
	// tables write their entries with them.
	promoted map[uint64]struct{}
}

// maxPromoted bounds memBudget.promoted (a checkpoint admits at most
// unprovenWrites principals).
const maxPromoted = 1 << 16

// ownerOf names a principal's entries by its principals-table key.
func ownerOf(k key) uint64 { return binary.LittleEndian.Uint64(k[:8]) | 1 }

// promote records that the checkpoint admits the principal owner.
func (m *memBudget) promote(owner uint64) {
	if m.promoted == nil {
		m.promoted = make(map[uint64]struct{})
	}
	if len(m.promoted) < maxPromoted {
		m.promoted[owner] = struct{}{}
	}
}

// ownerBack reports whether the running checkpoint admits owner.
func (m *memBudget) ownerBack(owner uint64) bool {
	if owner == 0 || len(m.promoted) == 0 {
		return false
	}
	_, ok := m.promoted[owner]
	return ok
}

// table is a bounded in-memory working set over one space of the durable
// store. Misses load from the store; dirty entries are written at the next
// checkpoint; evicted dirty entries wait (encoded) in a spill map until
// then. Memory is bounded in bytes by the engine's shared memBudget (and
// in entries by max).
//
// Eviction is segmented LRU: a new or reloaded entry enters the
// probationary segment and moves to the protected segment when it is used
// again while in memory, or at once when it comes back from the spill or
// the store after an eviction; eviction takes the probationary segment's least recently used
// entry first. A flood of one-off keys (hostile principals, addresses,
// resources) so churns through probation and does not push out the
// baselines of principals that keep coming back. Every eviction is
// counted, and so is every spilled entry dropped because the spill
// exceeded twice its byte budget before a checkpoint.
//
// Admission (with the store as the ghost list): entries created for a
// principal saved before the event (memBudget.known) are admitted at
// once, so an established principal's state is never dropped and its
// findings do not depend on a flood. Other entries (new principals, or
// none) are written at most unprovenWrites per table and checkpoint, a
// principal with its entries (see flush); the rest stay unsaved in
// memory and are dropped when evicted (counted in OneOffDropped). A flood
// of new keys, used once or more, so costs memory churn, not a store
// write per key. The price, only under a flood and only for such keys: a
// key that returns after its eviction starts afresh (a new principal
// relearns), and a crash loses what was held.
type table[V any] struct {
	space    string
	max      int
	maxSpill int
	st       *state.Store
	codec    codec[V]
	log      *slog.Logger
	hooks    evictHooks
	mem      *memBudget
	// bytes held (entries and spill) against limit, this table's share of
	// the engine's budget (setLimit).
	bytes, limit int64

	m             map[key]*node[V]
	prob, protect list[V] // probationary and protected segments
	free          *node[V]
	last          *node[V] // returned by the last get: its size is re-measured
	// owners: the keys of this table are principals (ownerOf).
	owners         bool
	dirty          []key
	spill          map[key][]byte
	spillOrder     []key
	spillBytes     int64
	learning       func(v *V) bool // entry belongs to a principal still learning
	evictedLearner uint64

	// persisted: the store may hold entries of this space (false on a
	// fresh store until the first checkpoint saves one: no misses hit disk).
	persisted bool
	// stored holds every key ever written to this space (a Bloom filter):
	// a miss on a key it lacks, such as a flood's new key, skips the store.
	stored bloom

	// Expiry of saved entries nobody touches (hostile keys that never
	// return): lastActive gives an entry's last event time; entries idle
	// longer than retain are deleted from the store by sweep.
	lastActive func(v *V) int64
	retain     time.Duration
	cursor     []byte

	// held counts unproven dirty entries a flush did not write (see
	// flush): off the dirty list, in the probationary segment.
	held int
	// unprovenListed counts unproven entries in the dirty list.
	unprovenListed int

	oneOffDropped      uint64
	rebuildAfterCommit bool
	evictions          uint64
	spillDropped       uint64
	loadErrors         uint64
	expired            uint64
	// pendingExpired: deletions queued by sweep, counted once committed.
	pendingExpired uint64
}

// list is one LRU segment (head: most recently used).
type list[V any] struct {
	head, tail *node[V]
	n          int
}

func (l *list[V]) unlink(n *node[V]) {
	if n.prev != nil {
		n.prev.next = n.next
	} else {
		l.head = n.next
	}
	if n.next != nil {
		n.next.prev = n.prev
	} else {
		l.tail = n.prev
	}
	n.prev, n.next = nil, nil
	l.n--
}

func (l *list[V]) pushFront(n *node[V]) {
	n.prev, n.next = nil, l.head
	if l.head != nil {
		l.head.prev = n
	}
	l.head = n
	if l.tail == nil {
		l.tail = n
	}
	l.n++
}

// expire enables sweeping of entries idle longer than retain.
func (t *table[V]) expire(retain time.Duration, lastActive func(v *V) int64) *table[V] {
	t.retain, t.lastActive = retain, lastActive
	return t
}

// sweepBatch is how many saved entries one checkpoint examines per table
// (a live pipeline checkpointing every few seconds sweeps millions a day).
const sweepBatch = 2_000

// sweep queues into b the deletion of saved entries idle longer than
// retain at event time now, examining up to sweepBatch entries from where
// the previous sweep stopped. Entries in memory are left alone.
func (t *table[V]) sweep(b *state.Batch, now int64) (int, error) {
	if t.lastActive == nil || t.st == nil || !t.persisted {
		return 0, nil
	}
	cutoff := now - t.retain.Nanoseconds()
	n := 0
	var v V
	var k key
	next, err := t.st.Scan(t.space, t.cursor, sweepBatch, func(kb, vb []byte) {
		if len(kb) != len(k) {
			return
		}
		copy(k[:], kb)
		if t.m[k] != nil {
			return
		}
		if _, ok := t.spill[k]; ok {
			return
		}
		var zero V
		v = zero
		if err := t.codec.decode(vb, &v); err != nil {
			return
		}
		if t.lastActive(&v) < cutoff {
			kk := k
			b.Delete(t.space, kk[:])
			n++
		}
	})
	if err != nil {
		return 0, err
	}
	t.cursor = next
	return n, nil
}

// evictHooks counts evictions in metrics and holds the engine's byte
// budget.
type evictHooks interface {
	evicted(space string)
	spillDropped(space string)
	oneOffDropped(space string)
	budget() *memBudget
}

func newTable[V any](space string, max, maxSpill int, st *state.Store, c codec[V], log *slog.Logger, hooks evictHooks) *table[V] {
	t := &table[V]{space: space, max: max, maxSpill: maxSpill, st: st, codec: c, log: log, hooks: hooks,
		m: make(map[key]*node[V]), spill: make(map[key][]byte)}
	if hooks != nil {
		t.mem = hooks.budget()
	}
	if t.mem == nil {
		t.mem = &memBudget{limit: 1 << 62, spillLimit: 1 << 62}
	}
	t.limit = t.mem.limit
	if st != nil {
		has, err := st.Has(space)
		t.persisted = err != nil || has
		t.rebuildFilter(0)
	}
	return t
}

// rebuildFilter sizes the Bloom filter for the keys saved (at least want)
// and fills it from the store. Without a readable store it says "maybe"
// for every key.
func (t *table[V]) rebuildFilter(want int) {
	n := 0
	if t.persisted {
		c, err := t.st.Count(t.space)
		if err != nil {
			t.stored = bloom{}
			return
		}
		n = c
	}
	old := int64(len(t.stored.bits) * 8)
	t.stored = newBloom(max(2*n, want, 1<<14))
	if t.mem != nil {
		t.add(int64(len(t.stored.bits)*8) - old)
	}
	if n == 0 {
		return
	}
	var k key
	err := t.st.ForEach(t.space, func(kb, _ []byte) error {
		if len(kb) == len(k) {
			copy(k[:], kb)
			t.stored.insert(k)
		}
		return nil
	})
	if err != nil {
		t.stored = bloom{}
	}
}

// nodeOverhead approximates the bytes of one entry besides its value's
// own heap: the node (key, links, flags), its map slot and allocator
// rounding.
const nodeOverhead = 96

// spillOverhead approximates a spill map entry besides its encoded bytes.
const spillOverhead = 64

func (t *table[V]) add(n int64) {
	t.bytes += n
	t.mem.used += n
}

func (t *table[V]) setLimit(n int64) { t.limit = n }

// remeasure updates the accounted size of the entry returned by the last
// get (the caller may have grown it since).
func (t *table[V]) remeasure() {
	n := t.last
	if n == nil {
		return
	}
	t.last = nil
	sz := int32(nodeOverhead + valueSize(&n.v))
	t.add(int64(sz - n.size))
	n.size = sz
}

// get returns the entry for k, loading it from spill or store; with create
// a missing entry is inserted zero-valued. found reports whether it existed.
// The returned node is valid until the next get on this table.
func (t *table[V]) get(k key, create bool) (n *node[V], found bool) {
	t.remeasure()
	if n = t.m[k]; n != nil {
		t.use(n)
		t.last = n
		return n, true
	}
	var raw []byte
	if b, ok := t.spill[k]; ok {
		raw = b
		t.dropSpill(k, b)
	} else if t.st != nil && t.persisted && t.stored.mayHave(k) {
		b, err := t.st.Get(t.space, k[:])
		if err != nil {
			t.loadErrors++
			t.log.Error("detect: state read failed", "space", t.space, "err", err)
		}
		raw = b
	}
	if raw == nil && !create {
		return nil, false
	}
	n = t.insert(k)
	t.last = n
	if raw != nil {
		// Back from spill or store: a key that returns after eviction
		// (the store is 2Q's ghost list) is protected at once; a new key
		// has to prove itself in probation.
		t.prob.unlink(n)
		n.prot, n.proven = true, true
		t.protect.pushFront(n)
		t.balance()
		if err := t.codec.decode(raw, &n.v); err != nil {
			t.loadErrors++
			t.log.Error("detect: state entry unreadable, starting it afresh", "space", t.space, "err", err)
			var zero V
			n.v = zero
			return n, false
		}
		return n, true
	}
	return n, false
}

// use records a hit: a probationary entry used again is promoted to the
// protected segment (it stays unproven: a flood that uses each key twice
// is still a flood); the protected segment keeps at most four fifths of
// the entries (its least recently used goes back to probation, see
// balance).
func (t *table[V]) use(n *node[V]) {
	if n.prot {
		if t.protect.head != n {
			t.protect.unlink(n)
			t.protect.pushFront(n)
		}
		return
	}
	t.prob.unlink(n)
	n.prot = true
	t.protect.pushFront(n)
	t.balance()
}

// balance keeps the protected segment at most four fifths of the entries:
// its least recently used goes back to probation.
func (t *table[V]) balance() {
	for t.protect.n > 4*t.prob.n+16 {
		d := t.protect.tail
		t.protect.unlink(d)
		d.prot = false
		t.prob.pushFront(d)
	}
}

// touch marks n to be written at the next checkpoint.
func (t *table[V]) touch(n *node[V]) {
	if !n.listed {
		if n.dirty && !n.proven {
			t.held-- // held by a flush, changed again: listed again
		}
		n.listed = true
		t.dirty = append(t.dirty, n.k)
		if !n.proven {
			t.unprovenListed++
		}
	}
	n.dirty = true
}

func (t *table[V]) insert(k key) *node[V] {
	for (len(t.m) >= t.max || t.bytes >= t.limit) && len(t.m) > 0 {
		t.evict()
	}
	n := t.free
	if n != nil {
		t.free = nil
		var zero V
		n.v = zero
		n.dirty, n.prot, n.proven, n.listed = false, false, false, false
	} else {
		n = &node[V]{}
	}
	n.k = k
	n.proven = t.mem.known
	n.owner = 0
	if !n.proven {
		n.owner = t.mem.owner
	}
	n.size = nodeOverhead
	t.add(nodeOverhead)
	t.m[k] = n
	t.prob.pushFront(n)
	return n
}

func (t *table[V]) evict() {
	n := t.prob.tail
	if n == nil {
		n = t.protect.tail
	}
	if n == nil {
		return
	}
	if n == t.last {
		t.last = nil
	}
	if n.prot {
		t.protect.unlink(n)
	} else {
		t.prob.unlink(n)
	}
	delete(t.m, n.k)
	if n.dirty && !n.proven {
		if n.listed {
			t.unprovenListed--
		} else {
			t.held--
		}
	}
	t.add(-int64(n.size))
	t.evictions++
	if t.hooks != nil {
		t.hooks.evicted(t.space)
	}
	if t.learning != nil && t.learning(&n.v) {
		t.evictedLearner++
		t.mem.learningEvictions++
	}
	if n.dirty {
		if !n.proven {
			// Admission: an entry no checkpoint admitted (a flood's
			// principals, addresses, resources) is not worth a store
			// write; its state is dropped and counted.
			t.oneOffDropped++
			t.mem.oneOffDropped++
			if t.hooks != nil {
				t.hooks.oneOffDropped(t.space)
			}
		} else if b, err := t.codec.encode(&n.v); err == nil {
			t.addSpill(n.k, b)
		}
	}
	t.free = n
}

func (t *table[V]) addSpill(k key, b []byte) {
	if old, ok := t.spill[k]; ok {
		t.dropSpill(k, old)
	}
	t.spill[k] = b
	t.spillOrder = append(t.spillOrder, k)
	sz := int64(len(b) + spillOverhead)
	t.spillBytes += sz
	t.mem.spilled += sz
	t.add(sz)
	for (len(t.spill) > t.maxSpill || t.mem.spilled > 2*t.mem.spillLimit) && len(t.spillOrder) > 0 {
		old := t.spillOrder[0]
		t.spillOrder = t.spillOrder[1:]
		if ob, ok := t.spill[old]; ok {
			t.dropSpill(old, ob)
			t.spillDropped++
			if t.hooks != nil {
				t.hooks.spillDropped(t.space)
			}
		}
	}
}

func (t *table[V]) dropSpill(k key, b []byte) {
	delete(t.spill, k)
	sz := int64(len(b) + spillOverhead)
	t.spillBytes -= sz
	t.mem.spilled -= sz
	t.add(-sz)
}

// unprovenWrites is how many unproven entries (created for a principal
// unknown before its event, or for none) one flush of a table admits:
// writes, and so proves. Normal traffic brings a few new principals per
// checkpoint, all written as before. A flood of new keys brings thousands,
// used once or several times: the rest wait in memory (held) for a later
// flush with allowance left, or are dropped when evicted (counted in
// OneOffDropped). A flood so costs no store write per key: random 128-bit
// keys each touch their own B+tree page, and writing them was most of a
// flood's CPU (and, through the pages a commit copies, of its memory).
// A principal admitted by the principals table brings every held entry
// created for it (memBudget.promoted): its pairs, networks and counters
// are saved together, never a principal without the pairs it had.
const unprovenWrites = 1_024

// pressuredWrites replaces unprovenWrites while the table is at its share
// (see pressured): a sustained flood keeps it there, and writing 1,024
// new keys per table and checkpoint grew the store by hundreds of MiB
// over 10M events (its mapped pages in RSS, its commits in CPU). New
// principals of normal traffic come far slower than that.
const pressuredWrites = 64

// pressured reports that the table is at its byte share or entry bound
// (evicting).
func (t *table[V]) pressured() bool {
	return t.bytes >= t.limit-t.limit/16 || len(t.m) >= t.max-t.max/16
}

// flush queues every dirty and spilled entry into b, except unproven
// entries beyond unprovenWrites. Dirty flags are cleared only by
// committed, so a failed commit loses nothing.
func (t *table[V]) flush(b *state.Batch) error {
	t.remeasure()
	allow, pressured := unprovenWrites, t.pressured()
	if pressured {
		allow = pressuredWrites
	}
	put := func(k key, n *node[V]) error {
		v, err := t.codec.encode(&n.v)
		if err != nil {
			return err
		}
		kk := k
		b.Put(t.space, kk[:], v)
		t.stored.insert(k)
		return nil
	}
	// admit proves n if its principal is admitted or allowance is left.
	admit := func(n *node[V]) bool {
		if t.mem.ownerBack(n.owner) {
			n.proven = true
			return true
		}
		if allow == 0 {
			return false
		}
		allow--
		n.proven = true
		if t.owners {
			t.mem.promote(ownerOf(n.k))
		}
		return true
	}
	// The list keeps only what is written (committed looks those up).
	written := t.dirty[:0]
	for _, k := range t.dirty {
		n := t.m[k]
		if n == nil || !n.dirty || !n.listed {
			continue
		}
		if !n.proven && !admit(n) {
			// Held: stays dirty in memory, off the list.
			n.listed = false
			t.held++
			continue
		}
		if err := put(k, n); err != nil {
			return err
		}
		written = append(written, k)
	}
	t.dirty = written
	// Held entries whose principal is admitted now, and, the flood over
	// (or never begun), the oldest others. A walk visits the whole table:
	// not at every checkpoint of a flood that keeps the table full (an
	// admitted principal's entries of this interval were written above;
	// older ones wait for the flood to pass).
	if t.held > 0 && (allow > 0 || len(t.mem.promoted) > 0 && !pressured) {
		for _, l := range []*list[V]{&t.prob, &t.protect} {
			for n := l.tail; n != nil && t.held > 0; n = n.prev {
				if !n.dirty || n.listed || n.proven || !admit(n) {
					continue
				}
				t.held--
				n.listed = true
				t.dirty = append(t.dirty, n.k)
				if err := put(n.k, n); err != nil {
					return err
				}
			}
		}
	}
	t.unprovenListed = 0
	for k, v := range t.spill {
		kk := k
		b.Put(t.space, kk[:], v)
		t.stored.insert(k)
	}
	if t.stored.full() {
		t.rebuildAfterCommit = true
	}
	return nil
}

// committed is called after the batch of flush was committed.
func (t *table[V]) committed() {
	if len(t.dirty) > 0 || len(t.spill) > 0 {
		t.persisted = true
	}
	t.expired += t.pendingExpired
	t.pendingExpired = 0
	if t.rebuildAfterCommit {
		t.rebuildAfterCommit = false
		t.rebuildFilter(4 * t.stored.n)
	}
	for _, k := range t.dirty {
		if n := t.m[k]; n != nil && n.listed {
			n.dirty, n.listed = false, false
		}
	}
	t.dirty = t.dirty[:0]
	t.unprovenListed = 0
	clear(t.spill)
	t.spillOrder = t.spillOrder[:0]
	t.mem.spilled -= t.spillBytes
	t.add(-t.spillBytes)
	t.spillBytes = 0
}

func (t *table[V]) len() int { return len(t.m) }

// tableStats is what every table reports.
type tableStats interface {
	name() string
	stats() (size int, evictions, spillDropped, loadErrors uint64, spilled int)
	oneOffs() uint64
	heldCount() int
	pendingWrites() int
	expiredCount() uint64
	flush(b *state.Batch) error
	setLimit(n int64)
	sweepInto(b *state.Batch, now int64) error
	committed()
}

func (t *table[V]) name() string { return t.space }

func (t *table[V]) expiredCount() uint64 { return t.expired }

func (t *table[V]) sweepInto(b *state.Batch, now int64) error {
	n, err := t.sweep(b, now)
	t.pendingExpired = uint64(n)
	return err
}

func (t *table[V]) stats() (int, uint64, uint64, uint64, int) {
	return len(t.m), t.evictions, t.spillDropped, t.loadErrors, len(t.spill)
}

// valueSize approximates the heap bytes a state value holds beyond its
// node (slices, strings); the node itself is nodeOverhead.
func valueSize(v any) int {
	switch x := v.(type) {
	case *principalState, *pairState:
		return 16
	case *ipState:
		return 24 + cap(x.Nets)*40
	case *spikeState:
		n := 200 + cap(x.Buckets)*16 + cap(x.Who)*24 + burstSize(&x.B)
		for _, s := range x.Recent {
			n += 16 + len(s)
		}
		return n
	case *privState:
		return burstSize(&x.B)
	case *groupState:
		return burstSize(&x.B)
	case *volState:
		return 40 + cap(x.Seen)*24 + burstSize(&x.B)
	default:
		return 64
	}
}

func burstSize(b *burst) int {
	n := 80 + len(b.Key)
	for _, s := range b.IDs {
		n += 16 + len(s)
	}
	for _, s := range b.Items {
		n += 16 + len(s)
	}
	return n
}

// tableShares weighs each table's part of the state budget by what its
// entries cost and how many a busy deployment keeps (a table not listed
// weighs 10).
var tableShares = map[string]int64{
	spacePrincipals:                            10,
	schema.DetectorUnexpectedIP:                15,
	schema.DetectorFirstTimeAccess + ".pairs":  25,
	schema.DetectorFirstTimeAccess + ".groups": 5,
	schema.DetectorAuthFailureSpike:            15,
	schema.DetectorPrivilegedUse:               5,
	schema.DetectorAccessVolumeSpike:           25,
}

// shareBudget splits limit over tabs by tableShares.
func shareBudget(limit int64, tabs []tableStats) {
	var sum int64
	w := make([]int64, len(tabs))
	for i, t := range tabs {
		w[i] = 10
		if x, ok := tableShares[t.name()]; ok {
			w[i] = x
		}
		sum += w[i]
	}
	for i, t := range tabs {
		t.setLimit(limit * w[i] / sum)
	}
}

func (t *table[V]) oneOffs() uint64 { return t.oneOffDropped }

func (t *table[V]) heldCount() int { return t.held }

// pendingWrites approximates the entries the next checkpoint writes: dirty
// and spilled ones, less the unproven entries a flush holds back.
func (t *table[V]) pendingWrites() int {
	allow := unprovenWrites
	if t.pressured() {
		allow = pressuredWrites
	}
	return len(t.dirty) + len(t.spill) - t.unprovenListed + min(t.unprovenListed, allow)
}

// bloom is a Bloom filter over table keys (already uniform keyed hashes:
// two halves give the probe sequence). The zero value says "maybe" for
// every key.
type bloom struct {
	bits []uint64
	mask uint64
	n    int // keys inserted
	cap  int // keys it was sized for
}

const bloomProbes = 7

// newBloom sizes a filter for n keys at ~1% false positives (10 bits a
// key, rounded up to a power of two).
func newBloom(n int) bloom {
	m := uint64(1 << 16)
	for m < uint64(n)*10 {
		m <<= 1
	}
	return bloom{bits: make([]uint64, m/64), mask: m - 1, cap: n}
}

func (b *bloom) insert(k key) {
	if b.bits == nil {
		return
	}
	h1, h2 := binary.LittleEndian.Uint64(k[:8]), binary.LittleEndian.Uint64(k[8:])|1
	for i := uint64(0); i < bloomProbes; i++ {
		p := (h1 + i*h2) & b.mask
		b.bits[p/64] |= 1 << (p % 64)
	}
	b.n++
}

func (b *bloom) mayHave(k key) bool {
	if b.bits == nil {
		return true
	}
	h1, h2 := binary.LittleEndian.Uint64(k[:8]), binary.LittleEndian.Uint64(k[8:])|1
	for i := uint64(0); i < bloomProbes; i++ {
		p := (h1 + i*h2) & b.mask
		if b.bits[p/64]&(1<<(p%64)) == 0 {
			return false
		}
	}
	return true
}

// full reports that more keys went in than it was sized for (false
// positives rise): rebuild it larger.
func (b *bloom) full() bool { return b.bits != nil && b.n > 2*b.cap }
