package stream

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"auditwatch/schema"
)

// recHandler records what it is given and commits on demand.
type recHandler struct {
	mu      sync.Mutex
	got     []Record
	commit  func(context.Context, int, int64) error
	revoked int
	autoAck bool
}

func (h *recHandler) Assigned(_ context.Context, a Assignment) (map[int]int64, error) {
	h.mu.Lock()
	h.commit = a.Commit
	h.mu.Unlock()
	return nil, nil
}

func (h *recHandler) Handle(ctx context.Context, p int, recs []Record) error {
	h.mu.Lock()
	h.got = append(h.got, recs...)
	n := len(h.got)
	auto := h.autoAck
	h.mu.Unlock()
	if auto && len(recs) > 0 {
		return h.commit(ctx, p, recs[len(recs)-1].Offset+1)
	}
	_ = n
	return nil
}

func (h *recHandler) Revoked(context.Context, []int) error {
	h.mu.Lock()
	h.revoked++
	h.mu.Unlock()
	return nil
}

func (h *recHandler) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.got)
}

func evRecs(ids ...string) []Record {
	out := make([]Record, len(ids))
	for i, id := range ids {
		out[i] = Record{Key: "p", Event: &schema.Event{ID: id}}
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestEmbeddedAckAfterCommit(t *testing.T) {
	e, err := NewEmbedded(EmbeddedConfig{QueueSize: 16}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx, cancel := context.WithCancel(context.Background())
	h := &recHandler{}
	errc := make(chan error, 1)
	go func() { errc <- e.Consume(ctx, "events", "g", h) }()

	var mu sync.Mutex
	var acks []string
	ack := func(name string) func(error) {
		return func(err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				acks = append(acks, name+":"+err.Error())
				return
			}
			acks = append(acks, name)
		}
	}
	if err := e.Publish(ctx, "events", evRecs("a1", "a2"), ack("A")); err != nil {
		t.Fatal(err)
	}
	if err := e.Publish(ctx, "events", evRecs("b1", "b2", "b3"), ack("B")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "5 records", func() bool { return h.count() == 5 })
	mu.Lock()
	if len(acks) != 0 {
		t.Fatalf("acked before commit: %v", acks)
	}
	mu.Unlock()
	// Commit through the first record of B: A done, B not yet.
	if err := h.commit(ctx, 0, 3); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if len(acks) != 1 || acks[0] != "A" {
		t.Fatalf("acks after commit(3) = %v, want [A]", acks)
	}
	mu.Unlock()
	if err := h.commit(ctx, 0, 5); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if len(acks) != 2 || acks[1] != "B" {
		t.Fatalf("acks after commit(5) = %v, want [A B]", acks)
	}
	mu.Unlock()
	for i, r := range h.got {
		if r.Offset != int64(i) {
			t.Fatalf("record %d has offset %d", i, r.Offset)
		}
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if h.revoked != 1 {
		t.Fatalf("revoked %d times", h.revoked)
	}
}

func TestEmbeddedBackPressure(t *testing.T) {
	reg := prometheus.NewRegistry()
	e, err := NewEmbedded(EmbeddedConfig{QueueSize: 4}, reg)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()
	// No consumer: the fifth record must block.
	if err := e.Publish(ctx, "events", evRecs("1", "2", "3", "4"), nil); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(e.depth.WithLabelValues("events")); got != 4 {
		t.Fatalf("queue depth = %v, want 4", got)
	}
	tctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	var doneErr error
	err = e.Publish(tctx, "events", evRecs("5"), func(err error) { doneErr = err })
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(doneErr, context.DeadlineExceeded) {
		t.Fatalf("publish into a full queue = %v (done %v), want deadline exceeded", err, doneErr)
	}
	// A consumer drains it and the blocked producer proceeds.
	cctx, ccancel := context.WithCancel(ctx)
	defer ccancel()
	h := &recHandler{autoAck: true}
	go e.Consume(cctx, "events", "g", h)
	acked := make(chan error, 1)
	if err := e.Publish(ctx, "events", evRecs("5", "6", "7", "8", "9", "10"), func(err error) { acked <- err }); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-acked:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no ack")
	}
	if h.count() != 10 {
		t.Fatalf("consumed %d, want 10", h.count())
	}
}

func TestEmbeddedCloseFailsPending(t *testing.T) {
	e, err := NewEmbedded(EmbeddedConfig{QueueSize: 4}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	if err := e.Publish(context.Background(), "t", evRecs("1"), func(err error) { got <- err }); err != nil {
		t.Fatal(err)
	}
	e.Close()
	if err := <-got; !errors.Is(err, ErrClosed) {
		t.Fatalf("done = %v, want ErrClosed", err)
	}
	if err := e.Publish(context.Background(), "t", evRecs("2"), nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("publish after close = %v", err)
	}
}

func TestEmbeddedOneConsumer(t *testing.T) {
	e, _ := NewEmbedded(EmbeddedConfig{QueueSize: 4}, nil)
	defer e.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := &recHandler{}
	go e.Consume(ctx, "t", "g", h)
	waitFor(t, "consumer", func() bool { h.mu.Lock(); defer h.mu.Unlock(); return h.commit != nil })
	if err := e.Consume(ctx, "t", "g", &recHandler{}); err == nil {
		t.Fatal("second consumer accepted")
	}
}
