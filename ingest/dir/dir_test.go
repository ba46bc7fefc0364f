package dir

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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

// TestParallelResume: the scenario log split over six files, two of them
// starting with 1,500 invalid records (so the next file is read beside
// them), stopped at several points and resumed from the checkpoint each
// time: every event arrives exactly once over the runs, and a checkpoint
// in the single-file form written before files were read in parallel
// (current/sig/cursor) resumes too.
func TestParallelResume(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "testdata", "openbao-scenario", "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(raw), "\n")
	folder := t.TempDir()
	const parts = 6
	for i := range parts {
		part := strings.Join(lines[i*len(lines)/parts:(i+1)*len(lines)/parts], "")
		if i == 1 || i == 3 {
			// a bad start: the file turns bad and the next starts beside it
			part = strings.Repeat("not an audit record\n", 1500) + part
		}
		name := filepath.Join(folder, fmt.Sprintf("%02d.log", i))
		if i%2 == 1 {
			var gz bytes.Buffer
			zw := gzip.NewWriter(&gz)
			zw.Write([]byte(part))
			zw.Close()
			part, name = gz.String(), name+".gz"
		}
		if err := os.WriteFile(name, []byte(part), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	parse := source.AuditParser(ingest.DefaultOptions())
	full := &collector{ids: map[string]int{}, cp: source.NewMemCheckpoints(nil)}
	d, _ := New(Config{Path: folder, Once: true}, "x", parse, source.NewMemCheckpoints(nil), nil, nil)
	if err := d.Run(t.Context(), full); err != nil {
		t.Fatal(err)
	}
	if len(full.ids) < 500 {
		t.Fatalf("only %d events in the scenario", len(full.ids))
	}
	cp := source.NewMemCheckpoints(nil)
	got := map[string]int{}
	runs := 0
	converted := false
	for _, stopAfter := range []int{150, 37, 151, 400, 0} {
		parallel := 3
		if stopAfter == 150 {
			parallel = 1 // one file being read when it stops
		}
		d, err := New(Config{Path: folder, Once: true, Parallel: parallel}, "drop", parse, cp, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		d.batch = 5
		ctx, cancel := context.WithCancel(t.Context())
		c := &collector{ids: map[string]int{}, cp: cp, stopAfter: stopAfter, cancel: cancel}
		if err := d.Run(ctx, c); err != nil {
			t.Fatal(err)
		}
		cancel()
		runs++
		for id, n := range c.ids {
			got[id] += n
		}
		if stopAfter == 150 {
			// Rewrite the checkpoint in the old single-file form when one
			// file is being read: it must resume the same.
			b, _ := cp.Load("drop")
			var p Position
			if err := source.DecodePosition(b, &p); err != nil {
				t.Fatal(err)
			}
			for rel, r := range p.Reading {
				if len(p.Reading) == 1 {
					p.Current, p.Sig, p.Cursor, p.Reading = rel, r.Sig, r.Cursor, nil
					converted = true
				}
			}
			cp.Save("drop", source.EncodeCursor(p))
		}
	}
	for id, n := range full.ids {
		if got[id] != n {
			t.Errorf("event %s: %d times over %d runs, want %d", id, got[id], runs, n)
		}
	}
	if len(got) != len(full.ids) {
		t.Errorf("%d distinct events over the runs, want %d", len(got), len(full.ids))
	}
	if !converted {
		t.Error("no run stopped with exactly one file being read: the old checkpoint form was not tried")
	}
}
