package state

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"auditwatch/config/duration"
)

func open(t *testing.T, dir, partition string) *Store {
	t.Helper()
	s, err := Open(Config{Dir: dir, Partition: partition, OpenTimeout: duration.Duration(200 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCommitGetAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, "3")
	var b Batch
	b.Put("pairs", []byte("k1"), []byte("v1"))
	b.Put("pairs", []byte("k2"), []byte("v2"))
	b.Put("_meta", []byte("offset"), []byte("42"))
	if err := s.Commit(&b); err != nil {
		t.Fatal(err)
	}
	if b.Len() != 0 {
		t.Fatal("batch not reset after commit")
	}
	b.Delete("pairs", []byte("k1"))
	b.Reset("_meta")
	b.Put("_meta", []byte("offset2"), []byte("43"))
	if err := s.Commit(&b); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = open(t, dir, "3")
	defer s.Close()
	if v, _ := s.Get("pairs", []byte("k1")); v != nil {
		t.Errorf("deleted key still there: %q", v)
	}
	if v, _ := s.Get("pairs", []byte("k2")); string(v) != "v2" {
		t.Errorf("k2 = %q", v)
	}
	if v, _ := s.Get("_meta", []byte("offset")); v != nil {
		t.Errorf("reset space kept %q", v)
	}
	if n, _ := s.Count("_meta"); n != 1 {
		t.Errorf("meta has %d keys, want 1", n)
	}
	if has, _ := s.Has("nothing"); has {
		t.Error("Has on an absent space")
	}
	if s.Partition() != "3" || filepath.Base(s.Path()) != FileName {
		t.Errorf("partition %q path %q", s.Partition(), s.Path())
	}
}

func TestPartitionsAreSeparateKeySpaces(t *testing.T) {
	dir := t.TempDir()
	a := open(t, dir, "0")
	var b Batch
	b.Put("pairs", []byte("k"), []byte("from-0"))
	if err := a.Commit(&b); err != nil {
		t.Fatal(err)
	}
	a.Close()
	c := open(t, dir, "1")
	defer c.Close()
	if v, _ := c.Get("pairs", []byte("k")); v != nil {
		t.Fatalf("partition 1 sees partition 0's key: %q", v)
	}
}

func TestSecondOpenTimesOut(t *testing.T) {
	dir := t.TempDir()
	a := open(t, dir, "0")
	defer a.Close()
	_, err := Open(Config{Dir: dir, OpenTimeout: duration.Duration(100 * time.Millisecond)})
	if err == nil || !strings.Contains(err.Error(), dir) {
		t.Fatalf("second open of a locked store: %v", err)
	}
}

func TestTempStoreRemovedAndClosedErrors(t *testing.T) {
	s, err := Open(Config{})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(s.Path())
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("temporary store %s not removed on Close: %v", dir, err)
	}
	if _, err := s.Get("a", []byte("b")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get on closed store: %v", err)
	}
	var b Batch
	if err := s.Commit(&b); !errors.Is(err, ErrClosed) {
		t.Fatalf("Commit on closed store: %v", err)
	}
	if err := (Config{OpenTimeout: -1}).Validate(); err == nil || !strings.Contains(err.Error(), "state.partition") || !strings.Contains(err.Error(), "state.open_timeout") {
		t.Fatalf("Validate: %v", err)
	}
}

func TestPartitionsShareOneFile(t *testing.T) {
	dir := t.TempDir()
	a := open(t, dir, "0")
	b := open(t, dir, "1")
	if _, err := Open(Config{Dir: dir, Partition: "1"}); !errors.Is(err, ErrPartitionOpen) {
		t.Fatalf("second open of partition 1: %v", err)
	}
	var bt Batch
	bt.Put("s", []byte("k"), []byte("b"))
	if err := b.Commit(&bt); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	// b still works after a closed.
	if v, err := b.Get("s", []byte("k")); err != nil || string(v) != "b" {
		t.Fatalf("partition 1 after partition 0 closed: %q %v", v, err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	// Fresh empties only its own partition.
	var bt0 Batch
	a = open(t, dir, "0")
	bt0.Put("s", []byte("k"), []byte("a"))
	a.Commit(&bt0)
	a.Close()
	f, err := Open(Config{Dir: dir, Partition: "1", Fresh: true})
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := f.Get("s", []byte("k")); v != nil {
		t.Fatalf("fresh partition kept %q", v)
	}
	f.Close()
	a = open(t, dir, "0")
	defer a.Close()
	if v, _ := a.Get("s", []byte("k")); string(v) != "a" {
		t.Fatalf("fresh open of partition 1 touched partition 0: %q", v)
	}
}

// Commit applies a batch in key order per space, keeping the queued order
// of ops on one key and a space's Reset before its other ops.
func TestCommitOrder(t *testing.T) {
	s, err := Open(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var b Batch
	b.Put("a", []byte("old"), []byte("1"))
	if err := s.Commit(&b); err != nil {
		t.Fatal(err)
	}
	b.Put("a", []byte("z"), []byte("1"))
	b.Delete("a", []byte("z"))
	b.Put("a", []byte("y"), []byte("1"))
	b.Put("a", []byte("y"), []byte("2"))
	b.Reset("a") // queued last, applies first: "old" goes, the rest stays
	b.Put("b", []byte("k"), []byte("v"))
	if err := s.Commit(&b); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ space, key, want string }{{"a", "old", ""}, {"a", "z", ""}, {"a", "y", "2"}, {"b", "k", "v"}} {
		v, err := s.Get(c.space, []byte(c.key))
		if err != nil || string(v) != c.want {
			t.Errorf("%s/%s = %q %v, want %q", c.space, c.key, v, err, c.want)
		}
	}
}
