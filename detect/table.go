package detect

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"log/slog"
	"time"

	"auditwatch/detect/state"
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
// value) uses SHA-256, as legacy stores do.
type hasher struct {
	buf []byte
	k   *hashKey
}

func (h *hasher) sum(parts ...string) key {
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
	dirty      bool
}

// table is a bounded in-memory working set (LRU) over one space of the
// durable store. Misses load from the store; dirty entries are written at
// the next checkpoint; evicted dirty entries wait (encoded) in a spill map
// until then. Every eviction is counted, and so is every spilled entry
// dropped because the spill map overflowed before a checkpoint.
type table[V any] struct {
	space    string
	max      int
	maxSpill int
	st       *state.Store
	codec    codec[V]
	log      *slog.Logger
	hooks    evictHooks

	m          map[key]*node[V]
	head, tail *node[V] // head: most recently used
	free       *node[V]
	dirty      []key
	spill      map[key][]byte
	spillOrder []key

	// persisted: the store may hold entries of this space (false on a
	// fresh store until the first checkpoint saves one: no misses hit disk).
	persisted bool

	// Expiry of saved entries nobody touches (hostile keys that never
	// return): lastActive gives an entry's last event time; entries idle
	// longer than retain are deleted from the store by sweep.
	lastActive func(v *V) int64
	retain     time.Duration
	cursor     []byte

	evictions    uint64
	spillDropped uint64
	loadErrors   uint64
	expired      uint64
	// pendingExpired: deletions queued by sweep, counted once committed.
	pendingExpired uint64
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

// evictHooks counts evictions in metrics.
type evictHooks interface {
	evicted(space string)
	spillDropped(space string)
}

func newTable[V any](space string, max, maxSpill int, st *state.Store, c codec[V], log *slog.Logger, hooks evictHooks) *table[V] {
	t := &table[V]{space: space, max: max, maxSpill: maxSpill, st: st, codec: c, log: log, hooks: hooks,
		m: make(map[key]*node[V]), spill: make(map[key][]byte)}
	if st != nil {
		has, err := st.Has(space)
		t.persisted = err != nil || has
	}
	return t
}

// get returns the entry for k, loading it from spill or store; with create
// a missing entry is inserted zero-valued. found reports whether it existed.
// The returned node is valid until the next get on this table.
func (t *table[V]) get(k key, create bool) (n *node[V], found bool) {
	if n = t.m[k]; n != nil {
		t.moveFront(n)
		return n, true
	}
	var raw []byte
	if b, ok := t.spill[k]; ok {
		raw = b
		delete(t.spill, k)
	} else if t.st != nil && t.persisted {
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
	if raw != nil {
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

// touch marks n to be written at the next checkpoint.
func (t *table[V]) touch(n *node[V]) {
	if !n.dirty {
		n.dirty = true
		t.dirty = append(t.dirty, n.k)
	}
}

func (t *table[V]) insert(k key) *node[V] {
	if len(t.m) >= t.max {
		t.evict()
	}
	n := t.free
	if n != nil {
		t.free = nil
		var zero V
		n.v = zero
		n.dirty = false
	} else {
		n = &node[V]{}
	}
	n.k = k
	t.m[k] = n
	n.prev, n.next = nil, t.head
	if t.head != nil {
		t.head.prev = n
	}
	t.head = n
	if t.tail == nil {
		t.tail = n
	}
	return n
}

func (t *table[V]) evict() {
	n := t.tail
	if n == nil {
		return
	}
	t.unlink(n)
	delete(t.m, n.k)
	t.evictions++
	if t.hooks != nil {
		t.hooks.evicted(t.space)
	}
	if n.dirty {
		b, err := t.codec.encode(&n.v)
		if err == nil {
			t.spill[n.k] = b
			t.spillOrder = append(t.spillOrder, n.k)
			for len(t.spill) > t.maxSpill && len(t.spillOrder) > 0 {
				old := t.spillOrder[0]
				t.spillOrder = t.spillOrder[1:]
				if _, ok := t.spill[old]; ok {
					delete(t.spill, old)
					t.spillDropped++
					if t.hooks != nil {
						t.hooks.spillDropped(t.space)
					}
				}
			}
		}
	}
	t.free = n
}

func (t *table[V]) unlink(n *node[V]) {
	if n.prev != nil {
		n.prev.next = n.next
	} else {
		t.head = n.next
	}
	if n.next != nil {
		n.next.prev = n.prev
	} else {
		t.tail = n.prev
	}
	n.prev, n.next = nil, nil
}

func (t *table[V]) moveFront(n *node[V]) {
	if t.head == n {
		return
	}
	t.unlink(n)
	n.next = t.head
	if t.head != nil {
		t.head.prev = n
	}
	t.head = n
	if t.tail == nil {
		t.tail = n
	}
}

// flush queues every dirty and spilled entry into b. Dirty flags are
// cleared only by committed, so a failed commit loses nothing.
func (t *table[V]) flush(b *state.Batch) error {
	for _, k := range t.dirty {
		n := t.m[k]
		if n == nil || !n.dirty {
			continue
		}
		v, err := t.codec.encode(&n.v)
		if err != nil {
			return err
		}
		kk := k
		b.Put(t.space, kk[:], v)
	}
	for k, v := range t.spill {
		kk := k
		b.Put(t.space, kk[:], v)
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
	for _, k := range t.dirty {
		if n := t.m[k]; n != nil {
			n.dirty = false
		}
	}
	t.dirty = t.dirty[:0]
	clear(t.spill)
	t.spillOrder = t.spillOrder[:0]
}

func (t *table[V]) len() int { return len(t.m) }

// tableStats is what every table reports.
type tableStats interface {
	name() string
	stats() (size int, evictions, spillDropped, loadErrors uint64, spilled int)
	expiredCount() uint64
	flush(b *state.Batch) error
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
