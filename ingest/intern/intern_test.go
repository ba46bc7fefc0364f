package intern

import (
	"fmt"
	"testing"
	"unsafe"
)

func TestBytesSharesEqualStrings(t *testing.T) {
	tab := New(4, 8)
	a := tab.Bytes([]byte("us-east-1"[:8]))
	b := tab.Bytes([]byte("us-east-"))
	if a != "us-east-" || b != a {
		t.Fatalf("got %q %q", a, b)
	}
	if unsafe.StringData(a) != unsafe.StringData(b) {
		t.Fatal("equal strings were not shared")
	}
	if got := tab.Bytes(nil); got != "" {
		t.Fatalf("empty input gave %q", got)
	}
}

func TestLongStringsAreNotKept(t *testing.T) {
	tab := New(4, 8)
	s := tab.Bytes([]byte("0123456789"))
	if s != "0123456789" || tab.Len() != 0 {
		t.Fatalf("got %q, table holds %d", s, tab.Len())
	}
}

func TestTableIsBounded(t *testing.T) {
	tab := New(4, 8)
	for i := 0; i < 10; i++ {
		want := fmt.Sprintf("v%d", i)
		if got := tab.Bytes([]byte(want)); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
		if tab.Len() > 4 {
			t.Fatalf("table holds %d strings, bound is 4", tab.Len())
		}
	}
	if tab.Resets != 2 {
		t.Fatalf("resets = %d, want 2", tab.Resets)
	}
}

func TestNilTable(t *testing.T) {
	var tab *Table
	if tab.Bytes([]byte("x")) != "x" || tab.String("y") != "y" || tab.Len() != 0 {
		t.Fatal("nil table must convert plainly")
	}
}

func TestStringReturnsSharedCopy(t *testing.T) {
	tab := New(0, 0)
	first := tab.String(string([]byte("vault:read")))
	second := tab.String(string([]byte("vault:read")))
	if unsafe.StringData(first) != unsafe.StringData(second) {
		t.Fatal("String did not return the kept copy")
	}
}

func TestCached(t *testing.T) {
	tab := New(4, 8)
	var sl Slot
	a := tab.Cached(&sl, []byte("kv/"))
	b := tab.Cached(&sl, []byte("kv/"))
	c := tab.Cached(&sl, []byte("sys/"))
	d := tab.Cached(&sl, []byte("kv/"))
	if a != "kv/" || b != "kv/" || c != "sys/" || d != "kv/" {
		t.Fatalf("got %q %q %q %q", a, b, c, d)
	}
	if unsafe.StringData(a) != unsafe.StringData(b) || unsafe.StringData(a) != unsafe.StringData(d) {
		t.Fatal("repeats were not shared")
	}
	if got := tab.Cached(&sl, nil); got != "" {
		t.Fatalf("empty input gave %q", got)
	}
}

func TestRecentCacheCollisions(t *testing.T) {
	tab := New(0, 0)
	// equal length, first and last eight bytes: one recent slot
	a, b := "secret/data/AAAA/payments", "secret/data/BBBB/payments"
	if recentSlot([]byte(a)) != recentSlot([]byte(b)) {
		t.Fatal("test strings do not share a slot")
	}
	var first [2]string
	for i := 0; i < 6; i++ {
		for j, want := range []string{a, b} {
			got := tab.Bytes([]byte(want))
			if got != want {
				t.Fatalf("round %d: got %q, want %q", i, got, want)
			}
			if i == 0 {
				first[j] = got
			} else if unsafe.StringData(got) != unsafe.StringData(first[j]) {
				t.Fatalf("round %d: %q not shared", i, want)
			}
		}
	}
	// short strings hash all their bytes
	for _, s := range []string{"a", "b", "ab", "ba", "kv/", "sys/", "1234567", "12345678"} {
		if got := tab.Bytes([]byte(s)); got != s {
			t.Fatalf("got %q, want %q", got, s)
		}
	}
}

func TestResetClearsRecentCache(t *testing.T) {
	tab := New(2, 0)
	for _, s := range []string{"x1", "x2", "x3"} {
		tab.Bytes([]byte(s))
	}
	if tab.Resets != 1 {
		t.Fatalf("resets = %d, want 1", tab.Resets)
	}
	held := 0
	for _, s := range tab.recent {
		if s != "" {
			held++
		}
	}
	if held != 1 || tab.Len() != 1 {
		t.Fatalf("after a reset the cache holds %d strings and the table %d, want 1 and 1", held, tab.Len())
	}
}
