package detect

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"syscall"
	"testing"
	"time"

	"auditwatch/schema"
)

// synth generates a realistic mix deterministically: many machine
// principals reading their few secrets from their few addresses, humans
// reading more, some failed logins and denied reads, occasional root use.
type synth struct {
	r          *rand.Rand
	principals []string
	secrets    []string
	ips        []string
	t          time.Time
	n          int
}

func newSynth(principals, secrets int) *synth {
	s := &synth{r: rand.New(rand.NewPCG(1, 2)), t: t0}
	for i := 0; i < principals; i++ {
		s.principals = append(s.principals, fmt.Sprintf("%08x-4360-fe0c-4ca0-%012x", i, i*7919))
	}
	for i := 0; i < secrets; i++ {
		s.secrets = append(s.secrets, fmt.Sprintf("secret/data/team%d/app%d/key", i%50, i))
	}
	for i := 0; i < principals*2; i++ {
		s.ips = append(s.ips, fmt.Sprintf("10.%d.%d.%d", i%200, (i/200)%250, 1+i%250))
	}
	return s
}

func (s *synth) next(ev *schema.Event) {
	s.n++
	s.t = s.t.Add(time.Duration(s.r.IntN(2000)) * time.Microsecond)
	p := s.r.IntN(len(s.principals))
	// Mostly the principal's own few secrets and addresses.
	sec := (p*3 + s.r.IntN(3)) % len(s.secrets)
	if s.r.IntN(100) == 0 {
		sec = s.r.IntN(len(s.secrets))
	}
	ip := s.ips[(p*2+s.r.IntN(2))%len(s.ips)]
	*ev = schema.Event{Time: s.t, Source: schema.SourceVault, ID: fmt.Sprint(s.n), Principal: s.principals[p], PrincipalName: "app",
		PrincipalType: "entity", Action: "vault:read", Resource: s.secrets[sec], Mount: "secret/", MountType: "kv",
		Namespace: "root", SourceIP: ip, SourceIPRaw: ip, Outcome: schema.OutcomeSuccess, ReadOnly: true}
	switch k := s.r.IntN(1000); {
	case k < 10:
		ev.Outcome, ev.FailureKind, ev.Auth, ev.Action, ev.Resource = schema.OutcomeFailure, schema.FailureInvalidCredentials, true, "vault:update", "auth/userpass/login/x"
		ev.Principal, ev.PrincipalType = "", schema.PrincipalTypeAnonymous
	case k < 15:
		ev.Outcome, ev.FailureKind = schema.OutcomeFailure, schema.FailurePermissionDenied
	case k == 999:
		ev.Policies = []string{"root"}
	}
}

// BenchmarkEngine1M runs the engine over 1,000,000 synthetic events per
// iteration with a checkpoint every 100,000, on the real bbolt store, and
// reports events/s, allocations per event and peak heap.
func BenchmarkEngine1M(b *testing.B) {
	const events = 1_000_000
	b.ReportAllocs()
	var peak uint64
	var ms runtime.MemStats
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		st := openStore(b, b.TempDir())
		var cfg Config
		cfg.LearnUntil = t0.Add(10 * time.Minute)
		e := newEngine(b, cfg, st, nil)
		s := newSynth(5000, 20000)
		var ev schema.Event
		findings := 0
		b.StartTimer()
		for n := 0; n < events; n++ {
			s.next(&ev)
			findings += len(e.Process(ev))
			if n%100_000 == 99_999 {
				if err := e.Checkpoint(map[string][]byte{"pos": []byte(fmt.Sprint(n))}); err != nil {
					b.Fatal(err)
				}
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapInuse)
			}
		}
		_ = findings
		if err := e.Checkpoint(nil); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if findings == 0 {
			b.Fatal("no findings from the synthetic mix")
		}
		st.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(events)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	// On a shared machine wall time includes waiting for a core; CPU time
	// (user+sys, GC included) is the one-core figure.
	b.ReportMetric(float64(events)*float64(b.N)/(cpuTime()-cpu0).Seconds(), "events/cpu-s")
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
}

// BenchmarkStatePairs measures the in-memory cost of 1,000,000 tracked
// (principal, resource) pairs in first_time_access.
func BenchmarkStatePairs(b *testing.B) {
	const pairs = 1_000_000
	for i := 0; i < b.N; i++ {
		st := openStore(b, b.TempDir())
		var cfg Config
		cfg.FirstTimeAccess.MaxPairs = pairs + 16
		cfg.MaxPrincipals = pairs + 16
		e := newEngine(b, cfg, st, nil)
		ft := e.dets[1].(*firstTime)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		ev := schema.Event{Source: schema.SourceVault, Action: "vault:read", Mount: "secret/", MountType: "kv", PrincipalType: "entity", Outcome: schema.OutcomeSuccess}
		var c evalCtx
		c.e, c.hasPrincipal, c.history = e, true, true
		for n := 0; n < pairs; n++ {
			ev.Time = t0.Add(time.Duration(n) * time.Millisecond)
			// 10,000 principals x 100 secrets each: 1,000,000 distinct pairs.
			ev.Principal = principalName(n % 10000)
			ev.Resource = secretName(n)
			c.scoped = false
			ft.process(&ev, &c, nil)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if ft.pairs.len() != pairs {
			b.Fatalf("tracked %d pairs, want %d", ft.pairs.len(), pairs)
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/pairs, "bytes/pair")
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "MiB/1M-pairs")
		runtime.KeepAlive(e)
		st.Close()
	}
}

// cpuTime is the process's user+sys CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func principalName(i int) string { return fmt.Sprintf("principal-%d", i) }
func secretName(i int) string    { return fmt.Sprintf("secret/data/s%d", i) }
