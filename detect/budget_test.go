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
	cfg := testConfig(time.Time{})
	cfg.MemoryBudget = 2 << 20
	e := newEngine(t, cfg, st, nil)
	for j := 0; j < 40_000; j++ {
		// each key used twice: admitted, so its eviction spills
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
	const total = 120_000
	learn := t0.Add(time.Minute)
	cfg := Config{LearnUntil: learn, MemoryBudget: 4 << 20}
	base := runFlood(t, cfg, newFloodOf(total, 20, 80, learn), false)
	got := runFlood(t, cfg, newFloodOf(total, 20, 80, learn), true)
	t.Logf("%d long-lived findings; under the flood: %d events, %d evictions, %d one-off entries dropped, %d learning evictions",
		len(base.ids), got.events, got.stats.Evictions, got.stats.OneOffDropped, got.stats.LearningEvictions)
	if len(base.ids) < 100 {
		t.Fatalf("only %d long-lived findings: the comparison shows little", len(base.ids))
	}
	if got.stats.Evictions == 0 || got.stats.OneOffDropped == 0 {
		t.Fatalf("evictions %d, one-off dropped %d: the flood did not press on the budget", got.stats.Evictions, got.stats.OneOffDropped)
	}
	if d := diffFindings(base.ids, got.ids); d != "" {
		t.Error(d)
	}
}

// A checkpoint writes the entries of a few new principals in full (normal
// traffic: they survive a restart), but of a flood of unknown one-off
// principals only unprovenWrites per table: the rest stay in memory,
// written once used again or, after the flood, by later checkpoints. A
// crash before that loses them: the held principal's next event is its
// first.
func TestFloodOneOffsHeldBackFromTheStore(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir)
	cfg := testConfig(time.Time{})
	e := newEngine(t, cfg, st, nil)
	stored := func(name string) bool {
		t.Helper()
		k := e.h.sum("p", name)
		v, err := st.Get(spacePrincipals, k[:])
		if err != nil {
			t.Fatal(err)
		}
		return v != nil
	}
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
	read := func(id string, at time.Duration, who string) {
		e.Process(vev(id, at, who, "10.1.2.3", "read", "secret/data/"+who))
	}
	// Normal traffic: 100 new principals, one event each.
	for i := 0; i < 100; i++ {
		read(fmt.Sprint("n", i), time.Duration(i)*time.Second, fmt.Sprint("new-", i))
	}
	checkpoint()
	if n := count(); n != 100 {
		t.Fatalf("%d principals stored after normal traffic, want all 100", n)
	}
	// A flood: 6,000 unknown principals within one checkpoint interval.
	const floods = 6_000
	for j := 0; j < floods; j++ {
		read(fmt.Sprint("f", j), 200*time.Second+time.Duration(j)*time.Millisecond, fmt.Sprint("flood-", j))
	}
	if e.NeedCheckpoint() {
		t.Error("held-back one-off entries made the engine ask for a checkpoint")
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
	const again = "flood-5999"
	if stored(again) {
		t.Fatalf("%s stored before it was used again", again)
	}
	// Crash now: a new engine over the same store has no trace of it.
	crashed := newEngine(t, cfg, st, nil)
	k := e.h.sum("p", again)
	if n, found := crashed.principals.get(k, false); found || n != nil {
		t.Fatalf("%s restored after a crash although it was held back", again)
	}
	// Used again (another secret): written at the next checkpoint with
	// its first sighting, and so is what its first event created (the
	// pair with its first secret), although the allowance goes to older
	// held entries.
	e.Process(vev("again", 300*time.Second, again, "10.1.2.3", "read", "secret/data/other"))
	checkpoint()
	if !stored(again) {
		t.Fatalf("%s not stored after its second event", again)
	}
	reopened := newEngine(t, cfg, st, nil)
	n, found := reopened.principals.get(k, false)
	if !found || time.Unix(0, n.v.First).UTC() != t0.Add(200*time.Second+5999*time.Millisecond) {
		t.Fatalf("%s after restart: found %v, first seen %v", again, found, n)
	}
	// After its learning period, the restarted engine knows the pair of
	// its first event (no finding) and reports a secret it never read.
	late := 200*time.Second + 8*24*time.Hour
	if fs := reopened.Process(vev("r1", late, again, "10.1.2.3", "read", "secret/data/"+again)); len(fs) != 0 {
		t.Errorf("after a restart, the pair of %s's first event was forgotten: %v", again, fs)
	}
	fs := reopened.Process(vev("r2", late+time.Second, again, "10.1.2.3", "read", "secret/data/never-read"))
	if len(fs) != 1 || fs[0].Detector != schema.DetectorFirstTimeAccess {
		t.Errorf("a new secret after the learning period: %v, want one first_time_access finding", fs)
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
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
}
