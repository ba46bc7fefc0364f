package dir

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
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
	if err := d.Run(ctx, c); err != nil {
		t.Fatal(err)
	}
	t.Logf("all files read in %v", time.Since(start))
	if c.n != wantEvents {
		t.Errorf("%d good events published, want %d", c.n, wantEvents)
	}
	if rejected := env.Rejected("drop"); rejected < 1_000_000+4 {
		t.Errorf("rejected = %v, want >= 1,000,004 (1M invalid, long line, deep, two bombs)", rejected)
	}
	env.Report(t)
}
