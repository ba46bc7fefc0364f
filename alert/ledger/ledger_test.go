package ledger

import (
	"path/filepath"
	"testing"
	"time"
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
