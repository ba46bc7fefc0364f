package stream

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kfake"

	"auditwatch/config/duration"
	"auditwatch/schema"
)

// NewTestCluster starts an in-process Kafka (kfake) on loopback with the
// given topics. kfake is a Go library, so it is always present; the
// helper still follows the project's integration rule in case it fails.
func newTestCluster(t testing.TB, partitions int32, topics ...string) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topics...), kfake.ListenFn(loopbackListen))
	if err != nil {
		if os.Getenv("AUDITWATCH_REQUIRE_INTEGRATION") != "" {
			t.Fatalf("kfake cluster: %v", err)
		}
		t.Skipf("kfake cluster could not start: %v", err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

func testKafka(t testing.TB, brokers []string) *Kafka {
	t.Helper()
	cfg := Config{Type: TypeKafka, Kafka: KafkaConfig{Brokers: brokers}}
	cfg.SetDefaults()
	cfg.Kafka.BatchTimeout = duration.Duration(2 * time.Millisecond)
	k, err := NewKafka(cfg.Kafka, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

// commitHandler commits after every batch and records what it saw.
type commitHandler struct {
	mu     sync.Mutex
	commit func(context.Context, int, int64) error
	byKey  map[string]int
	order  map[int][]int64
	ids    []string
}

func newCommitHandler() *commitHandler {
	return &commitHandler{byKey: map[string]int{}, order: map[int][]int64{}}
}

func (h *commitHandler) Assigned(_ context.Context, a Assignment) (map[int]int64, error) {
	h.mu.Lock()
	h.commit = a.Commit
	h.mu.Unlock()
	return nil, nil
}

func (h *commitHandler) Handle(ctx context.Context, p int, recs []Record) error {
	if len(recs) == 0 {
		return nil
	}
	h.mu.Lock()
	for _, r := range recs {
		if r.Event == nil {
			h.mu.Unlock()
			return fmt.Errorf("record %d/%d has no event", p, r.Offset)
		}
		if q, ok := h.byKey[r.Key]; ok && q != p {
			h.mu.Unlock()
			return fmt.Errorf("key %s on partitions %d and %d", r.Key, q, p)
		}
		h.byKey[r.Key] = p
		h.order[p] = append(h.order[p], r.Offset)
		h.ids = append(h.ids, r.Event.ID)
	}
	commit := h.commit
	h.mu.Unlock()
	return commit(ctx, p, recs[len(recs)-1].Offset+1)
}

func (h *commitHandler) Revoked(context.Context, []int) error { return nil }

func (h *commitHandler) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.ids)
}

func publishN(t *testing.T, k *Kafka, topic, prefix string, n int) {
	t.Helper()
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = Record{Key: fmt.Sprintf("principal-%d", i%20), Event: &schema.Event{ID: fmt.Sprintf("%s-%d", prefix, i), Principal: fmt.Sprintf("principal-%d", i%20)}}
	}
	acked := make(chan error, 2)
	if err := k.Publish(context.Background(), topic, recs, func(err error) { acked <- err }); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-acked:
		if err != nil {
			t.Fatalf("done: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("publish never acknowledged")
	}
	select {
	case <-acked:
		t.Fatal("done called twice")
	case <-time.After(20 * time.Millisecond):
	}
}

func TestKafkaPublishConsumeCommit(t *testing.T) {
	brokers := newTestCluster(t, 4, "events")
	k := testKafka(t, brokers)
	publishN(t, k, "events", "a", 1000)

	h := newCommitHandler()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- k.Consume(ctx, "events", "detect", h) }()
	waitFor(t, "1000 records", func() bool { return h.count() >= 1000 })
	// The only member reads every partition of the topic; the gauges
	// that show partitions no live member reads say so.
	if n := testutil.ToFloat64(k.partsRead.WithLabelValues("events", "detect")); n != 4 {
		t.Errorf("partitions read %v, want 4", n)
	}
	if n := testutil.ToFloat64(k.topicParts.WithLabelValues("events")); n != 4 {
		t.Errorf("topic partitions %v, want 4", n)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if n := testutil.ToFloat64(k.partsRead.WithLabelValues("events", "detect")); n != 0 {
		t.Errorf("partitions read after the member left %v, want 0", n)
	}
	if h.count() != 1000 {
		t.Fatalf("consumed %d, want 1000", h.count())
	}
	if len(h.order) < 2 {
		t.Fatalf("records used %d partitions, want several", len(h.order))
	}
	for p, offs := range h.order {
		for i := 1; i < len(offs); i++ {
			if offs[i] != offs[i-1]+1 {
				t.Fatalf("partition %d out of order at %d: %v", p, i, offs[i-1:i+1])
			}
		}
	}

	// A new member of the group starts after the committed offsets. The
	// new records use every key of the old ones, so each partition that
	// holds old records gets new ones after them: an old record consumed
	// again would arrive before the last new one (no waiting for extras).
	publishN(t, k, "events", "b", 20)
	h2 := newCommitHandler()
	ctx2, cancel2 := context.WithCancel(context.Background())
	go func() { errc <- k.Consume(ctx2, "events", "detect", h2) }()
	waitFor(t, "20 new records", func() bool { return h2.count() >= 20 })
	cancel2()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	for p := range h.order {
		if len(h2.order[p]) == 0 {
			t.Fatalf("no new record on partition %d: the check below would not cover it", p)
		}
	}
	if h2.count() != 20 {
		t.Fatalf("after restart consumed %d, want the 20 new ones: %v", h2.count(), h2.ids)
	}
	for _, id := range h2.ids {
		if id[0] != 'b' {
			t.Fatalf("re-consumed committed record %s", id)
		}
	}
}

func TestKafkaFindingsRoundTrip(t *testing.T) {
	brokers := newTestCluster(t, 1, "findings")
	k := testKafka(t, brokers)
	f := schema.Finding{ID: "f1", Detector: schema.DetectorPrivilegedUse, Severity: schema.SeverityHigh, Principal: "root", Count: 1, Time: time.Unix(1700000000, 0).UTC()}
	if err := k.Publish(context.Background(), "findings", []Record{{Key: "k", Finding: &f}}, nil); err != nil {
		t.Fatal(err)
	}
	got := make(chan schema.Finding, 1)
	h := handlerFunc(func(ctx context.Context, p int, recs []Record) error {
		for _, r := range recs {
			if r.Finding != nil {
				got <- *r.Finding
			}
		}
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go k.Consume(ctx, "findings", "alert", h)
	select {
	case g := <-got:
		if g.ID != f.ID || g.Detector != f.Detector || !g.Time.Equal(f.Time) {
			t.Fatalf("got %+v", g)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no finding consumed")
	}
}

type handlerFunc func(ctx context.Context, p int, recs []Record) error

func (f handlerFunc) Assigned(context.Context, Assignment) (map[int]int64, error) { return nil, nil }
func (f handlerFunc) Handle(ctx context.Context, p int, recs []Record) error      { return f(ctx, p, recs) }
func (f handlerFunc) Revoked(context.Context, []int) error                        { return nil }

// noteHandler records which partitions saw which records and whether
// they came as notes.
type noteHandler struct {
	commitHandler
	notes map[string]map[int]bool // event id -> partitions it reached as a note
	plain map[string]int          // event id -> plain deliveries
}

func (h *noteHandler) Handle(ctx context.Context, p int, recs []Record) error {
	h.mu.Lock()
	for _, r := range recs {
		if r.Event == nil {
			continue
		}
		if r.Note {
			if h.notes[r.Event.ID] == nil {
				h.notes[r.Event.ID] = map[int]bool{}
			}
			h.notes[r.Event.ID][p] = true
		} else {
			h.plain[r.Event.ID]++
		}
	}
	commit := h.commit
	h.mu.Unlock()
	if len(recs) == 0 {
		return nil
	}
	return commit(ctx, p, recs[len(recs)-1].Offset+1)
}

// A note reaches every partition of the topic, marked as a note; the
// other records go by their key's hash, once.
func TestKafkaNoteReachesEveryPartition(t *testing.T) {
	brokers := newTestCluster(t, 4, "events")
	k := testKafka(t, brokers)
	ev := schema.Event{ID: "write-1", Time: time.Now().UTC(), Source: schema.SourceCloudTrail, Principal: "writer", Action: "secretsmanager:PutSecretValue"}
	other := schema.Event{ID: "read-1", Time: time.Now().UTC(), Source: schema.SourceCloudTrail, Principal: "reader", Action: "secretsmanager:GetSecretValue"}
	done := make(chan error, 1)
	recs := []Record{{Key: "writer", Event: &ev}, {Key: "writer", Event: &ev, Note: true}, {Key: "reader", Event: &other}}
	if err := k.Publish(context.Background(), "events", recs, func(err error) { done <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	h := &noteHandler{commitHandler: *newCommitHandler(), notes: map[string]map[int]bool{}, plain: map[string]int{}}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- k.Consume(ctx, "events", "detect", h) }()
	waitFor(t, "a note on each of 4 partitions", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.notes["write-1"]) == 4 && h.plain["write-1"] == 1 && h.plain["read-1"] == 1
	})
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if len(h.notes["read-1"]) != 0 || h.plain["write-1"] != 1 {
		t.Fatalf("notes %v, plain %v", h.notes, h.plain)
	}
}
