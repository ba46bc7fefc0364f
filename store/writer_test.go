package store

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"auditwatch/config/duration"
	"auditwatch/schema"
	"auditwatch/store/chtest"
)

// flaky records blocks and fails the first failN inserts after writing
// them (a lost acknowledgement: the rows landed, the caller saw an error).
type flaky struct {
	mu     sync.Mutex
	failN  int
	blocks []string
	rows   map[string]int // token -> rows
	events int
}

func (f *flaky) InsertEvents(_ context.Context, evs []schema.Event) error {
	token := EventsToken(evs)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.blocks = append(f.blocks, token)
	if f.rows == nil {
		f.rows = map[string]int{}
	}
	f.rows[token] = len(evs)
	f.events += len(evs)
	if f.failN > 0 {
		f.failN--
		return errors.New("connection reset")
	}
	return nil
}

func (f *flaky) InsertFindings(context.Context, []schema.Finding) error { return nil }

func TestWriterRetriesSameBlock(t *testing.T) {
	f := &flaky{failN: 2}
	reg := prometheus.NewRegistry()
	w, err := NewWriter(f, BatchConfig{MaxRows: 10, MaxInterval: duration.Duration(time.Hour), RetryBackoff: duration.Duration(time.Millisecond)}, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	evs := chtest.NewGen(1, time.Now().Add(-time.Hour), time.Hour).Events(25)
	ctx := context.Background()
	if err := w.Add(ctx, evs); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// 3 blocks (10, 10, 5); the first was tried three times with one token.
	if len(f.blocks) != 5 || f.blocks[0] != f.blocks[1] || f.blocks[1] != f.blocks[2] || f.blocks[2] == f.blocks[3] {
		t.Fatalf("blocks = %v", f.blocks)
	}
	if f.rows[f.blocks[0]] != 10 || f.rows[f.blocks[4]] != 5 {
		t.Fatalf("block sizes = %v", f.rows)
	}
	if got := testutil.ToFloat64(w.rows.WithLabelValues("events")); got != 25 {
		t.Errorf("rows inserted metric = %v, want 25", got)
	}
	if got := testutil.ToFloat64(w.failures.WithLabelValues("events")); got != 2 {
		t.Errorf("insert failed metric = %v, want 2", got)
	}
	if EventsToken(evs[:10]) != f.blocks[0] {
		t.Error("token is not the deterministic EventsToken of the block")
	}
	if err := w.Add(ctx, evs); !errors.Is(err, ErrWriterClosed) {
		t.Errorf("Add after Close = %v", err)
	}
}

func TestWriterFlushKeepsRowsOnFailure(t *testing.T) {
	f := &flaky{failN: 1 << 30}
	w, err := NewWriter(f, BatchConfig{MaxRows: 100, MaxInterval: duration.Duration(time.Hour), RetryBackoff: duration.Duration(time.Millisecond)}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	evs := chtest.NewGen(2, time.Now(), time.Hour).Events(3)
	ctx := context.Background()
	if err := w.Add(ctx, evs); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := w.Flush(short); err == nil {
		t.Fatal("Flush succeeded while every insert fails")
	}
	f.mu.Lock()
	f.failN = 0
	first := f.blocks[0]
	f.mu.Unlock()
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if last := f.blocks[len(f.blocks)-1]; last != first {
		t.Errorf("retried block has token %s, first try had %s", last, first)
	}
}

func TestWriterFlushesByTime(t *testing.T) {
	f := &flaky{}
	w, err := NewWriter(f, BatchConfig{MaxRows: 1000, MaxInterval: duration.Duration(40 * time.Millisecond), RetryBackoff: duration.Duration(time.Millisecond)}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close(context.Background())
	if err := w.Add(context.Background(), chtest.NewGen(3, time.Now(), time.Hour).Events(7)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		f.mu.Lock()
		n := f.events
		f.mu.Unlock()
		if n == 7 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("rows not flushed by age: %d of 7 written", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWriterSinkIsDurable(t *testing.T) {
	f := &flaky{failN: 1}
	w, err := NewWriter(f, BatchConfig{MaxRows: 1000, MaxInterval: duration.Duration(time.Hour), RetryBackoff: duration.Duration(time.Millisecond)}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close(context.Background())
	if err := w.WriteEvents(context.Background(), chtest.NewGen(4, time.Now(), time.Hour).Events(5)); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.blocks) != 2 || f.blocks[0] != f.blocks[1] || f.events != 10 {
		t.Errorf("WriteEvents returned before the block was stored: blocks %v, rows tried %d", f.blocks, f.events)
	}
}

// gated is an Inserter whose event inserts wait until the test opens the
// gate (a store stalled by merges), recording each block's size.
type gated struct {
	mu     sync.Mutex
	gate   chan struct{}
	blocks []int
	fs     int
}

func (g *gated) InsertEvents(ctx context.Context, evs []schema.Event) error {
	select {
	case <-g.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	g.mu.Lock()
	g.blocks = append(g.blocks, len(evs))
	g.mu.Unlock()
	return nil
}

func (g *gated) InsertFindings(_ context.Context, fs []schema.Finding) error {
	g.mu.Lock()
	g.fs += len(fs)
	g.mu.Unlock()
	return nil
}

// TestWriterSubmitQueuesAndCoalesces: Submit returns while the store is
// stalled; each submission's done runs only once its rows (and every row
// before them) are written, in submission order; what queued while a
// block was being written goes into one block.
func TestWriterSubmitQueuesAndCoalesces(t *testing.T) {
	g := &gated{gate: make(chan struct{})}
	w, err := NewWriter(g, BatchConfig{MaxRows: 1000, MaxInterval: duration.Duration(time.Millisecond), RetryBackoff: duration.Duration(time.Millisecond)}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	gen := chtest.NewGen(1, time.Now().Add(-time.Hour), time.Hour)
	var mu sync.Mutex
	var acked []int
	ack := func(i int) func() {
		return func() { mu.Lock(); acked = append(acked, i); mu.Unlock() }
	}
	if err := w.Submit(ctx, gen.Events(10), nil, ack(0)); err != nil {
		t.Fatal(err)
	}
	// The loop takes the first submission into a block, which waits at
	// the gate; the next three queue behind it.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		w.mu.Lock()
		taken := len(w.evs) == 0
		w.mu.Unlock()
		if taken {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the writer's loop never took the first submission")
		}
	}
	for i := 1; i <= 3; i++ {
		if err := w.Submit(ctx, gen.Events(10), []schema.Finding{{ID: "f"}}, ack(i)); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	if len(acked) != 0 {
		t.Errorf("acknowledged %v while the store wrote nothing", acked)
	}
	mu.Unlock()
	close(g.gate)
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if len(acked) != 4 || acked[0] != 0 || acked[1] != 1 || acked[2] != 2 || acked[3] != 3 {
		t.Errorf("acknowledged %v, want [0 1 2 3]", acked)
	}
	if len(g.blocks) != 2 || g.blocks[0] != 10 || g.blocks[1] != 30 {
		t.Errorf("blocks %v, want [10 30]: what queued behind the stalled block is one block", g.blocks)
	}
	if g.fs != 3 {
		t.Errorf("%d findings stored, want 3", g.fs)
	}
}

// TestWriterFindingsDoNotWaitForEvents: queued findings are written on
// their own within moments, while the queued events wait for MaxInterval
// (or Close) to make one larger block.
func TestWriterFindingsDoNotWaitForEvents(t *testing.T) {
	g := &gated{gate: make(chan struct{})}
	close(g.gate)
	w, err := NewWriter(g, BatchConfig{MaxRows: 1000, MaxInterval: duration.Duration(time.Hour), RetryBackoff: duration.Duration(time.Millisecond)}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	gen := chtest.NewGen(1, time.Now().Add(-time.Hour), time.Hour)
	if err := w.Submit(ctx, gen.Events(10), nil, nil); err != nil {
		t.Fatal(err)
	}
	acked := make(chan struct{})
	if err := w.Submit(ctx, gen.Events(10), []schema.Finding{{ID: "f1"}, {ID: "f2"}}, func() { close(acked) }); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		g.mu.Lock()
		fs, blocks := g.fs, len(g.blocks)
		g.mu.Unlock()
		if fs == 2 {
			if blocks != 0 {
				t.Errorf("%d event blocks written before MaxInterval", blocks)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("findings not written on their own")
		}
	}
	select {
	case <-acked:
		t.Error("acknowledged before the events submitted with the findings were stored")
	default:
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	<-acked
	if len(g.blocks) != 1 || g.blocks[0] != 20 {
		t.Errorf("event blocks %v, want one of 20", g.blocks)
	}
}
