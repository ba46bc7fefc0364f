package ledger

import (
	"encoding/binary"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestPersistsAndPrunes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "alerts.db")
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	l, err := Open(path, 24*time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	old, fresh := Key("slack", "f1", 0), Key("slack", "f2", 3)
	if err := l.Mark(old, Delivered, t0); err != nil {
		t.Fatal(err)
	}
	if err := l.Mark(fresh, DeadLettered, t0.Add(30*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := l.Scoped("slack").SetThread("incident-1", "1700000000.000100"); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, err = Open(path, 24*time.Hour, t0.Add(36*time.Hour)) // f1 is now older than the retention
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if done, _, _ := l.Done(old); done {
		t.Error("an expired key survived the reopen")
	}
	if done, how, _ := l.Done(fresh); !done || how != DeadLettered {
		t.Errorf("Done(fresh) = %v %c", done, how)
	}
	if done, _, _ := l.Done(Key("slack", "f2", 4)); done {
		t.Error("another revision counted as done")
	}
	if ts, ok, _ := l.Scoped("slack").Thread("incident-1"); !ok || ts != "1700000000.000100" {
		t.Errorf("thread = %q %v", ts, ok)
	}
	if _, ok, _ := l.Scoped("other").Thread("incident-1"); ok {
		t.Error("thread tables of two outputs are shared")
	}
}

func TestMemory(t *testing.T) {
	l, _ := Open("", 0, time.Now())
	_ = l.Mark("k", Delivered, time.Now())
	if done, how, _ := l.Done("k"); !done || how != Delivered {
		t.Error("memory ledger lost a key")
	}
	if err := l.SetThread("x", ""); err == nil {
		t.Error("empty thread reference accepted")
	}
}

// TestAttemptPlaces: an attempt keeps where it was made across a reopen
// (a reply's thread, "" for a top-level message), a later attempt
// elsewhere replaces it, a record of the older 8-byte form reads as
// UnknownPlace, and the retention prunes records of both forms.
func TestAttemptPlaces(t *testing.T) {
	for _, path := range []string{"", filepath.Join(t.TempDir(), "alerts.db")} {
		t0 := time.Date(2026, 3, 1, 0, 0, 0, 123, time.UTC)
		l, err := Open(path, 24*time.Hour, t0)
		if err != nil {
			t.Fatal(err)
		}
		th := l.Scoped("slack")
		if err := th.MarkAttempt("reply", t0, "1700000000.000100"); err != nil {
			t.Fatal(err)
		}
		if err := th.MarkAttempt("top", t0, ""); err != nil {
			t.Fatal(err)
		}
		if err := th.MarkAttempt("moved", t0, "1700000000.000100"); err != nil {
			t.Fatal(err)
		}
		if err := th.MarkAttempt("moved", t0.Add(time.Second), "1700000009.000200"); err != nil {
			t.Fatal(err)
		}
		if path != "" {
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			// a record as the ledger wrote it before places were kept
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			v := binary.BigEndian.AppendUint64(nil, uint64(t0.UnixNano()))
			if err := db.Update(func(tx *bolt.Tx) error {
				return tx.Bucket(bucketAttempts).Put([]byte("slack\x00legacy"), v)
			}); err != nil {
				t.Fatal(err)
			}
			_ = db.Close()
			if l, err = Open(path, 24*time.Hour, t0); err != nil {
				t.Fatal(err)
			}
			th = l.Scoped("slack")
		}
		for key, want := range map[string]string{"reply": "1700000000.000100", "top": "", "moved": "1700000009.000200"} {
			at, where, ok, err := th.Attempt(key)
			if err != nil || !ok || where != want || (key != "moved" && !at.Equal(t0)) {
				t.Errorf("path %q: Attempt(%s) = %v %q %v %v, want %v %q", path, key, at, where, ok, err, t0, want)
			}
		}
		if _, _, ok, _ := th.Attempt("never"); ok {
			t.Errorf("path %q: an attempt never made is reported", path)
		}
		if path == "" {
			continue
		}
		if at, where, ok, _ := th.Attempt("legacy"); !ok || where != UnknownPlace || !at.Equal(t0) {
			t.Errorf("legacy record = %v %q %v, want %v %q", at, where, ok, t0, UnknownPlace)
		}
		_ = l.Close()
		if l, err = Open(path, 24*time.Hour, t0.Add(36*time.Hour)); err != nil {
			t.Fatal(err)
		}
		for _, key := range []string{"reply", "top", "legacy"} {
			if _, _, ok, _ := l.Scoped("slack").Attempt(key); ok {
				t.Errorf("attempt %s older than the retention survived the reopen", key)
			}
		}
		_ = l.Close()
	}
}
