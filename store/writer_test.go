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
