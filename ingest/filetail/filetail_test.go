package filetail

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"auditwatch/config/duration"
	"auditwatch/ingest"
	"auditwatch/ingest/source"
)

// collector is a Publisher that records events and saves positions the
// way the ingest stage does once a batch is durably taken.
type collector struct {
	mu  sync.Mutex
	ids []string
	cp  source.Checkpoints
}

func (c *collector) Publish(_ context.Context, b source.Batch) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ev := range b.Events {
		c.ids = append(c.ids, ev.ID)
	}
	return c.cp.Save(b.Source, b.Position)
}

func (c *collector) got() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.ids...)
}

func line(id string) string {
	return fmt.Sprintf(`{"id":%q,"source":"vault","principal":"p","action":"vault:read"}`+"\n", id)
}

func appendLines(t *testing.T, path string, ids ...string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, id := range ids {
		if _, err := f.WriteString(line(id)); err != nil {
			t.Fatal(err)
		}
	}
}

func waitIDs(t *testing.T, c *collector, n int) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := c.got()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d events %v, want %d", len(got), got, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func start(t *testing.T, path string, cp source.Checkpoints) (*collector, func()) {
	t.Helper()
	return startWith(t, path, cp, nil)
}

// fakeClock drives a tailer's polling by hand: every poll waits until
// the test lets it go on (tick), and time stands still, so nothing is idle.
type fakeClock struct {
	mu    sync.Mutex
	at    time.Time
	waits chan chan time.Time // one per poll the tailer waits for
}

func newFakeClock() *fakeClock {
	return &fakeClock{at: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), waits: make(chan chan time.Time, 64)}
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.at
}

// add moves the clock on (the file looks idle to the tailer).
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.at = c.at.Add(d)
}

// poll lets the tailer's waiting poll go on and returns once it waits for
// the next one: it has read and handed on everything there was.
func (c *fakeClock) poll(t *testing.T) {
	t.Helper()
	c.waiting(t) <- time.Time{}
	ch := c.waiting(t)
	// put it back: the next poll or waiting call takes it
	c.waits <- ch
}

func (c *fakeClock) after(time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	c.waits <- ch
	return ch
}

// waiting returns once the tailer waits for its next poll (it has read
// everything there was), with the channel that lets it go on.
func (c *fakeClock) waiting(t *testing.T) chan time.Time {
	t.Helper()
	select {
	case ch := <-c.waits:
		return ch
	case <-time.After(10 * time.Second): // a guard only
		t.Fatal("the tailer never waited for a poll")
		return nil
	}
}

// startWith is start on clock (nil: the wall clock).
func startWith(t *testing.T, path string, cp source.Checkpoints, clock *fakeClock) (*collector, func()) {
	t.Helper()
	tl, err := New(Config{Path: path, PollInterval: duration.Duration(10 * time.Millisecond), IdleFlush: duration.Duration(50 * time.Millisecond), FingerprintBytes: 32}, "vault-file", source.JSONLines, cp, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if clock != nil {
		tl.SetClock(clock.now, clock.after)
	}
	c := &collector{cp: cp}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tl.Run(ctx, c) }()
	return c, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}
}

func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%03d", prefix, i)
	}
	return out
}

func checkExactly(t *testing.T, got []string, want ...[]string) {
	t.Helper()
	var all []string
	for _, w := range want {
		all = append(all, w...)
	}
	if len(got) != len(all) {
		t.Fatalf("got %d events, want %d:\n%v", len(got), len(all), got)
	}
	for i := range all {
		if got[i] != all[i] {
			t.Fatalf("event %d = %s, want %s", i, got[i], all[i])
		}
	}
}

func TestRotationByRename(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	appendLines(t, path, ids("a", 5)...)
	cp := source.NewMemCheckpoints(nil)
	c, stop := start(t, path, cp)
	defer stop()
	waitIDs(t, c, 5)
	// Lines written just before the rename must not be lost.
	appendLines(t, path, ids("b", 3)...)
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	appendLines(t, path, ids("c", 4)...)
	checkExactly(t, waitIDs(t, c, 12), ids("a", 5), ids("b", 3), ids("c", 4))
}

func TestCopyTruncate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	appendLines(t, path, ids("a", 5)...)
	cp := source.NewMemCheckpoints(nil)
	c, stop := start(t, path, cp)
	defer stop()
	waitIDs(t, c, 5)
	// copytruncate, then more than was there before is written quickly:
	// the size alone would not reveal the truncation; the fingerprint does.
	b, _ := os.ReadFile(path)
	os.WriteFile(path+".1", b, 0o644)
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	appendLines(t, path, ids("x", 8)...)
	checkExactly(t, waitIDs(t, c, 13), ids("a", 5), ids("x", 8))
}

func TestTruncateShorter(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	appendLines(t, path, ids("a", 10)...)
	cp := source.NewMemCheckpoints(nil)
	c, stop := start(t, path, cp)
	defer stop()
	waitIDs(t, c, 10)
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	appendLines(t, path, ids("y", 2)...)
	checkExactly(t, waitIDs(t, c, 12), ids("a", 10), ids("y", 2))

	// The same with the truncation seen for certain before the writes
	// (polls driven by hand).
	path2 := filepath.Join(dir, "audit2.log")
	appendLines(t, path2, ids("b", 10)...)
	clock := newFakeClock()
	c2, stop2 := startWith(t, path2, source.NewMemCheckpoints(nil), clock)
	defer stop2()
	// the file is read at once; then the tailer waits for its first poll
	waitIDs(t, c2, 10)
	poll := clock.waiting(t)
	if err := os.Truncate(path2, 0); err != nil {
		t.Fatal(err)
	}
	poll <- time.Time{}
	poll = clock.waiting(t) // the truncation was handled
	appendLines(t, path2, ids("z", 2)...)
	poll <- time.Time{}
	checkExactly(t, waitIDs(t, c2, 12), ids("b", 10), ids("z", 2))
}

func TestResumeFromCheckpoint(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	st, err := source.OpenStore(filepath.Join(dir, "cp.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	appendLines(t, path, ids("a", 5)...)
	c, stop := start(t, path, st)
	waitIDs(t, c, 5)
	stop()
	// While stopped: more lines, a rotation, and a new file.
	appendLines(t, path, ids("b", 2)...)
	os.Rename(path, path+".1")
	appendLines(t, path, ids("c", 3)...)
	c2, stop2 := start(t, path, st)
	defer stop2()
	checkExactly(t, waitIDs(t, c2, 5), ids("b", 2), ids("c", 3))
}

func TestPartialLineWaits(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	cp := source.NewMemCheckpoints(nil)
	clock := newFakeClock()
	c, stop := startWith(t, path, cp, clock) // the file does not exist yet
	defer stop()
	poll := clock.waiting(t)
	l := line("half")
	os.WriteFile(path, []byte(l[:20]), 0o644)
	// Two polls: the file is opened and its partial line read, then read
	// again with nothing more.
	for range 2 {
		poll <- time.Time{}
		poll = clock.waiting(t)
	}
	if got := c.got(); len(got) != 0 {
		t.Fatalf("emitted a partial line: %v", got)
	}
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(l[20:])
	f.Close()
	poll <- time.Time{}
	checkExactly(t, waitIDs(t, c, 1), []string{"half"})
}

func TestRejectsBadLineKeepsNeighbours(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	os.WriteFile(path, []byte(line("ok1")+"{not json\n"+line("ok2")), 0o644)
	m := source.NewMetrics(nil)
	tl, err := New(Config{Path: path, PollInterval: duration.Duration(10 * time.Millisecond)}, "s", source.JSONLines, source.NewMemCheckpoints(nil), nil, m)
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{cp: source.NewMemCheckpoints(nil)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- tl.Run(ctx, c) }()
	checkExactly(t, waitIDs(t, c, 2), []string{"ok1", "ok2"})
	cancel()
	<-done
	if got := testutil.ToFloat64(m.Rejected.WithLabelValues("s")); got != 1 {
		t.Fatalf("rejected = %v, want 1", got)
	}
}

// TestVaultLogWrittenInPieces writes a real OpenBao audit log into the
// tailed file in uneven pieces (splitting lines and request/response
// pairs) and checks the tail yields exactly the events a one-shot read
// of the whole file yields.
func TestVaultLogWrittenInPieces(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "testdata", "openbao-scenario", "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	parse := source.AuditParser(ingest.DefaultOptions())
	want := map[string]int{}
	rr := parse(bytes.NewReader(raw), "whole")
	for {
		ev, err := rr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err == nil {
			want[ev.ID]++
		}
	}
	if len(want) == 0 {
		t.Fatal("no events in the scenario log")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cp := source.NewMemCheckpoints(nil)
	tl, err := New(Config{Path: path, PollInterval: duration.Duration(5 * time.Millisecond), IdleFlush: duration.Duration(300 * time.Millisecond)}, "vault", parse, cp, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Polls driven by hand: the tailer reads after every fifth piece, so
	// it sees lines and request/response pairs cut anywhere.
	clock := newFakeClock()
	tl.SetClock(clock.now, clock.after)
	c := &collector{cp: cp}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tl.Run(ctx, c) }()
	pieces, polls := 0, 0
	for off, i := 0, 0; off < len(raw); i++ {
		n := 1 + (i*7919)%3000
		if off+n > len(raw) {
			n = len(raw) - off
		}
		if _, err := f.Write(raw[off : off+n]); err != nil {
			t.Fatal(err)
		}
		off += n
		pieces++
		if i%5 == 0 {
			clock.poll(t)
			polls++
		}
	}
	// The whole file is written: a request whose response never came is
	// handed on once the file is idle (past IdleFlush on the clock).
	total := 0
	for _, n := range want {
		total += n
	}
	for i := 0; len(c.got()) < total; i++ {
		if i == 10 {
			t.Fatalf("after 10 idle polls %d events, want %d", len(c.got()), total)
		}
		clock.add(time.Second)
		clock.poll(t)
	}
	// Nothing more comes, idle or not: the tailer has read everything and
	// waits again after each of these polls.
	for range 3 {
		clock.poll(t)
		clock.add(time.Second)
		clock.poll(t)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d pieces read in %d polls", pieces, polls)
	got := c.got()
	counts := map[string]int{}
	for _, id := range got {
		counts[id]++
	}
	for id, n := range want {
		if counts[id] != n {
			t.Errorf("event %s seen %d times, want %d", id, counts[id], n)
		}
	}
	if len(got) != total {
		t.Errorf("got %d events, want %d", len(got), total)
	}
}

// blockingPublisher is a Publisher whose first publish is held (a full
// stream) while the clock moves past IdleFlush and the file grows.
type blockingPublisher struct {
	collector
	clock *fakeClock
	once  sync.Once
	grow  func()
	times map[string][]time.Time
}

func (p *blockingPublisher) Publish(ctx context.Context, b source.Batch) error {
	if len(b.Events) > 0 {
		p.once.Do(func() {
			p.grow()
			p.clock.add(time.Second)
		})
	}
	p.mu.Lock()
	for _, ev := range b.Events {
		p.times[ev.ID] = append(p.times[ev.ID], ev.Time)
	}
	p.mu.Unlock()
	return p.collector.Publish(ctx, b)
}

// A request entry read just before the tailer waits on a full stream is
// paired with its response written meanwhile: the wait is not idle time
// (it was, and the request went on alone, its response after it as a
// second event with the same id, dated by the response).
func TestHandingOnIsNotIdle(t *testing.T) {
	vaultLine := func(typ, id, at string) string {
		return fmt.Sprintf(`{"time":%q,"type":%q,"auth":{"client_token":"hmac-sha256:aa","accessor":"hmac-sha256:bb","display_name":"approle","policies":["default"],"token_type":"service"},"request":{"id":%q,"operation":"read","path":"secret/data/app","remote_address":"10.0.0.7","client_token":"hmac-sha256:aa"}%s}`+"\n",
			at, typ, id, map[bool]string{true: `,"response":{"mount_type":"kv"}`}[typ == "response"])
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	first := vaultLine("request", "first", "2026-11-28T00:00:00.000Z") + vaultLine("response", "first", "2026-11-28T00:00:00.010Z") +
		vaultLine("request", "split", "2026-11-28T00:00:01.000Z")
	if err := os.WriteFile(path, []byte(first), 0o644); err != nil {
		t.Fatal(err)
	}
	cp := source.NewMemCheckpoints(nil)
	tl, err := New(Config{Path: path, PollInterval: duration.Duration(10 * time.Millisecond), IdleFlush: duration.Duration(500 * time.Millisecond)}, "vault", source.AuditParser(ingest.DefaultOptions()), cp, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	clock := newFakeClock()
	tl.SetClock(clock.now, clock.after)
	p := &blockingPublisher{collector: collector{cp: cp}, clock: clock, times: map[string][]time.Time{}, grow: func() {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		if _, err := f.WriteString(vaultLine("response", "split", "2026-11-28T00:00:01.020Z")); err != nil {
			t.Error(err)
		}
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tl.Run(ctx, p) }()
	for i := 0; i < 5; i++ {
		clock.poll(t)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	want := time.Date(2026, 11, 28, 0, 0, 1, 0, time.UTC)
	if got := p.times["split"]; len(got) != 1 || !got[0].Equal(want) {
		t.Fatalf("events of the split request: %v, want one dated by its request (%v); all: %v", got, want, p.ids)
	}
	if got := p.times["first"]; len(got) != 1 {
		t.Fatalf("events of the first request: %v, want one", got)
	}
}
