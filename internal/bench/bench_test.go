package bench

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"auditwatch/detect"
)

// TestBenchSmoke runs a short soak: the harness drives `auditwatch run`
// (a separate process, built from ../../cmd/auditwatch) at 1,000 events/s for 20 s from a live
// generated stream. No event may be lost, the pipeline must keep up, the
// Go runtime's memory must stay within the shipped memory budget, and the
// live Go heap and the memory outside Go (chDB) must not grow from the
// second quarter to the last (SoakMemory), nor the goroutines over the
// second half.
func TestBenchSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("soak smoke test runs for about 30 s; not run with -short")
	}
	work := t.TempDir()
	bin := filepath.Join(work, "auditwatch")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/auditwatch").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	jsonPath := filepath.Join(work, "bench.json")
	report := filepath.Join(work, "SOAK.md")
	var stdout, stderr bytes.Buffer
	code := Main(t.Context(), []string{"--binary", bin, "--rate", "1000", "--duration", "20s", "--sample", "2s",
		"--work", filepath.Join(work, "run"), "--out", report, "--json", jsonPath}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("bench: exit %d\n%s", code, stderr.String())
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	if r.EventsGenerated != 20000 {
		t.Errorf("%d events generated, want 20000", r.EventsGenerated)
	}
	if r.LostEvents != 0 || int(r.EventsProcessed) != r.EventsGenerated || r.EventsRejected != 0 {
		t.Errorf("%d generated, %.0f processed, %.0f rejected: %d lost", r.EventsGenerated, r.EventsProcessed, r.EventsRejected, r.LostEvents)
	}
	if r.CatchUp > 10*time.Second {
		t.Errorf("the pipeline finished %v after the last write: it does not keep up with 1,000 events/s", r.CatchUp)
	}
	if len(r.Samples) < 8 {
		t.Fatalf("%d /metrics samples over 20 s at 2 s, want at least 8", len(r.Samples))
	}
	for _, s := range r.Samples {
		if s.Goroutines == 0 || s.RSSBytes == 0 {
			t.Fatalf("sample at %v has no go_goroutines or process_resident_memory_bytes: %+v", s.Elapsed, s)
		}
	}
	if last := r.Samples[len(r.Samples)-1]; last.HeapLiveBytes == 0 || last.GoBytes == 0 {
		t.Fatalf("the last sample has no go_gc_heap_live_bytes or go_memstats_sys_bytes: %+v", last)
	}
	// The shipped memory budget bounds the Go runtime's memory; the live
	// heap and the chDB engine's memory must level off after warm-up.
	var dc detect.Config
	dc.SetDefaults()
	for _, msg := range r.CheckMemory(SoakMemory(dc)) {
		t.Error(msg)
	}
	g := r.Growth()
	if g.To.Goroutines > g.From.Goroutines+10 {
		t.Errorf("goroutines grew from %.0f to %.0f", g.From.Goroutines, g.To.Goroutines)
	}
	md, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"**Lost events** (generated − processed) | **0**", "| t | generated | processed |", "Event-to-alert latency min / p50"} {
		if !bytes.Contains(md, []byte(want)) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	for _, s := range r.Samples {
		t.Logf("t=%v RSS %.0f MiB: Go runtime %.0f (live heap %.0f, goal %.0f, limit %.0f), outside Go %.0f; store queue %.0f rows; load %.1f",
			s.Elapsed.Round(time.Second), s.RSSBytes/(1<<20), s.GoBytes/(1<<20), s.HeapLiveBytes/(1<<20), s.HeapGoalBytes/(1<<20),
			s.GoMemLimitBytes/(1<<20), (s.RSSBytes-s.GoBytes)/(1<<20), s.StoreBufferedRows, s.Load1)
	}
	t.Logf("throughput %.0f events/s, catch-up %v, RSS %.0f → %.0f MiB, goroutines %.0f → %.0f",
		r.Throughput, r.CatchUp, g.From.RSSBytes/(1<<20), g.To.RSSBytes/(1<<20), g.From.Goroutines, g.To.Goroutines)
}

func TestBenchBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--rate", "0"}, "--rate 0"},
		{[]string{"--duration", "10ms"}, "--duration 10ms"},
		{[]string{"--storage", "s3"}, `--storage "s3"`},
		{[]string{"--anomaly-count", "-1"}, "--anomaly-count -1"},
		{[]string{"--stream", "nats"}, `--stream "nats"`},
		{[]string{"extra"}, `unexpected argument "extra"`},
	} {
		var stdout, stderr bytes.Buffer
		code := Main(t.Context(), tc.args, &stdout, &stderr)
		if code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("bench %v: exit %d, stderr %q, want exit 2 naming %q", tc.args, code, stderr.String(), tc.want)
		}
	}
}

func TestBenchHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := Main(t.Context(), []string{"-h"}, &stdout, &stderr); code != 0 {
		t.Fatalf("-h: exit %d", code)
	}
	for _, flag := range []string{"-rate", "-duration", "-binary", "-stream", "-storage", "(default 2000)"} {
		if !strings.Contains(stderr.String(), flag) {
			t.Errorf("-h output lacks %q:\n%s", flag, stderr.String())
		}
	}
}

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var out []time.Duration
		for _, x := range v {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	for _, tc := range []struct {
		in   []time.Duration
		q    float64
		want time.Duration
	}{
		{nil, 0.5, 0},
		{ms(7), 0.99, 7 * time.Millisecond},
		{ms(1, 2, 3, 4), 0.5, 2 * time.Millisecond},
		{ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 0.9, 9 * time.Millisecond},
		{ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 0.99, 10 * time.Millisecond},
	} {
		if got := percentile(tc.in, tc.q); got != tc.want {
			t.Errorf("percentile(%v, %v) = %v, want %v", tc.in, tc.q, got, tc.want)
		}
	}
}

func TestScrapeMetrics(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte(`# HELP go_goroutines Number of goroutines.
# TYPE go_goroutines gauge
go_goroutines 12
process_resident_memory_bytes 2.5e+08
auditwatch_ingest_events_total{format="vault",source="a"} 10
auditwatch_ingest_events_total{format="cloudtrail",source="b {x}"} 5
auditwatch_detect_stage_events_total 15 1700000000000
`))
	}))
	defer srv.Close()
	m, err := scrapeMetrics(srv.Client(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"go_goroutines": 12, "process_resident_memory_bytes": 2.5e8,
		"auditwatch_ingest_events_total": 15, "auditwatch_detect_stage_events_total": 15,
		`auditwatch_ingest_events_total{format="vault",source="a"}`: 10}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
}

// FuzzScrapeMetrics: any exposition text parses without panicking, and
// every value read is a number the text holds.
func FuzzScrapeMetrics(f *testing.F) {
	f.Add("go_goroutines 12\n")
	f.Add("# HELP x y\nx{a=\"b}\"} 1e3 17\n")
	f.Add("x{a=\"b\"\nx }")
	f.Fuzz(func(t *testing.T, body string) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte(body)) }))
		defer srv.Close()
		m, err := scrapeMetrics(srv.Client(), srv.URL)
		if err != nil {
			return
		}
		for k := range m {
			if k == "" || !strings.Contains(body, strings.SplitN(k, "{", 2)[0]) {
				t.Fatalf("series %q not in the body %q", k, body)
			}
		}
	})
}

// TestCheckMemory: a heap swinging up to its GOGC goal within the budget
// passes; a growing live heap, Go memory above the budget, or memory
// outside Go growing each fail.
func TestCheckMemory(t *testing.T) {
	const mb = 1 << 20
	var dc detect.Config
	dc.SetDefaults()
	run := func(live, goMem, other func(i int) float64) *Result {
		r := &Result{Duration: 20 * time.Second}
		for i := 0; i <= 10; i++ {
			g := goMem(i)
			r.Samples = append(r.Samples, benchSample{Elapsed: time.Duration(i) * 2 * time.Second, HeapLiveBytes: live(i), GoBytes: g, RSSBytes: g + other(i)})
		}
		return r
	}
	flat := func(v float64) func(int) float64 { return func(int) float64 { return v } }
	// What the 03:22 CI failure looked like: Go memory climbing to the
	// heap goal, live heap and chDB level.
	gcSwing := func(i int) float64 { return float64(14+22*i) * mb }
	for _, tc := range []struct {
		name            string
		live, gm, other func(int) float64
		want            string
	}{
		{"heap goal swing", func(i int) float64 { return float64(30+(i%3)*6) * mb }, gcSwing, func(i int) float64 { return float64(240+(i%2)*40) * mb }, ""},
		{"chdb merging at the end", flat(30 * mb), gcSwing, func(i int) float64 { return float64(250+170*(i/10)) * mb }, ""},
		{"leak", func(i int) float64 { return float64(30+20*i) * mb }, gcSwing, flat(250 * mb), "live Go heap grew by 60.0 MiB: at most 130.0 MiB in the second quarter, at least 190.0 MiB in the last"},
		{"over budget", flat(30 * mb), func(i int) float64 { return float64(400+20*i) * mb }, flat(250 * mb), "above the memory budget of 512.0 MiB"},
		{"chdb growth", flat(30 * mb), flat(100 * mb), func(i int) float64 { return float64(250+60*i) * mb }, "outside the Go runtime (chDB) grew by 180.0 MiB"},
	} {
		got := strings.Join(run(tc.live, tc.gm, tc.other).CheckMemory(SoakMemory(dc)), "\n")
		if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
			t.Errorf("%s: CheckMemory = %q, want %q", tc.name, got, tc.want)
		}
	}
}
