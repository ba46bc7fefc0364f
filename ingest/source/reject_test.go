package source

import (
	"bufio"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"go.yaml.in/yaml/v3"

	"auditwatch/ingest"
)

// The first 10 rejections of a minute are logged with input and line;
// the rest are counted and reported in one summary when the minute is
// over; every one is counted in the metric. Clock injected.
func TestRejectorRateLimits(t *testing.T) {
	var logs strings.Builder
	m := NewMetrics(prometheus.NewRegistry())
	r := NewRejector("src", slog.New(slog.NewTextHandler(&logs, nil)), m)
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	r.SetClock(func() time.Time { return now })
	rec := func(i int) error {
		return &ingest.RecordError{Input: "f.log", Line: i, Record: i, Err: errors.New("bad \x1b[31m record")}
	}
	for i := 1; i <= 1000; i++ {
		r.Record(rec(i))
	}
	if n := strings.Count(logs.String(), "rejected record"); n != 10 {
		t.Fatalf("%d full lines in the first minute, want 10:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "f.log:1:") || strings.Contains(logs.String(), "\x1b") {
		t.Fatalf("a full line lacks input:line or keeps a control character:\n%s", logs.String())
	}
	r.Flush() // within the minute: no summary yet
	if strings.Contains(logs.String(), "not logged one by one") {
		t.Fatal("summary before the minute was over")
	}
	now = now.Add(time.Minute)
	r.Flush()
	if !strings.Contains(logs.String(), "count=990") {
		t.Fatalf("no summary of the 990 others:\n%s", logs.String())
	}
	r.Record(rec(1001))
	if n := strings.Count(logs.String(), "rejected record"); n != 11 {
		t.Fatalf("a new minute does not log again in full (%d lines)", n)
	}
	if got := testutil.ToFloat64(m.Rejected.WithLabelValues("src")); got != 1001 {
		t.Fatalf("rejected metric %v, want 1001", got)
	}
	if len(logs.String()) > 8<<10 {
		t.Fatalf("%d bytes of logs for 1001 rejections", len(logs.String()))
	}
}

// The quarantine file holds the raw records (base64 when not UTF-8) and
// stops at its cap, counting what it drops.
func TestQuarantineCap(t *testing.T) {
	reg := prometheus.NewRegistry()
	path := filepath.Join(t.TempDir(), "q", "rejected.jsonl")
	q, err := OpenQuarantine(path, 4096, reg)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	m := NewMetrics(reg)
	m.Quarantine = q
	r := NewRejector("src", nil, m)
	r.Record(&ingest.RecordError{Input: "a.log", Line: 1, Err: errors.New("x"), Raw: []byte(`{"not":"audit"}`)})
	r.Record(&ingest.RecordError{Input: "a.log", Line: 2, Err: errors.New("x"), Raw: []byte("\xff\xfe")})
	for i := range 200 {
		r.Record(&ingest.RecordError{Input: "a.log", Line: 3 + i, Err: errors.New("x"), Raw: []byte(strings.Repeat("y", 100))})
	}
	st, err := os.Stat(path)
	if err != nil || st.Size() > 4096 {
		t.Fatalf("quarantine %v size %d, want <= 4096", err, st.Size())
	}
	f, _ := os.Open(path)
	defer f.Close()
	sc := bufio.NewScanner(f)
	var recs []quarantined
	for sc.Scan() {
		var q quarantined
		if err := json.Unmarshal(sc.Bytes(), &q); err != nil {
			t.Fatalf("quarantine line %q: %v", sc.Text(), err)
		}
		recs = append(recs, q)
	}
	if len(recs) < 2 || recs[0].Raw != `{"not":"audit"}` || string(recs[1].RawBase64) != "\xff\xfe" || recs[1].Line != 2 || recs[0].Source != "src" {
		t.Fatalf("quarantined %+v", recs[:min(2, len(recs))])
	}
	if d := testutil.ToFloat64(q.dropped); d == 0 || int(d)+len(recs) != 202 {
		t.Fatalf("dropped %v + written %d, want 202", d, len(recs))
	}
}

func TestQuarantineConfig(t *testing.T) {
	decode := func(text string) (QuarantineConfig, error) {
		var n yaml.Node
		if text != "" {
			if err := yaml.Unmarshal([]byte(text), &n); err != nil {
				t.Fatal(err)
			}
			return DecodeQuarantine(n.Content[0])
		}
		return DecodeQuarantine(nil)
	}
	c, err := decode("")
	if err != nil || c.MaxBytes != DefaultQuarantineBytes || c.Path != "" {
		t.Fatalf("defaults: %+v, %v", c, err)
	}
	c.DefaultPath("/var/lib/aw")
	if c.Path != "/var/lib/aw/quarantine/rejected.jsonl" {
		t.Errorf("default path %q", c.Path)
	}
	c, err = decode("{path: /srv/q.jsonl, max_bytes: 1048576}")
	if err != nil || c.Path != "/srv/q.jsonl" || c.MaxBytes != 1<<20 {
		t.Fatalf("set: %+v, %v", c, err)
	}
	c.DefaultPath("/var/lib/aw")
	if c.Path != "/srv/q.jsonl" {
		t.Errorf("DefaultPath replaced a set path: %q", c.Path)
	}
	if _, err := decode("{max_bytes: -1, path: /srv/}"); err == nil || !strings.Contains(err.Error(), "max_bytes:") || !strings.Contains(err.Error(), "path:") {
		t.Errorf("bad values: %v", err)
	}
}
