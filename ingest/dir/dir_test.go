package dir

import (
	"compress/gzip"
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"auditwatch/ingest"
	"auditwatch/ingest/source"
)

type collector struct {
	mu  sync.Mutex
	ids map[string]int
	cp  source.Checkpoints
	// stopAfter cancels the run after this many events (0: never).
	stopAfter int
	cancel    context.CancelFunc
	n         int
}

func (c *collector) Publish(_ context.Context, b source.Batch) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ev := range b.Events {
		c.ids[ev.ID]++
		c.n++
	}
	if err := c.cp.Save(b.Source, b.Position); err != nil {
		return err
	}
	if c.stopAfter > 0 && c.n >= c.stopAfter {
		c.cancel()
	}
	return nil
}

// TestGzipAndResume reads a real OpenBao audit log dropped gzipped, stops
// part-way, and resumes from the checkpoint without repeating or losing
// an event.
func TestGzipAndResume(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "testdata", "openbao-scenario", "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	folder := t.TempDir()
	f, _ := os.Create(filepath.Join(folder, "audit.log.gz"))
	zw := gzip.NewWriter(f)
	zw.Write(raw)
	zw.Close()
	f.Close()
	os.WriteFile(filepath.Join(folder, ".hidden"), []byte("not audit"), 0o644)

	cp := source.NewMemCheckpoints(nil)
	parse := source.AuditParser(ingest.DefaultOptions())
	run := func(stopAfter int) *collector {
		d, err := New(Config{Path: folder, Once: true}, "drop", parse, cp, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		d.batch = 7
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c := &collector{ids: map[string]int{}, cp: cp, stopAfter: stopAfter, cancel: cancel}
		if err := d.Run(ctx, c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	full := func() map[string]int {
		d, _ := New(Config{Path: folder, Once: true}, "x", parse, source.NewMemCheckpoints(nil), nil, nil)
		c := &collector{ids: map[string]int{}, cp: source.NewMemCheckpoints(nil)}
		if err := d.Run(context.Background(), c); err != nil {
			t.Fatal(err)
		}
		return c.ids
	}()
	if len(full) < 20 {
		t.Fatalf("only %d events in the scenario", len(full))
	}
	first := run(10)
	second := run(0)
	third := run(0)
	if third.n != 0 {
		t.Fatalf("a finished file was read again: %d events", third.n)
	}
	for id, n := range full {
		if first.ids[id]+second.ids[id] != n {
			t.Errorf("event %s: %d + %d, want %d", id, first.ids[id], second.ids[id], n)
		}
	}
	if first.n == 0 || second.n == 0 {
		t.Fatalf("runs read %d and %d events; the stop did not land mid-file", first.n, second.n)
	}
}
