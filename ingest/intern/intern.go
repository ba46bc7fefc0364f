// Package intern owns a small, bounded table of strings that repeat from
// record to record in audit logs (actions, regions, user agents, mounts,
// principals, addresses), so a parser hands out one shared string instead
// of allocating a copy per event. Memory stays bounded whatever the input:
// the table holds at most MaxEntries strings of at most MaxLen bytes and
// starts over when full (counted in Resets).
package intern

// Defaults for New.
const (
	DefaultMaxEntries = 8192
	DefaultMaxLen     = 256
)

// Table interns strings. The zero value is not usable; a nil *Table is,
// and then every call allocates. Not safe for concurrent use.
type Table struct {
	m          map[string]string
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
	return &Table{m: make(map[string]string, 256), maxEntries: maxEntries, maxLen: maxLen}
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
	if s, ok := t.m[string(b)]; ok {
		return s
	}
	s := string(b)
	t.add(s)
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
