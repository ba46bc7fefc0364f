package detect

import (
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"auditwatch/detect/state"
	"auditwatch/schema"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

var t0 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

// vev builds a Vault event.
func vev(id string, at time.Duration, principal, ip, op, path string) schema.Event {
	mount, mt := "secret/", "kv"
	if len(path) >= 4 && path[:4] == "sys/" {
		mount, mt = "sys/", "system"
	}
	if len(path) >= 5 && path[:5] == "auth/" {
		mount, mt = "auth/userpass/", "userpass"
	}
	ev := schema.Event{Time: t0.Add(at), Source: schema.SourceVault, ID: id, Principal: principal, PrincipalName: principal,
		PrincipalType: "entity", Action: "vault:" + op, Resource: path, Mount: mount, MountType: mt, SourceIP: ip, SourceIPRaw: ip,
		Outcome: schema.OutcomeSuccess, ReadOnly: op == "read" || op == "list", Namespace: "root"}
	if principal == "" {
		ev.PrincipalType = schema.PrincipalTypeAnonymous
	}
	return ev
}

func failed(ev schema.Event, kind string, auth bool) schema.Event {
	ev.Outcome, ev.FailureKind, ev.Auth, ev.Error = schema.OutcomeFailure, kind, auth, "permission denied"
	return ev
}

// scenario is one detector's acceptance input: events in event order,
// LearnUntil, and what must be found.
type scenario struct {
	name       string
	detector   string
	events     []schema.Event
	learnUntil time.Time
	wantMin    int // findings of detector at least
	principal  string
	sourceIP   string
}

var learnEnd = t0.Add(2 * time.Hour)

func scenarios() []scenario {
	var out []scenario
	h := func(d time.Duration) time.Duration { return d } // readability
	// unexpected_ip: app uses 10.1.1.0/24 in history, then 198.51.100.7.
	{
		var evs []schema.Event
		for i := 0; i < 60; i++ {
			evs = append(evs, vev(fmt.Sprintf("u%d", i), h(time.Duration(i)*time.Minute), "app-1", fmt.Sprintf("10.1.1.%d", 1+i%3), "read", "secret/data/app/db"))
		}
		evs = append(evs, vev("u-same24", 2*time.Hour+time.Minute, "app-1", "10.1.1.200", "read", "secret/data/app/db"))
		evs = append(evs, vev("u-new", 2*time.Hour+2*time.Minute, "app-1", "198.51.100.7", "read", "secret/data/app/db"))
		evs = append(evs, vev("u-new2", 2*time.Hour+3*time.Minute, "app-1", "198.51.100.8", "read", "secret/data/app/db"))
		out = append(out, scenario{name: "unexpected_ip", detector: schema.DetectorUnexpectedIP, events: evs, learnUntil: learnEnd, wantMin: 1, principal: "app-1", sourceIP: "198.51.100.7"})
	}
	// first_time_access: reads a in history, then lists metadata/a (same
	// resource) and reads b (new).
	{
		var evs []schema.Event
		for i := 0; i < 30; i++ {
			evs = append(evs, vev(fmt.Sprintf("f%d", i), time.Duration(i)*3*time.Minute, "app-2", "10.2.2.2", "read", "secret/data/team/a"))
		}
		evs = append(evs, vev("f-list", 2*time.Hour+time.Minute, "app-2", "10.2.2.2", "list", "secret/metadata/team/a/"))
		evs = append(evs, vev("f-new", 2*time.Hour+2*time.Minute, "app-2", "10.2.2.2", "read", "secret/data/team/b"))
		out = append(out, scenario{name: "first_time_access", detector: schema.DetectorFirstTimeAccess, events: evs, learnUntil: learnEnd, wantMin: 1, principal: "app-2", sourceIP: "10.2.2.2"})
	}
	// auth_failure_spike: 40 failed logins from one address in 40 s.
	{
		var evs []schema.Event
		for i := 0; i < 10; i++ {
			evs = append(evs, vev(fmt.Sprintf("a-ok%d", i), time.Duration(i)*10*time.Minute, "user-1", "10.3.3.3", "update", "auth/userpass/login/user-1"))
		}
		for i := 0; i < 40; i++ {
			evs = append(evs, failed(vev(fmt.Sprintf("a%d", i), 2*time.Hour+time.Duration(i)*time.Second, "", "203.0.113.9", "update", "auth/userpass/login/admin"), schema.FailureInvalidCredentials, true))
		}
		out = append(out, scenario{name: "auth_failure_spike", detector: schema.DetectorAuthFailureSpike, events: evs, learnUntil: learnEnd, wantMin: 2, principal: "", sourceIP: "203.0.113.9"})
	}
	// privileged_use: root token after history.
	{
		evs := []schema.Event{vev("p-boot", time.Minute, "root", "10.10.0.5", "update", "sys/mounts/secret")}
		evs[0].Policies = []string{"root"}
		for i := 0; i < 5; i++ {
			e := vev(fmt.Sprintf("p%d", i), 2*time.Hour+time.Duration(i)*5*time.Second, "root", "203.0.113.66", "read", "sys/auth")
			e.Policies = []string{"root"}
			evs = append(evs, e)
		}
		evs = append(evs, vev("p-tamper", 2*time.Hour+time.Minute, "admin-1", "10.4.4.4", "delete", "sys/audit/file"))
		out = append(out, scenario{name: "privileged_use", detector: schema.DetectorPrivilegedUse, events: evs, learnUntil: learnEnd, wantMin: 2, principal: "root", sourceIP: "203.0.113.66"})
	}
	// access_volume_spike: 2 secrets per session in history, then 14 in a minute.
	{
		var evs []schema.Event
		for i := 0; i < 20; i++ {
			at := time.Duration(i) * 6 * time.Minute
			evs = append(evs, vev(fmt.Sprintf("v%da", i), at, "human-1", "10.5.5.5", "read", "secret/data/ops/a"))
			evs = append(evs, vev(fmt.Sprintf("v%db", i), at+time.Second, "human-1", "10.5.5.5", "read", "secret/data/ops/b"))
		}
		for i := 0; i < 14; i++ {
			e := vev(fmt.Sprintf("vb%d", i), 2*time.Hour+time.Duration(i)*4*time.Second, "human-1", "10.5.5.5", "read", fmt.Sprintf("secret/data/all/s%d", i))
			if i == 3 {
				e = failed(e, schema.FailurePermissionDenied, false)
			}
			evs = append(evs, e)
		}
		out = append(out, scenario{name: "access_volume_spike", detector: schema.DetectorAccessVolumeSpike, events: evs, learnUntil: learnEnd, wantMin: 1, principal: "human-1", sourceIP: "10.5.5.5"})
	}
	return out
}

func testConfig(learnUntil time.Time) Config {
	var c Config
	c.LearnUntil = learnUntil
	c.AllowedLateness = Duration(time.Minute)
	return c
}

func openStore(t testing.TB, dir string) *state.Store {
	t.Helper()
	st, err := state.Open(state.Config{Dir: dir})
	if err != nil {
		t.Fatalf("open state %s: %v", dir, err)
	}
	return st
}

func newEngine(t testing.TB, cfg Config, st *state.Store, reg prometheus.Registerer) *Engine {
	t.Helper()
	e, err := New(cfg, st, slog.New(slog.DiscardHandler), reg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e
}

// runAll feeds evs.
func runAll(e *Engine, evs []schema.Event) []schema.Finding {
	var out []schema.Finding
	for _, ev := range evs {
		out = append(out, e.Process(ev)...)
	}
	return out
}

func ids(fs []schema.Finding) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.ID
	}
	return out
}

func ofDetector(fs []schema.Finding, det string) []schema.Finding {
	var out []schema.Finding
	for _, f := range fs {
		if f.Detector == det {
			out = append(out, f)
		}
	}
	return out
}

func baseline(t *testing.T, sc scenario) []schema.Finding {
	t.Helper()
	st := openStore(t, t.TempDir())
	defer st.Close()
	return runAll(newEngine(t, testConfig(sc.learnUntil), st, nil), sc.events)
}

func TestAcceptance(t *testing.T) {
	for _, sc := range scenarios() {
		t.Run(sc.name, func(t *testing.T) {
			want := baseline(t, sc)
			mine := ofDetector(want, sc.detector)
			if len(mine) < sc.wantMin {
				t.Fatalf("%d %s findings, want at least %d: %+v", len(mine), sc.detector, sc.wantMin, want)
			}
			f := mine[0]
			if f.Principal != sc.principal || f.SourceIP != sc.sourceIP {
				t.Errorf("first finding principal %q ip %q, want %q %q", f.Principal, f.SourceIP, sc.principal, sc.sourceIP)
			}
			for _, f := range want {
				if f.ID == "" || f.DedupeKey == "" || f.Summary == "" || f.Reason == "" || len(f.EventIDs) == 0 || f.Count < 1 {
					t.Errorf("incomplete finding %+v", f)
				}
				if f.Time.Before(sc.learnUntil) {
					t.Errorf("finding from history: %+v", f)
				}
			}

			t.Run("deterministic_ids", func(t *testing.T) {
				again := baseline(t, sc)
				if !slices.Equal(ids(again), ids(want)) {
					t.Fatalf("ids differ between identical runs:\n%v\n%v", ids(again), ids(want))
				}
				seen := map[string]bool{}
				for _, f := range want {
					if seen[f.ID] {
						t.Errorf("id %s raised twice", f.ID)
					}
					seen[f.ID] = true
				}
			})

			t.Run("shuffled_within_lateness", func(t *testing.T) {
				evs := slices.Clone(sc.events)
				// swap neighbours: each within the allowed lateness of the other
				for i := 0; i+1 < len(evs); i += 2 {
					if evs[i+1].Time.Sub(evs[i].Time) < 30*time.Second {
						evs[i], evs[i+1] = evs[i+1], evs[i]
					}
				}
				st := openStore(t, t.TempDir())
				defer st.Close()
				got := runAll(newEngine(t, testConfig(sc.learnUntil), st, nil), evs)
				if !slices.Equal(Incidents(got), Incidents(want)) {
					t.Fatalf("reordered input gave other incidents:\n%v\n%v", Incidents(got), Incidents(want))
				}
			})

			t.Run("late", func(t *testing.T) {
				// Find the event that raises the first finding, then deliver it
				// after the watermark has passed it.
				first := mine[0]
				trig := -1
				for i, ev := range sc.events {
					if ev.Time.Equal(first.Time) && slices.Contains(first.EventIDs, ev.ID) {
						trig = i
					}
				}
				if trig < 0 {
					t.Fatal("no trigger found")
				}
				st := openStore(t, t.TempDir())
				defer st.Close()
				e := newEngine(t, testConfig(sc.learnUntil), st, nil)
				for _, ev := range sc.events[:trig] {
					e.Process(ev)
				}
				filler := vev("filler", sc.events[trig].Time.Sub(t0)+5*time.Minute, "filler", "", "read", "sys/health")
				if fs := e.Process(filler); len(ofDetector(fs, sc.detector)) > 0 {
					t.Fatalf("filler raised %+v", fs)
				}
				got := ofDetector(e.Process(sc.events[trig]), sc.detector)
				if len(got) == 0 {
					t.Fatal("late trigger raised nothing")
				}
				if !got[0].Late {
					t.Errorf("late finding not marked late: %+v", got[0])
				}
				if s := e.Stats(); s.Late != 1 {
					t.Errorf("Stats.Late = %d, want 1", s.Late)
				}
			})

			t.Run("restart", func(t *testing.T) {
				for _, split := range []int{1, len(sc.events) / 2, len(sc.events) - 3, len(sc.events) - 1} {
					dir := t.TempDir()
					st := openStore(t, dir)
					e := newEngine(t, testConfig(sc.learnUntil), st, nil)
					var got []schema.Finding
					for _, ev := range sc.events[:split] {
						got = append(got, e.Process(ev)...)
					}
					if err := e.Checkpoint(map[string][]byte{"pos": []byte(fmt.Sprint(split))}); err != nil {
						t.Fatal(err)
					}
					// Crash after the checkpoint: the next events are processed
					// (findings emitted) but never checkpointed.
					var lost []schema.Finding
					for _, ev := range sc.events[split:min(split+2, len(sc.events))] {
						lost = append(lost, e.Process(ev)...)
					}
					st.Close()

					st = openStore(t, dir)
					e = newEngine(t, testConfig(sc.learnUntil), st, nil)
					meta, err := e.Meta()
					if err != nil {
						t.Fatal(err)
					}
					var pos int
					fmt.Sscan(string(meta["pos"]), &pos)
					if pos != split {
						t.Fatalf("meta pos %q, want %d", meta["pos"], split)
					}
					rest := runAll(e, sc.events[pos:])
					st.Close()
					// Findings re-emitted after the crash carry the ids emitted before it.
					for _, f := range lost {
						if !slices.Contains(ids(rest), f.ID) {
							t.Errorf("split %d: finding %s emitted before the crash was not re-emitted with the same id", split, f.ID)
						}
					}
					got = append(got, rest...)
					if !slices.Equal(ids(got), ids(want)) {
						t.Fatalf("split %d: restarted run differs:\n%v\n%v", split, ids(got), ids(want))
					}
				}
			})

			t.Run("eviction", func(t *testing.T) {
				// Tiny tables and hostile noise: many principals and addresses.
				var evs []schema.Event
				for i, ev := range sc.events {
					evs = append(evs, ev)
					for j := 0; j < 3; j++ {
						n := i*3 + j
						noise := vev(fmt.Sprintf("noise%d", n), ev.Time.Sub(t0), fmt.Sprintf("noise-%d", n), fmt.Sprintf("192.0.2.%d", n%250), "read", "sys/health")
						evs = append(evs, noise)
					}
				}
				cfg := testConfig(sc.learnUntil)
				cfg.MaxPrincipals = 16
				cfg.UnexpectedIP.MaxPrincipals = 16
				cfg.FirstTimeAccess.MaxPairs = 16
				cfg.AuthFailureSpike.MaxKeys = 16
				cfg.PrivilegedUse.MaxKeys = 16
				cfg.AccessVolumeSpike.MaxPrincipals = 16
				reg := prometheus.NewRegistry()
				dir := t.TempDir()
				st := openStore(t, dir)
				e := newEngine(t, cfg, st, reg)
				var got []schema.Finding
				for i, ev := range evs {
					got = append(got, e.Process(ev)...)
					if i%50 == 49 {
						if err := e.Checkpoint(nil); err != nil {
							t.Fatal(err)
						}
					}
				}
				st.Close()
				if !slices.Equal(ids(ofDetector(got, sc.detector)), ids(mine)) {
					t.Fatalf("findings changed under eviction:\n%v\n%v", ids(ofDetector(got, sc.detector)), ids(mine))
				}
				s := e.Stats()
				if s.Evictions == 0 {
					t.Fatal("no eviction counted")
				}
				if n := testutil.ToFloat64(e.m.evictions.WithLabelValues(spacePrincipals)); n == 0 || uint64(n) > s.Evictions {
					t.Errorf("evictions metric %v, Stats %d", n, s.Evictions)
				}
			})
		})
	}
}
