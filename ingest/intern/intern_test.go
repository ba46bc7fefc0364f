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
