package detect

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"auditwatch/schema"
)

// A flood of distinct hostile keys stays within the byte budget, churns
// through the probationary segment, and leaves the baselines of
// principals that keep coming back in memory; evicting principals still
// learning is counted, logged once, and the caller is asked to checkpoint
// before unsaved state outgrows its share.
func TestMemoryBudgetUnderFlood(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	cfg := testConfig(t0.Add(time.Minute))
	cfg.MemoryBudget = 4 << 20
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	e, err := New(cfg, st, slog.New(slog.NewTextHandler(&logs, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	limit := cfg.StateBudget()
	const long = 50
	longName := func(i int) string { return fmt.Sprintf("long-lived-%d", i) }
	for i := 0; i < 3*long; i++ { // history: their baselines, a few events each
		e.Process(vev(fmt.Sprint("h", i), time.Duration(i)*time.Millisecond, longName(i%long), "10.9.9.9", "read", "secret/data/app"))
	}
	peak, asked, checkpoints := int64(0), 0, 0
	const floods = 30_000
	for j := 0; j < floods; j++ {
		at := 2*time.Minute + time.Duration(j)*time.Millisecond
		ev := vev(fmt.Sprint("f", j), at, fmt.Sprint("flood-", j), fmt.Sprintf("11.%d.%d.%d", j>>16&255, j>>8&255, j&255), "read", fmt.Sprint("secret/data/flood/", j))
		e.Process(ev)
		if j%100 == 0 { // each long-lived principal every 5,000 flood events
			i := j / 100 % long
			e.Process(vev(fmt.Sprint("l", j), at, longName(i), "10.9.9.9", "read", "secret/data/app"))
		}
		peak = max(peak, e.m.mem.used)
		if e.NeedCheckpoint() {
			asked++
			if err := e.Checkpoint(nil); err != nil {
				t.Fatal(err)
			}
			checkpoints++
		}
	}
	s := e.Stats()
	if peak > limit+limit/50 {
		t.Errorf("state peaked at %d bytes, budget %d", peak, limit)
	}
	if s.Evictions == 0 || asked == 0 {
		t.Fatalf("evictions %d, checkpoint requests %d: the budget was never reached", s.Evictions, asked)
	}
	if s.SpillDropped != 0 {
		t.Errorf("%d spilled entries dropped although every checkpoint request was honoured", s.SpillDropped)
	}
	// Plain LRU would have evicted each long-lived principal between two
	// of its visits (5,000 flood events apart, more than fit); segmented
	// LRU keeps them.
	inMem := 0
	for i := 0; i < long; i++ {
		if e.principals.m[e.h.sum("p", longName(i))] != nil {
			inMem++
		}
	}
	if inMem != long {
		t.Errorf("%d of %d long-lived principals still in memory after the flood", inMem, long)
	}
	if s.LearningEvictions == 0 || testutil.ToFloat64(e.m.learningEvictions) == 0 {
		t.Errorf("learning evictions: stats %d, metric %v", s.LearningEvictions, testutil.ToFloat64(e.m.learningEvictions))
	}
	if n := strings.Count(logs.String(), "still in their learning period"); n != 1 {
		t.Errorf("learning-eviction warning logged %d times over %d checkpoints, want once a minute", n, checkpoints)
	}
	if testutil.ToFloat64(e.m.stateBytes) <= 0 {
		t.Error("state bytes gauge not set")
	}
}

// A caller that never checkpoints cannot make unsaved state grow past
// twice its share: the oldest spilled entries are dropped and counted.
func TestSpillBoundedWithoutCheckpoints(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	cfg := testConfig(t0.Add(24 * time.Hour))
	cfg.MemoryBudget = 2 << 20
	e := newEngine(t, cfg, st, nil)
	for j := 0; j < 40_000; j++ {
		// history (before learn_until): admitted, so its eviction spills
		e.Process(vev(fmt.Sprint("f", j), time.Duration(j)*time.Millisecond, fmt.Sprint("flood-", j), "10.0.0.1", "read", "secret/data/x"))
		e.Process(vev(fmt.Sprint("g", j), time.Duration(j)*time.Millisecond, fmt.Sprint("flood-", j), "10.0.0.1", "read", "secret/data/x"))
		if e.m.mem.spilled > 2*e.m.mem.spillLimit+1024 {
			t.Fatalf("spill at %d bytes, share %d", e.m.mem.spilled, e.m.mem.spillLimit)
		}
	}
	if s := e.Stats(); s.SpillDropped == 0 {
		t.Fatal("no spilled entry dropped: the bound was not exercised")
	}
}

// The store filter never forgets a key (no false negatives) and rarely
// claims one it never saw.
func TestBloomFilter(t *testing.T) {
	var h hasher
	b := newBloom(10_000)
	for i := 0; i < 10_000; i++ {
		b.insert(h.sum("in", fmt.Sprint(i)))
	}
	for i := 0; i < 10_000; i++ {
		if !b.mayHave(h.sum("in", fmt.Sprint(i))) {
			t.Fatalf("key %d inserted but not found", i)
		}
	}
	fp := 0
	for i := 0; i < 10_000; i++ {
		if b.mayHave(h.sum("out", fmt.Sprint(i))) {
			fp++
		}
	}
	if fp > 300 {
		t.Errorf("%d false positives in 10,000", fp)
	}
	if b.full() {
		t.Error("full at its sized capacity")
	}
	var zero bloom
	if !zero.mayHave(h.sum("x")) {
		t.Error("the zero filter must say maybe")
	}
}

// Under a flood of hostile one-off keys that forces evictions (a small
// budget), the findings about long-lived principals are exactly those of
// the same traffic without the flood: their baselines, known pairs and
// open groups are neither lost nor dropped by admission. The long-lived
// traffic here (20 principals, 80 secrets) reads the same rarely-read
// secret again often, which is where a dropped pair would show.
func TestLongLivedFindingsUnderFlood(t *testing.T) {
	// Without admission by known principal, 8 of these findings are not
	// raised under the flood and 13 others are raised only under it.
	// twice: each flood principal (and address) sends two events in a row;
	// its keys, used again, are still not admitted (dropped when evicted).
	for _, twice := range []bool{false, true} {
		t.Run(fmt.Sprint("twice=", twice), func(t *testing.T) {
			const total = 120_000
			learn := t0.Add(time.Minute)
			cfg := Config{LearnUntil: learn, MemoryBudget: 4 << 20}
			flood := func() *flood {
				f := newFloodOf(total, 20, 80, learn)
				f.twice = twice
				return f
			}
			base := runFlood(t, cfg, flood(), false)
			got := runFlood(t, cfg, flood(), true)
			t.Logf("%d long-lived findings; under the flood: %d events, %d evictions, %d one-off entries dropped, %d learning evictions",
				len(base.ids), got.events, got.stats.Evictions, got.stats.OneOffDropped, got.stats.LearningEvictions)
			if len(base.ids) < 100 {
				t.Fatalf("only %d long-lived findings: the comparison shows little", len(base.ids))
			}
			if got.stats.Evictions == 0 || got.stats.OneOffDropped < got.stats.Evictions/4 {
				t.Fatalf("evictions %d, one-off dropped %d: the flood did not press on the budget, or its keys were admitted", got.stats.Evictions, got.stats.OneOffDropped)
			}
			if d := diffFindings(base.ids, got.ids); d != "" {
				t.Error(d)
			}
		})
	}
}

// A checkpoint writes the entries of a few new principals in full (normal
// traffic: they survive a restart), but of a flood of unknown principals
// only unprovenWrites per table, whether each sends one event or several:
// the rest stay in memory, written by later checkpoints once the flood
// passes, each principal with the entries created for it. A crash before
// that loses them: the held principal's next event is its first.
func TestFloodOneOffsHeldBackFromTheStore(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir)
	cfg := testConfig(time.Time{})
	e := newEngine(t, cfg, st, nil)
	stored := func(space string, k key) bool {
		t.Helper()
		v, err := st.Get(space, k[:])
		if err != nil {
			t.Fatal(err)
		}
		return v != nil
	}
	principal := func(name string) key { return e.h.sum("p", name) }
	var ft *firstTime
	for _, d := range e.dets {
		if x, ok := d.(*firstTime); ok {
			ft = x
		}
	}
	pair := func(name string) key { return ft.h.sum(name, "secret/"+name) } // its first secret
	count := func() int {
		t.Helper()
		n, err := st.Count(spacePrincipals)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	checkpoint := func() {
		t.Helper()
		if err := e.Checkpoint(nil); err != nil {
			t.Fatal(err)
		}
	}
	read := func(id string, at time.Duration, who, secret string) {
		e.Process(vev(id, at, who, "10.1.2.3", "read", "secret/data/"+secret))
	}
	// Normal traffic: 100 new principals, one event each.
	for i := 0; i < 100; i++ {
		who := fmt.Sprint("new-", i)
		read(fmt.Sprint("n", i), time.Duration(i)*time.Second, who, who)
	}
	checkpoint()
	if n := count(); n != 100 {
		t.Fatalf("%d principals stored after normal traffic, want all 100", n)
	}
	// A flood: 6,000 unknown principals within one checkpoint interval,
	// each reading its own secret, then another (each key used twice).
	const floods = 6_000
	for j := 0; j < floods; j++ {
		who := fmt.Sprint("flood-", j)
		at := 200*time.Second + time.Duration(j)*time.Millisecond
		read(fmt.Sprint("f", j), at, who, who)
		read(fmt.Sprint("g", j), at, who, "other")
	}
	if e.NeedCheckpoint() {
		t.Error("held entries made the engine ask for a checkpoint")
	}
	checkpoint()
	if n := count(); n != 100+unprovenWrites {
		t.Fatalf("%d principals stored after the flood's checkpoint, want %d + %d", n, 100, unprovenWrites)
	}
	heldIn := func(space string) int {
		for _, ts := range e.Stats().Tables {
			if ts.Space == space {
				return ts.Held
			}
		}
		t.Fatalf("no table %s", space)
		return 0
	}
	if h := heldIn(spacePrincipals); h != floods-unprovenWrites {
		t.Errorf("principals held %d, want %d", h, floods-unprovenWrites)
	}
	if s, g := e.Stats().Held, testutil.ToFloat64(e.m.held); s < floods-unprovenWrites || float64(s) != g {
		t.Errorf("held entries: stats %d, gauge %v", s, g)
	}
	// An admitted principal was saved with its pairs; the last one has
	// nothing saved, also not the keys it used twice.
	const admitted, held = "flood-1000", "flood-5999" // 1,000: beyond the pairs' own allowance
	if !stored(spacePrincipals, principal(admitted)) || !stored(ft.pairs.space, pair(admitted)) {
		t.Errorf("%s not saved with the pair of its first secret", admitted)
	}
	if stored(spacePrincipals, principal(held)) || stored(ft.pairs.space, pair(held)) {
		t.Errorf("%s (its principal or its first pair) saved during the flood", held)
	}
	// Crash now: a new engine over the same store has no trace of it.
	crashed := newEngine(t, cfg, st, nil)
	if n, found := crashed.principals.get(principal(held), false); found || n != nil {
		t.Fatalf("%s restored after a crash although it was held", held)
	}
	// The flood over, later checkpoints write what is still held.
	for i := 0; i < floods/unprovenWrites+1; i++ {
		checkpoint()
	}
	if n := count(); n != 100+floods {
		t.Fatalf("%d principals stored once the flood passed, want %d", n, 100+floods)
	}
	if s, g := e.Stats().Held, testutil.ToFloat64(e.m.held); s != 0 || g != 0 {
		t.Errorf("held entries once the flood passed: stats %d, gauge %v", s, g)
	}
	// Restarted after its learning period: the held principal was saved
	// with its first event (first seen then) and its first pair (no
	// finding), and a secret it never read is reported.
	reopened := newEngine(t, cfg, st, nil)
	n, found := reopened.principals.get(principal(held), false)
	if !found || n.v.First == 0 {
		t.Fatalf("%s after restart: found %v", held, found)
	}
	late := time.Unix(0, n.v.First).Sub(t0) + 8*24*time.Hour
	if fs := reopened.Process(vev("r1", late, held, "10.1.2.3", "read", "secret/data/"+held)); len(fs) != 0 {
		t.Errorf("after a restart, the pair of %s's first event was forgotten: %v", held, fs)
	}
	fs := reopened.Process(vev("r2", late+time.Second, held, "10.1.2.3", "read", "secret/data/never-read"))
	if len(fs) != 1 || fs[0].Detector != schema.DetectorFirstTimeAccess {
		t.Errorf("a new secret after the learning period: %v, want one first_time_access finding", fs)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
}

// Engines sharing a Pool hold the pool's bytes together, not each: three
// engines flooded at once stay within one state budget, and when two
// close, the third grows into the whole budget.
func TestPoolSharesTheBudget(t *testing.T) {
	cfg := testConfig(t0.Add(time.Minute))
	cfg.MemoryBudget = 4 << 20
	total := cfg.StateBudget()
	pool := NewPool(total)
	engines := make([]*Engine, 3)
	for i := range engines {
		st := openStore(t, t.TempDir())
		defer st.Close()
		e, err := New(cfg, st, nil, prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		e.SharePool(pool)
		engines[i] = e
	}
	if pool.Engines() != 3 {
		t.Fatalf("pool counts %d engines, want 3", pool.Engines())
	}
	flood := func(e *Engine, name string, n int) {
		t.Helper()
		for j := 0; j < n; j++ {
			at := 2*time.Minute + time.Duration(j)*time.Millisecond
			e.Process(vev(fmt.Sprint(name, j), at, fmt.Sprint(name, "-flood-", j), fmt.Sprintf("11.%d.%d.%d", j>>16&255, j>>8&255, j&255), "read", fmt.Sprint("secret/data/", name, "/", j)))
			if e.NeedCheckpoint() {
				if err := e.Checkpoint(nil); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	used := func() (sum int64) {
		for _, e := range engines {
			if e != nil {
				sum += e.m.mem.used
			}
		}
		return sum
	}
	var peak int64
	for round := 0; round < 30; round++ {
		for i, e := range engines {
			flood(e, fmt.Sprintf("e%d-r%d", i, round), 1000)
			peak = max(peak, used())
		}
	}
	if peak > total+total/50 {
		t.Errorf("three engines sharing %d bytes peaked at %d together", total, peak)
	}
	for i, e := range engines {
		if e.m.mem.used < total/3/2 {
			t.Errorf("engine %d holds %d bytes after the flood: its share (%d) was never reached", i, e.m.mem.used, total/3)
		}
		if s := e.Stats(); s.Evictions == 0 {
			t.Errorf("engine %d never evicted: the shared bound was not exercised", i)
		}
	}
	for _, i := range []int{1, 2} {
		if err := engines[i].Close(); err != nil {
			t.Fatal(err)
		}
		engines[i] = nil
	}
	if pool.Engines() != 1 {
		t.Fatalf("pool counts %d engines after two closed, want 1", pool.Engines())
	}
	last := engines[0]
	peak = 0
	for round := 0; round < 30; round++ {
		flood(last, fmt.Sprintf("alone-r%d", round), 1000)
		peak = max(peak, last.m.mem.used)
	}
	if peak <= total/3+total/50 {
		t.Errorf("the engine left alone peaked at %d bytes: it did not grow past its old share %d into the pool's %d", peak, total/3, total)
	}
	if peak > total+total/50 {
		t.Errorf("the engine left alone peaked at %d bytes, pool %d", peak, total)
	}
}
