package filetail

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"auditwatch/config/duration"
	"auditwatch/ingest"
	"auditwatch/ingest/hostiletest"
	"auditwatch/ingest/source"
)

// countingPub counts events per source.
type countingPub struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *countingPub) Publish(_ context.Context, b source.Batch) error {
	c.mu.Lock()
	c.n[b.Source] += len(b.Events)
	c.mu.Unlock()
	return nil
}

func (c *countingPub) count(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[name]
}

// TestHostileInput tails, in a subprocess, an audit file in which a
// 100 MB single line, 10,000-deep nesting and 1,000,000 invalid records
// sit between good records, beside a file that is a gzip bomb (10 MB →
// 10 GiB), one that is a nested bomb, and a good file, each followed by
// its own source at the same time: peak memory stays under 256 MiB, logs
// under 1 MB, and every good event arrives.
func TestHostileInput(t *testing.T) {
	if hostiletest.Parent(t) {
		return
	}
	good, goodN := hostiletest.Good(t)
	dir := t.TempDir()
	write := func(name string, parts ...io.Reader) string {
		return hostiletest.WriteFile(t, filepath.Join(dir, name), parts...)
	}
	g := func() io.Reader { return bytes.NewReader(good) }
	files := map[string]string{
		"mixed": write("mixed.log", g(), hostiletest.LongLine(100<<20), g(), bytes.NewReader(hostiletest.Deep(10000)), g(),
			hostiletest.Invalid(1_000_000), g()),
		"bomb":   write("bomb.log", bytes.NewReader(hostiletest.FlatBomb(10))),
		"nested": write("nested.log", bytes.NewReader(hostiletest.NestedBomb())),
		"good":   write("good.log", g()),
	}
	want := map[string]int{"mixed": 4 * goodN, "bomb": 0, "nested": 0, "good": goodN}

	env := hostiletest.NewEnv(t, filepath.Join(dir, "q", "rejected.jsonl"))
	m := env.Metrics
	pub := &countingPub{n: map[string]int{}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	start := time.Now()
	for name, path := range files {
		tl, err := New(Config{Path: path, PollInterval: duration.Duration(20 * time.Millisecond), IdleFlush: duration.Duration(50 * time.Millisecond)}, name,
			source.AuditParser(ingest.DefaultOptions()), source.NewMemCheckpoints(nil), env.Log, m)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := tl.Run(ctx, pub); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}()
	}
	// The good file is read while the hostile ones are still being worked
	// through; the deadline is a guard only.
	deadline := time.Now().Add(5 * time.Minute)
	var goodAt, mixedAt time.Duration // when each file's good events were all in
	for pub.count("good") < want["good"] || pub.count("mixed") < want["mixed"] {
		if time.Now().After(deadline) {
			break
		}
		if goodAt == 0 && pub.count("good") >= want["good"] {
			goodAt = time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	mixedAt = time.Since(start)
	if goodAt == 0 && pub.count("good") >= want["good"] {
		goodAt = mixedAt
	}
	t.Logf("good file's events in %v, the mixed file's (after 1M invalid records) in %v", goodAt, mixedAt)
	// The hostile files never delay the good one: it is read while they
	// are still being worked through.
	if goodAt == 0 || goodAt >= mixedAt {
		t.Errorf("the good file's events came at %v, not before the mixed file's last good events (%v)", goodAt, mixedAt)
	}
	// Give the bombs' readers a moment to reach their caps, then stop.
	for env.Rejected("bomb") == 0 {
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	for name, n := range want {
		if got := pub.count(name); got != n {
			t.Errorf("%s: %d events, want %d", name, got, n)
		}
	}
	if r := env.Rejected("mixed"); r < 1_000_000+2 {
		t.Errorf("mixed: rejected = %v, want >= 1,000,002", r)
	}
	// The nested bomb (a few hundred bytes, no newline) is a partial last
	// line a tailer keeps waiting for; it yields nothing either way.
	if r := env.Rejected("bomb"); r == 0 {
		t.Errorf("bomb: nothing rejected")
	}
	env.Report(t)
}
