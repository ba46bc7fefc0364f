package hostiletest

import (
	"bytes"
	"compress/gzip"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"auditwatch/ingest"
	"auditwatch/ingest/source"
)

// The bounds every hostile-input test holds a source to.
const (
	MaxMemory     = 256 << 20 // peak resident memory of the child
	MaxLogs       = 1 << 20   // bytes logged
	QuarantineCap = 1 << 20   // the quarantine file's cap in the tests
)

// Parent is the first line of a hostile-input test: in the test process it
// runs the test again in a child process (skipped with -short), asserts
// the child's peak memory and log volume, and returns true (the caller
// returns); in the child it returns false and the caller feeds its source.
func Parent(t *testing.T) bool {
	t.Helper()
	if Child(t.Name()) {
		return false
	}
	if testing.Short() {
		t.Skip("hostile-input run skipped in -short mode")
	}
	hwm, logs := RunChild(t, t.Name())
	if hwm > MaxMemory {
		t.Errorf("peak memory %d MiB, want < %d MiB", hwm>>20, MaxMemory>>20)
	}
	if logs > MaxLogs {
		t.Errorf("logs %d bytes, want < %d", logs, MaxLogs)
	}
	return true
}

// Good returns the good CloudTrail sample the tests put around and beside
// the hostile inputs (ending in a newline) and its number of events.
func Good(t testing.TB) ([]byte, int) {
	t.Helper()
	good, err := os.ReadFile(filepath.Join("..", "testdata", "cloudtrail-sample.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	good = append(bytes.TrimRight(good, "\n"), '\n')
	r := ingest.NewReader(bytes.NewReader(good), "good", ingest.DefaultOptions())
	n := 0
	for {
		_, err := r.Next()
		if err == io.EOF {
			return good, n
		}
		if err != nil {
			t.Fatalf("good sample has a bad record: %v", err)
		}
		n++
	}
}

// Gzip compresses b.
func Gzip(b []byte) []byte {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(b)
	zw.Close()
	return gz.Bytes()
}

// WriteFile writes the parts, streamed one after another, to path.
func WriteFile(t testing.TB, path string, parts ...io.Reader) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, io.MultiReader(parts...)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// Env is what a source under a hostile-input test logs and counts into: a
// counted text log, its metrics and a quarantine file capped at
// QuarantineCap.
type Env struct {
	Logs       *CountingWriter
	Log        *slog.Logger
	Reg        *prometheus.Registry
	Metrics    *source.Metrics
	Quarantine *source.Quarantine
}

// NewEnv opens the quarantine file at path (closed when the test ends).
func NewEnv(t testing.TB, quarantine string) *Env {
	t.Helper()
	e := &Env{Logs: &CountingWriter{}, Reg: prometheus.NewRegistry()}
	e.Log = slog.New(slog.NewTextHandler(e.Logs, nil))
	e.Metrics = source.NewMetrics(e.Reg)
	q, err := source.OpenQuarantine(quarantine, QuarantineCap, e.Reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	e.Quarantine = q
	e.Metrics.Quarantine = q
	return e
}

// Rejected is the rejection count of source name.
func (e *Env) Rejected(name string) float64 {
	return testutil.ToFloat64(e.Metrics.Rejected.WithLabelValues(name))
}

// Report checks the quarantine file holds something and stays within its
// cap, shows the head of the log, and reports the child's figures to the
// parent (the last line of a child's test).
func (e *Env) Report(t testing.TB) {
	t.Helper()
	if st, err := os.Stat(e.Quarantine.Path()); err != nil || st.Size() == 0 || st.Size() > QuarantineCap {
		t.Errorf("quarantine file: %v, want 0 < size <= %d", err, QuarantineCap)
	}
	t.Logf("log head:\n%s", e.Logs.Head())
	ReportChild(t, e.Logs.N.Load())
}
