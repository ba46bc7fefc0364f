package dir

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

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
	if !hostiletest.Child(t.Name()) {
		if testing.Short() {
			t.Skip("hostile-input run skipped in -short mode")
		}
		hwm, logs := hostiletest.RunChild(t, t.Name())
		if hwm > 256<<20 {
			t.Errorf("peak memory %d MiB, want < 256 MiB", hwm>>20)
		}
		if logs > 1<<20 {
			t.Errorf("logs %d bytes, want < 1 MB", logs)
		}
		return
	}
	good, err := os.ReadFile(filepath.Join("..", "testdata", "cloudtrail-sample.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	goodN := countEvents(t, good)
	folder := t.TempDir()
	write := func(name string, parts ...io.Reader) {
		f, err := os.Create(filepath.Join(folder, name))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(f, io.MultiReader(parts...)); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(good)
	zw.Close()
	write("00-nested-bomb.gz", bytes.NewReader(hostiletest.NestedBomb()))
	write("01-flat-bomb.gz", bytes.NewReader(hostiletest.FlatBomb(10)))
	write("02-long-line.json", bytes.NewReader(good), hostiletest.LongLine(100<<20), bytes.NewReader(good))
	write("03-deep.json", bytes.NewReader(good), bytes.NewReader(hostiletest.Deep(10000)), bytes.NewReader(good))
	write("04-invalid.json", bytes.NewReader(good), hostiletest.Invalid(1_000_000), bytes.NewReader(good))
	write("05-good.json", bytes.NewReader(good))
	write("06-good.json.gz", bytes.NewReader(gz.Bytes()))
	wantEvents := 8 * goodN

	logs := &hostiletest.CountingWriter{}
	reg := prometheus.NewRegistry()
	m := source.NewMetrics(reg)
	q, err := source.OpenQuarantine(filepath.Join(folder, ".quarantine", "rejected.jsonl"), 1<<20, reg)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	m.Quarantine = q
	d, err := New(Config{Path: folder, Once: true}, "drop", source.AuditParser(ingest.DefaultOptions()), source.NewMemCheckpoints(nil),
		slog.New(slog.NewTextHandler(logs, nil)), m)
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
	rejected := testutil.ToFloat64(m.Rejected.WithLabelValues("drop"))
	if rejected < 1_000_000+4 {
		t.Errorf("rejected = %v, want >= 1,000,004 (1M invalid, long line, deep, two bombs)", rejected)
	}
	st, err := os.Stat(q.Path())
	if err != nil || st.Size() > 1<<20 || st.Size() == 0 {
		t.Errorf("quarantine file: %v, size %d, want 0 < size <= 1 MiB", err, st.Size())
	}
	t.Logf("log head:\n%s", logs.Head())
	hostiletest.ReportChild(t, logs.N.Load())
}

func countEvents(t *testing.T, b []byte) int {
	t.Helper()
	r := ingest.NewReader(bytes.NewReader(b), "good", ingest.DefaultOptions())
	n := 0
	for {
		_, err := r.Next()
		if err == io.EOF {
			return n
		}
		if err != nil {
			t.Fatalf("good sample has a bad record: %v", err)
		}
		n++
	}
}
