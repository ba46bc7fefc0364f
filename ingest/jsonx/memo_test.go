package jsonx

import (
	"fmt"
	"strings"
	"testing"
)

// block is an object of at least MemoKey bytes whose first MemoKey bytes
// are the same for every n (so all share a set) and whose value differs.
func block(n int) string {
	return `{"k":"` + strings.Repeat("p", MemoKey) + `","n":` + fmt.Sprint(n) + `}`
}

// memoRead reads the block at b[v] through m as a parser would: from the
// memo when kept, else by lexing and keeping it.
func memoRead(m *Memo[[]byte], b []byte, v, depth int) (val []byte, end int, hit bool) {
	if p, end, ok := m.Lookup(b, v, depth); ok {
		return *p, end, true
	}
	end = Skip(b, v, depth)
	if text, p, ok := m.Store(b, v, end, depth); ok {
		// what the reader "read": the bytes of the last member's value
		*p = Rebase(b, v, text, b[end-2:end-1])
	}
	if end < 0 {
		return nil, end, false
	}
	return b[end-2 : end-1], end, false
}

func TestMemo(t *testing.T) {
	var m Memo[[]byte]
	rec := func(n int) []byte { return []byte(`[` + block(n) + `,"after"]`) }
	// a miss keeps it; the same bytes, with anything after them, hit
	for i, want := range []bool{false, true} {
		b := rec(1)
		if i == 1 {
			b = []byte(`{"x":` + block(1) + `}`) // elsewhere in another record
		}
		v := strings.IndexByte(string(b[1:]), '{') + 1
		val, end, hit := memoRead(&m, b, v, 2)
		if hit != want || end != v+len(block(1)) || string(val) != "1" {
			t.Fatalf("read %d: %q, end %d, hit %v", i, val, end, hit)
		}
	}
	// another depth, a changed byte, a block cut short: misses
	if _, _, ok := m.Lookup(rec(1), 1, 3); ok {
		t.Fatal("hit at another depth")
	}
	if _, _, ok := m.Lookup(rec(7), 1, 2); ok {
		t.Fatal("hit with a changed byte")
	}
	if _, _, ok := m.Lookup([]byte(`[`+block(1)[:len(block(1))-1]), 1, 2); ok {
		t.Fatal("hit on a block cut short")
	}
	// a set holds MemoWays blocks: the least recently used goes
	for n := 2; n <= MemoWays; n++ {
		memoRead(&m, rec(n), 1, 2)
	}
	memoRead(&m, rec(1), 1, 2)          // 1 is used again
	memoRead(&m, rec(MemoWays+1), 1, 2) // drops 2, the least recently used
	for n := 1; n <= MemoWays+1; n++ {
		p, end, hit := m.Lookup(rec(n), 1, 2)
		if want := n != 2; hit != want || (hit && (string(*p) != fmt.Sprint(n) || end != 1+len(block(n)))) {
			t.Fatalf("block %d: hit %v, want %v", n, hit, want)
		}
	}
}

// Blocks shorter than MemoKey, longer than MaxMemoBlock or refused are
// never kept, and a kept block's buffer is reused.
func TestMemoBounds(t *testing.T) {
	var m Memo[[]byte]
	for _, b := range []string{`{"a":1}`, `{"a":"` + strings.Repeat("x", MaxMemoBlock) + `"}`, `{"a":"` + strings.Repeat("x", MemoKey) + `",}`} {
		if _, _, ok := m.Store([]byte(b), 0, Skip([]byte(b), 0, 1), 1); ok {
			t.Fatalf("kept %.80s", b)
		}
	}
	for n := range 1000 {
		memoRead(&m, []byte(block(n)), 0, 1)
	}
	for s := range m.sets {
		for w := range m.sets[s] {
			if c := cap(m.sets[s][w].text); c > 2*len(block(999)) {
				t.Fatalf("a kept block's buffer holds %d bytes", c)
			}
		}
	}
}

func TestRebase(t *testing.T) {
	b := []byte(`xx{"a":"bc","d":""}yy`)
	text := append([]byte(nil), b[2:19]...)
	for _, f := range [][]byte{b[8:10], b[17:17], nil} {
		g := Rebase(b, 2, text, f)
		if (g == nil) != (f == nil) || string(g) != string(f) || cap(g) != len(g) {
			t.Fatalf("Rebase(%q) = %q (cap %d)", f, g, cap(g))
		}
		if len(g) > 0 && &g[0] != &text[8-2] {
			t.Fatal("not a slice of text")
		}
	}
}
