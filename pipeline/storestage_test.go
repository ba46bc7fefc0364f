package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"auditwatch/schema"
	"auditwatch/stream"
)

// heldStore is a StoreSink that takes every submission and acknowledges
// only when told (a stalled store).
type heldStore struct {
	mu      sync.Mutex
	subs    []heldSub
	flushes int
	flushOK bool
}

type heldSub struct {
	evs  []schema.Event
	fs   []schema.Finding
	done func()
}

func (h *heldStore) Submit(_ context.Context, evs []schema.Event, fs []schema.Finding, done func()) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.subs = append(h.subs, heldSub{evs, fs, done})
	return nil
}

// release acknowledges the first n submissions not yet acknowledged.
func (h *heldStore) release(n int) {
	h.mu.Lock()
	var due []func()
	for i := range h.subs {
		if h.subs[i].done != nil && n > 0 {
			due = append(due, h.subs[i].done)
			h.subs[i].done = nil
			n--
		}
	}
	h.mu.Unlock()
	for _, d := range due {
		d()
	}
}

func (h *heldStore) Flush(context.Context) error {
	h.mu.Lock()
	h.flushes++
	ok := h.flushOK
	h.mu.Unlock()
	if !ok {
		return fmt.Errorf("store stalled")
	}
	h.release(1 << 30)
	return nil
}

func (h *heldStore) rows() (evs []string, fs []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range h.subs {
		for _, e := range s.evs {
			evs = append(evs, e.ID)
		}
		for _, f := range s.fs {
			fs = append(fs, f.ID)
		}
	}
	return evs, fs
}

type commitLog struct {
	mu  sync.Mutex
	got []string
}

func (c *commitLog) commit(_ context.Context, p int, next int64) error {
	c.mu.Lock()
	c.got = append(c.got, fmt.Sprintf("%d@%d", p, next))
	c.mu.Unlock()
	return nil
}

func (c *commitLog) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.got, " ")
}

// TestStoreStageCommitsOnlyWhatTheStoreAcknowledged: the store consumer
// hands every batch to the store and reads on while the store holds them;
// it commits a partition's offset only up to the last batch the store
// acknowledged, and when a stalled store cannot flush at revoke it commits
// no further (the rest is read and stored again by the next owner).
func TestStoreStageCommitsOnlyWhatTheStoreAcknowledged(t *testing.T) {
	st := &heldStore{}
	reg := prometheus.NewRegistry()
	s, err := NewStoreStage(StoreStageConfig{Store: st, Topic: "events", CommitInterval: time.Nanosecond, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	var commits commitLog
	ctx := t.Context()
	if _, err := s.Assigned(ctx, stream.Assignment{Topic: "events", Committed: map[int]int64{0: -1, 1: 7}, Commit: commits.commit}); err != nil {
		t.Fatal(err)
	}
	ev := func(id string, off int64) stream.Record {
		return stream.Record{Event: &schema.Event{ID: id}, Offset: off}
	}
	// Three batches on partition 0 (one with a note, which is not stored,
	// and one position-only record), one finding batch on partition 1.
	batches := [][]stream.Record{
		{ev("a", 0), ev("b", 1)},
		{{Event: &schema.Event{ID: "note"}, Note: true, Offset: 2}, ev("c", 3), {Offset: 4}},
		{ev("d", 5)},
	}
	for _, b := range batches {
		if err := s.Handle(ctx, 0, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Handle(ctx, 1, []stream.Record{{Finding: &schema.Finding{ID: "f1"}, Offset: 7}}); err != nil {
		t.Fatal(err)
	}
	evs, fs := st.rows()
	if got := strings.Join(evs, ","); got != "a,b,c,d" {
		t.Errorf("events handed to the store = %s, want a,b,c,d (a note is not stored)", got)
	}
	if got := strings.Join(fs, ","); got != "f1" {
		t.Errorf("findings handed to the store = %s", got)
	}
	if c := commits.String(); c != "" {
		t.Fatalf("committed %q before the store acknowledged anything", c)
	}
	if v := testutil.ToFloat64(s.pending); v != 5 {
		t.Errorf("pending gauge = %v, want 5", v)
	}
	var status bytes.Buffer
	s.WriteStatus(&status)
	if !strings.Contains(status.String(), "store events: partitions 2, records waiting for the store 5, oldest ") {
		t.Errorf("status = %q", status.String())
	}

	// The store acknowledges the first batch: the next call (idle) commits
	// the offset after it, not after what was only submitted.
	st.release(1)
	if err := s.Handle(ctx, 0, nil); err != nil {
		t.Fatal(err)
	}
	if c := commits.String(); c != "0@2" {
		t.Fatalf("commits = %q, want 0@2", c)
	}
	st.release(1) // the second partition-0 batch (offsets 2-4)
	if err := s.Handle(ctx, 0, nil); err != nil {
		t.Fatal(err)
	}
	if c := commits.String(); c != "0@2 0@5" {
		t.Fatalf("commits = %q, want 0@2 0@5", c)
	}
	// Revoked while the store is stalled: the flush fails, the offset
	// stays at what was acknowledged (d, offset 5, is read again).
	if err := s.Revoked(ctx, []int{0}); err != nil {
		t.Fatal(err)
	}
	if c := commits.String(); c != "0@2 0@5" {
		t.Fatalf("after a revoke with a stalled store commits = %q, want no more", c)
	}
	// Revoked once the store recovers: flushed, then committed.
	st.mu.Lock()
	st.flushOK = true
	st.mu.Unlock()
	if err := s.Revoked(ctx, []int{1}); err != nil {
		t.Fatal(err)
	}
	if c := commits.String(); c != "0@2 0@5 1@8" {
		t.Fatalf("commits = %q, want 0@2 0@5 1@8", c)
	}
	if v := testutil.ToFloat64(s.pending); v != 0 {
		t.Errorf("pending gauge after revoking every partition = %v", v)
	}
	if v := testutil.ToFloat64(s.stored); v != 5 {
		t.Errorf("stored counter = %v, want 5 (a, b, c, d and f1 acknowledged)", v)
	}
}
