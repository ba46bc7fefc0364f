package dir

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"auditwatch/ingest"
	"auditwatch/ingest/hostiletest"
	"auditwatch/ingest/source"
)

// TestHostileInput feeds the dir source a nested gzip bomb (a few hundred
// bytes → 10 GiB), a flat one (10 MB → 10 GiB), a 100 MB single line,
// 10,000-deep nesting and 1,000,000 invalid records, beside and around
// good files, in a subprocess: its peak memory stays under 256 MiB, its
// logs under 1 MB, every good event arrives, and the quarantine file
// stays at its cap.
func TestHostileInput(t *testing.T) {
	if hostiletest.Parent(t) {
		return
	}
	good, goodN := hostiletest.Good(t)
	folder := t.TempDir()
	write := func(name string, parts ...io.Reader) { hostiletest.WriteFile(t, filepath.Join(folder, name), parts...) }
	write("00-nested-bomb.gz", bytes.NewReader(hostiletest.NestedBomb()))
	write("01-flat-bomb.gz", bytes.NewReader(hostiletest.FlatBomb(10)))
	write("02-long-line.json", bytes.NewReader(good), hostiletest.LongLine(100<<20), bytes.NewReader(good))
	write("03-deep.json", bytes.NewReader(good), bytes.NewReader(hostiletest.Deep(10000)), bytes.NewReader(good))
	write("04-invalid.json", bytes.NewReader(good), hostiletest.Invalid(1_000_000), bytes.NewReader(good))
	write("05-good.json", bytes.NewReader(good))
	write("06-good.json.gz", bytes.NewReader(hostiletest.Gzip(good)))
	wantEvents := 8 * goodN

	env := hostiletest.NewEnv(t, filepath.Join(folder, ".quarantine", "rejected.jsonl"))
	d, err := New(Config{Path: folder, Once: true}, "drop", source.AuditParser(ingest.DefaultOptions()), source.NewMemCheckpoints(nil),
		env.Log, env.Metrics)
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{ids: map[string]int{}, cp: source.NewMemCheckpoints(nil)}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // a guard only
	defer cancel()
	start := time.Now()
	done := &doneTimes{next: c, start: start, at: map[string]time.Duration{}}
	if err := d.Run(ctx, done); err != nil {
		t.Fatal(err)
	}
	t.Logf("all files read in %v; finished after: %v", time.Since(start), done.at)
	// A bad file never delays the good files: they are finished before
	// the slowest bad one (a million invalid records) is.
	for _, good := range []string{"05-good.json", "06-good.json.gz"} {
		if done.at[good] == 0 || done.at[good] >= done.at["04-invalid.json"] {
			t.Errorf("%s finished after %v, not before 04-invalid.json (%v): the bad file held it", good, done.at[good], done.at["04-invalid.json"])
		}
	}
	if c.n != wantEvents {
		t.Errorf("%d good events published, want %d", c.n, wantEvents)
	}
	if rejected := env.Rejected("drop"); rejected < 1_000_000+4 {
		t.Errorf("rejected = %v, want >= 1,000,004 (1M invalid, long line, deep, two bombs)", rejected)
	}
	env.Report(t)
}

// doneTimes notes when each file is first in a published position's done
// set.
type doneTimes struct {
	next  source.Publisher
	start time.Time
	mu    sync.Mutex
	at    map[string]time.Duration
}

func (d *doneTimes) Publish(ctx context.Context, b source.Batch) error {
	var p Position
	if err := source.DecodePosition(b.Position, &p); err != nil {
		return err
	}
	d.mu.Lock()
	for rel := range p.Done {
		if _, ok := d.at[rel]; !ok {
			d.at[rel] = time.Since(d.start)
		}
	}
	d.mu.Unlock()
	return d.next.Publish(ctx, b)
}
