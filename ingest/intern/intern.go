// Package intern owns a small, bounded table of strings that repeat from
// record to record in audit logs (actions, regions, user agents, mounts,
// principals, addresses), so a parser hands out one shared string instead
// of allocating a copy per event. Memory stays bounded whatever the input:
// the table holds at most MaxEntries strings of at most MaxLen bytes and
// starts over when full (counted in Resets).
package intern

import (
	"encoding/binary"
	"math/bits"
)

// Defaults for New.
const (
	DefaultMaxEntries = 8192
	DefaultMaxLen     = 256
)

// Table interns strings. The zero value is not usable; a nil *Table is,
// and then every call allocates. Not safe for concurrent use.
type Table struct {
	m map[string]string
	// recent is a direct-mapped cache in front of m, indexed by a cheap
	// hash of a string's length and outer bytes: a hit costs one
	// comparison instead of a map lookup. It holds only strings m holds
	// (or held before its last reset, which clears it too).
	recent     *[recentSize]string
	maxEntries int
	maxLen     int
	// Resets counts how many times the table was full and started over.
	Resets int64
}

// New returns a table of at most maxEntries strings of at most maxLen bytes
// (defaults when <= 0).
func New(maxEntries, maxLen int) *Table {
	if maxEntries <= 0 {
		maxEntries = DefaultMaxEntries
	}
	if maxLen <= 0 {
		maxLen = DefaultMaxLen
	}
	return &Table{m: make(map[string]string, 256), recent: new([recentSize]string), maxEntries: maxEntries, maxLen: maxLen}
}

const recentBits = 10

const recentSize = 1 << recentBits

// recentSlot hashes b's length and its first and last eight bytes (all
// of a short b). Strings differing only in between share a slot, and
// then simply miss it.
func recentSlot(b []byte) uint64 {
	var x uint64
	if len(b) >= 8 {
		x = binary.LittleEndian.Uint64(b) ^ bits.RotateLeft64(binary.LittleEndian.Uint64(b[len(b)-8:]), 31)
	} else {
		for _, c := range b {
			x = x<<8 | uint64(c)
		}
	}
	x ^= uint64(len(b)) << 56
	return (x * 0x9e3779b97f4a7c15) >> (64 - recentBits)
}

// Bytes returns b as a string, shared with earlier calls for equal bytes
// when b is short enough to be kept.
func (t *Table) Bytes(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if t == nil || len(b) > t.maxLen {
		return string(b)
	}
	h := recentSlot(b)
	if s := t.recent[h]; len(s) == len(b) && s == string(b) {
		return s
	}
	s, ok := t.m[string(b)]
	if !ok {
		s = string(b)
		t.add(s)
	}
	t.recent[h] = s
	return s
}

// Slot remembers the last string one call site got, so that the common
// case, the same value as last time, costs a comparison instead of a
// table lookup.
type Slot struct{ last string }

// Cached is Bytes through a Slot.
func (t *Table) Cached(sl *Slot, b []byte) string {
	if len(b) == len(sl.last) && string(b) == sl.last {
		return sl.last
	}
	s := t.Bytes(b)
	sl.last = s
	return s
}

// String returns the table's copy of s (s itself when it was not known).
// Use it for strings built by the caller, so equal values share memory.
func (t *Table) String(s string) string {
	if t == nil || s == "" || len(s) > t.maxLen {
		return s
	}
	if v, ok := t.m[s]; ok {
		return v
	}
	t.add(s)
	return s
}

func (t *Table) add(s string) {
	if len(t.m) >= t.maxEntries {
		clear(t.m)
		clear(t.recent[:])
		t.Resets++
	}
	t.m[s] = s
}

// Len is the number of strings held.
func (t *Table) Len() int {
	if t == nil {
		return 0
	}
	return len(t.m)
}
