package jsonx

import "hash/maphash"

// Memo sizes: MemoSets sets of MemoWays blocks, each block found by a hash
// of its first MemoKey bytes and kept only when MemoKey to MaxMemoBlock
// bytes long. 64 blocks of at most 2 KiB bound a Memo at 128 KiB.
const (
	MemoSets     = 16
	MemoWays     = 4
	MemoKey      = 64
	MaxMemoBlock = 2 << 10
)

// Memo remembers what a parser read from JSON blocks (objects, arrays)
// that repeat byte for byte from record to record, such as an audit
// record's identity block, so that a repeated block is compared instead
// of lexed. A block read at depth from b[v:end] is kept with its text;
// when the bytes at a later value start with a kept block's text and the
// depth is the same, they are that block: a JSON value ends where its text
// ends, whatever follows, so a reader that depends only on the block's
// bytes and depth reads the same from both and ends at the same place.
//
// T holds what the reader read; its byte slices must point into the kept
// text (see Rebase), never into the record, which is gone when the block
// is next used. A T from Lookup is valid until the next Store. The zero
// Memo is ready to use; it allocates on first Store. Not safe for
// concurrent use.
type Memo[T any] struct {
	sets *[MemoSets][MemoWays]memoBlock[T]
	seed maphash.Seed
}

type memoBlock[T any] struct {
	text  []byte
	depth int
	val   T
}

// set is the set a block starting at b[v] belongs to, nil when fewer than
// MemoKey bytes follow v (such blocks are never kept).
func (m *Memo[T]) set(b []byte, v int) *[MemoWays]memoBlock[T] {
	if m.sets == nil || len(b)-v < MemoKey {
		return nil
	}
	return &m.sets[maphash.Bytes(m.seed, b[v:v+MemoKey])%MemoSets]
}

// Lookup returns what was read from the kept block the bytes at b[v] start
// with (read at depth), and the index after it; ok is false when none
// matches.
func (m *Memo[T]) Lookup(b []byte, v, depth int) (val *T, end int, ok bool) {
	s := m.set(b, v)
	if s == nil {
		return nil, -1, false
	}
	for w := range s {
		e := &s[w]
		if n := len(e.text); n > 0 && e.depth == depth && len(b)-v >= n && string(b[v:v+n]) == string(e.text) {
			if w > 0 {
				// most recently used first
				hit := *e
				copy(s[1:w+1], s[:w])
				s[0] = hit
			}
			return &s[0].val, v + n, true
		}
	}
	return nil, -1, false
}

// Store keeps the block b[v:end] read at depth, when its size allows, in
// place of the least recently used one of its set; the caller overwrites
// val (which holds the dropped block's reading, whose buffers it may
// reuse) with what it read, its slices turned into slices of text by
// Rebase. ok is false when the block is not kept (end < 0 included).
func (m *Memo[T]) Store(b []byte, v, end, depth int) (text []byte, val *T, ok bool) {
	if end-v < MemoKey || end-v > MaxMemoBlock {
		return nil, nil, false
	}
	if m.sets == nil {
		m.sets = new([MemoSets][MemoWays]memoBlock[T])
		m.seed = maphash.MakeSeed()
	}
	s := m.set(b, v)
	// the last block's buffers are reused for the new one, which goes
	// first
	last := s[MemoWays-1]
	copy(s[1:], s[:MemoWays-1])
	s[0] = memoBlock[T]{text: append(last.text[:0], b[v:end]...), depth: depth, val: last.val}
	return s[0].text, &s[0].val, true
}

// Rebase returns the slice of text at the place slice f (of b, made by
// slicing b with two indices, or nil) has in b[v:]: text is a copy of
// b[v:end] and f lies within it.
func Rebase(b []byte, v int, text, f []byte) []byte {
	if f == nil {
		return nil
	}
	// f = b[x:y] has capacity cap(b)-x
	x := cap(b) - cap(f) - v
	return text[x : x+len(f) : x+len(f)]
}
