package stream

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"

	"auditwatch/schema"
)

// gapHandler records every offset each partition delivered.
type gapHandler struct {
	mu     sync.Mutex
	commit func(context.Context, int, int64) error
	offs   map[int][]int64
	n      atomic.Int64
}

func (h *gapHandler) Assigned(_ context.Context, a Assignment) (map[int]int64, error) {
	h.mu.Lock()
	h.commit = a.Commit
	h.mu.Unlock()
	return nil, nil
}

func (h *gapHandler) Handle(ctx context.Context, p int, recs []Record) error {
	if len(recs) == 0 {
		return nil
	}
	h.mu.Lock()
	for _, r := range recs {
		h.offs[p] = append(h.offs[p], r.Offset)
	}
	commit := h.commit
	h.mu.Unlock()
	h.n.Add(int64(len(recs)))
	return commit(ctx, p, recs[len(recs)-1].Offset+1)
}

func (h *gapHandler) Revoked(context.Context, []int) error { return nil }

// gaps lists, per partition, the offsets below end never delivered.
func (h *gapHandler) gaps(end map[int]int64) map[int][]int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[int][]int64{}
	for p, e := range end {
		seen := make(map[int64]bool, len(h.offs[p]))
		for _, o := range h.offs[p] {
			seen[o] = true
		}
		for o := int64(0); o < e; o++ {
			if !seen[o] {
				out[p] = append(out[p], o)
			}
		}
	}
	return out
}

// TestKafkaNoGapWhileProducing produces the ingest stage's traffic shape
// (many small asynchronous Publish calls, some records as notes copied to
// every partition) while a consumer group joins and reads, and checks that
// the broker holds exactly what was acknowledged and that every offset of
// every partition is handed to the handler, in order.
func TestKafkaNoGapWhileProducing(t *testing.T) {
	const (
		parts  = 3
		events = 12000
		per    = 40 // events per Publish call
	)
	brokers := newTestCluster(t, parts, "events")
	prod := testKafka(t, brokers)
	cons := testKafka(t, brokers)

	h := &gapHandler{offs: map[int][]int64{}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	var produced atomic.Int64
	var pubErr atomic.Value
	var acks sync.WaitGroup
	started := false
	for i := 0; i < events; i += per {
		recs := make([]Record, 0, per+1)
		for j := i; j < i+per && j < events; j++ {
			ev := &schema.Event{ID: fmt.Sprintf("e-%d", j), Principal: fmt.Sprintf("principal-%d", j%37)}
			recs = append(recs, Record{Key: ev.Principal, Event: ev})
			if j%700 == 0 {
				recs = append(recs, Record{Key: ev.Principal, Event: ev, Note: true})
			}
		}
		acks.Add(1)
		if err := prod.Publish(ctx, "events", recs, func(err error) {
			if err != nil {
				pubErr.Store(err)
			}
			acks.Done()
		}); err != nil {
			t.Fatal(err)
		}
		if !started && i >= events/8 {
			started = true
			go func() { errc <- cons.Consume(ctx, "events", "detect", h) }()
		}
	}
	acks.Wait()
	if err, ok := pubErr.Load().(error); ok {
		t.Fatal(err)
	}
	produced.Store(int64(testutilSum(prod, "events")))

	// What the broker holds.
	end := map[int]int64{}
	var total int64
	for p := range parts {
		c, err := kafka.DialLeader(context.Background(), "tcp", brokers[0], "events", p)
		if err != nil {
			t.Fatal(err)
		}
		first, last, err := c.ReadOffsets()
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		if first != 0 {
			t.Fatalf("partition %d starts at %d", p, first)
		}
		end[p] = last
		total += last
	}
	if total != produced.Load() {
		t.Fatalf("broker holds %d records, producer acknowledged %d", total, produced.Load())
	}
	// Wait for the consumer to reach the end, or to stop making progress.
	last, since := int64(-1), time.Now()
	for h.n.Load() < total && time.Since(since) < 15*time.Second {
		if n := h.n.Load(); n != last {
			last, since = n, time.Now()
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if g := h.gaps(end); len(g) > 0 {
		for p, offs := range g {
			t.Errorf("partition %d (end %d): %d offsets never handled, first %v", p, end[p], len(offs), offs[:min(len(offs), 20)])
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for p, offs := range h.offs {
		if !slices.IsSorted(offs) {
			t.Errorf("partition %d handed out of order", p)
		}
	}
	t.Logf("%d records produced, %d handled", total, h.n.Load())
}

func testutilSum(k *Kafka, topic string) float64 {
	return testutil.ToFloat64(k.produced.WithLabelValues(topic))
}
