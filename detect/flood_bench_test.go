package detect

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"auditwatch/schema"
)

var (
	floodEvents = flag.Int("flood-events", 10_000_000, "events of BenchmarkFlood (half distinct principals, half distinct addresses)")
	floodTwice  = flag.Bool("flood-twice", false, "BenchmarkFlood: each flood principal sends two events in a row (its keys are used again, so admitted)")
)

// flood interleaves long-lived traffic (synth: principals with routine
// habits, a few anomalies, learned before LearnUntil) with a flood of
// hostile one-off keys after LearnUntil: every flood event has a new
// principal or one seen once long before, a new source address, and a
// secret from a million; every fourth is a failed login from its address.
type flood struct {
	s          *synth
	learn      time.Time
	total, n   int
	floods     int
	principals int  // distinct flood principals (total/2)
	twice      bool // each flood principal sends two events in a row
	buf        []byte
}

func newFlood(total int) *flood {
	f := newFloodOf(total, 2000, 6000, floodLearnUntil)
	f.twice = *floodTwice
	return f
}

// newFloodOf is a flood of total events whose long-lived traffic has the
// given principals and secrets, learned until learn.
func newFloodOf(total, principals, secrets int, learn time.Time) *flood {
	return &flood{s: newSynth(principals, secrets), learn: learn, total: total, principals: max(total/2, 1)}
}

// next fills ev; long reports whether it is long-lived traffic.
func (f *flood) next(ev *schema.Event) (long bool) {
	f.n++
	if f.s.t.Before(f.learn) || f.n%5 == 0 {
		f.s.next(ev)
		return true
	}
	j := f.floods
	f.floods++
	k, kind := j%f.principals, j
	if f.twice {
		k, kind = j/2%f.principals, j/2
	}
	str := func(prefix string, x int) string {
		f.buf = strconv.AppendInt(append(f.buf[:0], prefix...), int64(x), 10)
		return string(f.buf)
	}
	a := uint32(k)
	f.buf = f.buf[:0]
	f.buf = strconv.AppendUint(append(f.buf, "11."...), uint64(a>>16&255), 10)
	f.buf = strconv.AppendUint(append(f.buf, '.'), uint64(a>>8&255), 10)
	f.buf = strconv.AppendUint(append(f.buf, '.'), uint64(a&255), 10)
	ip := string(f.buf)
	*ev = schema.Event{Time: f.s.t, Source: schema.SourceVault, ID: str("flood-", j), Principal: str("flood-principal-", k),
		PrincipalType: "entity", Action: "vault:read", Resource: str("secret/data/flood/", j%1_000_000), Mount: "secret/", MountType: "kv",
		Namespace: "root", SourceIP: ip, SourceIPRaw: ip, Outcome: schema.OutcomeSuccess, ReadOnly: true}
	ev.PrincipalName = ev.Principal
	if kind%4 == 3 {
		ev.Outcome, ev.FailureKind, ev.Auth, ev.Action, ev.Resource = schema.OutcomeFailure, schema.FailureInvalidCredentials, true, "vault:update", "auth/userpass/login/x"
		ev.Principal, ev.PrincipalType = "", schema.PrincipalTypeAnonymous
	}
	return false
}

var floodLearnUntil = t0.Add(5 * time.Minute)

// vmHWM reads the process's peak resident set (VmHWM) in bytes.
func vmHWM(tb testing.TB) int64 { return procStatus(tb, "VmHWM:") }

// procStatus reads one kB field of /proc/self/status in bytes.
func procStatus(tb testing.TB, field string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		tb.Skipf("no /proc/self/status: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				tb.Fatalf("%s %q: %v", field, v, err)
			}
			return kb << 10
		}
	}
	tb.Fatalf("no %s in /proc/self/status", field)
	return 0
}

// BenchmarkFlood replays -flood-events events (default 10,000,000): long-
// lived traffic interleaved with a flood of hostile one-off keys (half as
// many distinct principals and distinct source addresses as events), with
// the shipped defaults, the durable store and a checkpoint every 100,000
// events (as replay does). It reports the process's peak RSS (VmHWM),
// events/s under the flood against a run of the long-lived traffic alone
// in the same process, and fails unless the long-lived principals'
// findings are identical in both runs.
//
//	make bench-detect-flood FLOOD_EVENTS=10000000
func BenchmarkFlood(b *testing.B) {
	total := *floodEvents
	var shipped Config
	shipped.SetDefaults()
	if os.Getenv("GOMEMLIMIT") == "" {
		// as replay and run do
		defer debug.SetMemoryLimit(debug.SetMemoryLimit(shipped.GoMemoryLimit()))
	}
	run := func(withFlood bool) ([]string, float64, float64, Stats) {
		r := runFlood(b, Config{LearnUntil: floodLearnUntil}, newFlood(total), withFlood)
		b.Logf("flood %v: %d events in %v (checkpoints %v), %v CPU", withFlood, r.events, r.wall, r.ckpt, r.cpu)
		return r.ids, float64(r.events) / r.wall.Seconds(), float64(r.events) / r.cpu.Seconds(), r.stats
	}
	for i := 0; i < b.N; i++ {
		base, baseRate, baseCPU, _ := run(false)
		got, floodRate, floodCPU, s := run(true)
		hwm := vmHWM(b)
		b.ReportMetric(float64(hwm)/(1<<20), "VmHWM-MiB")
		b.ReportMetric(baseRate, "normal-events/s")
		b.ReportMetric(floodRate, "flood-events/s")
		b.ReportMetric(baseRate/floodRate, "normal/flood")
		b.ReportMetric(baseCPU, "normal-events/cpu-s")
		b.ReportMetric(floodCPU, "flood-events/cpu-s")
		b.ReportMetric(baseCPU/floodCPU, "normal/flood-cpu")
		b.ReportMetric(float64(s.Evictions), "evictions")
		b.ReportMetric(float64(s.SpillDropped), "spill-dropped")
		b.ReportMetric(float64(s.OneOffDropped), "one-off-dropped")
		b.ReportMetric(float64(s.LearningEvictions), "learning-evictions")
		b.ReportMetric(float64(len(base)), "long-lived-findings")
		b.Logf("VmHWM %d MiB; normal %.0f events/s %.0f events/cpu-s; flood %.0f events/s %.0f events/cpu-s; normal/flood %.2f wall %.2f cpu; evictions %d, one-off dropped %d, learning evictions %d, spill dropped %d",
			hwm>>20, baseRate, baseCPU, floodRate, floodCPU, baseRate/floodRate, baseCPU/floodCPU, s.Evictions, s.OneOffDropped, s.LearningEvictions, s.SpillDropped)
		if len(base) == 0 {
			b.Fatal("no findings for the long-lived principals")
		}
		if d := diffFindings(base, got); d != "" {
			b.Error(d)
		}
		b.Logf("GOMEMLIMIT %d MiB; now RssAnon %d MiB, RssFile %d MiB; tables: %+v", debug.SetMemoryLimit(-1)>>20,
			procStatus(b, "RssAnon:")>>20, procStatus(b, "RssFile:")>>20, s.Tables)
	}
}

// floodRun is what runFlood measured.
type floodRun struct {
	ids             []string // long-lived principals' findings: "detector principal id", sorted
	events          int
	wall, cpu, ckpt time.Duration
	stats           Stats
}

// runFlood feeds f's events (the long-lived ones only, without withFlood)
// to an engine with cfg over a durable store, checkpointing every 100,000
// events or when the engine asks (as replay does), and collects the
// findings about long-lived principals and addresses.
func runFlood(tb testing.TB, cfg Config, f *flood, withFlood bool) floodRun {
	st := openStore(tb, tb.TempDir())
	defer st.Close()
	e := newEngine(tb, cfg, st, nil)
	var r floodRun
	var ev schema.Event
	start, cpu0 := time.Now(), cpuTime()
	for i := 0; i < f.total; i++ {
		long := f.next(&ev)
		if !long && !withFlood {
			continue
		}
		r.events++
		for _, fd := range e.Process(ev) {
			if !strings.HasPrefix(fd.Principal, "flood-") && !strings.HasPrefix(fd.SourceIP, "11.") {
				r.ids = append(r.ids, fd.Detector+" "+fd.Principal+" "+fd.ID)
			}
		}
		if r.events%100_000 == 0 || e.NeedCheckpoint() {
			c0 := time.Now()
			if err := e.Checkpoint(nil); err != nil {
				tb.Fatal(err)
			}
			r.ckpt += time.Since(c0)
		}
	}
	if err := e.Checkpoint(nil); err != nil {
		tb.Fatal(err)
	}
	r.wall, r.cpu = time.Since(start), cpuTime()-cpu0
	r.stats = e.Stats()
	slices.Sort(r.ids)
	return r
}

// diffFindings describes how got differs from base (both sorted), or
// returns "" when they are equal.
func diffFindings(base, got []string) string {
	if slices.Equal(base, got) {
		return ""
	}
	var only, extra []string
	for _, id := range base {
		if _, ok := slices.BinarySearch(got, id); !ok {
			only = append(only, id)
		}
	}
	for _, id := range got {
		if _, ok := slices.BinarySearch(base, id); !ok {
			extra = append(extra, id)
		}
	}
	return fmt.Sprintf("long-lived principals' findings differ under the flood: %d without, %d with; %d not raised under the flood (first: %q), %d raised only under it (first: %q)",
		len(base), len(got), len(only), only[:min(len(only), 5)], len(extra), extra[:min(len(extra), 5)])
}
