package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// A broker that answers fetches late (loaded, or far away) still delivers
// every record. kafka-go's partition reader gives a fetch response only
// min(1 s, MaxWait/4) beyond the time it asks the broker to hold the
// fetch; a later answer is an i/o timeout, on which it reconnects and
// fetches the same offset again, logging nothing and reporting no lag.
// With the reader's old 100 ms MaxWait (25 ms of slack) every fetch of
// this test timed out and no record was ever handled: the e2e stall.
func TestKafkaSlowBrokerStillDelivers(t *testing.T) {
	const records = 600
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "events"), kfake.ListenFn(loopbackListen))
	if err != nil {
		t.Fatalf("kfake cluster: %v", err)
	}
	t.Cleanup(c.Close)
	brokers := c.ListenAddrs()
	k := testKafka(t, brokers)
	publishN(t, k, "events", "slow", records)

	// Every fetch is answered 300 ms after it arrives (on top of any hold).
	delayFetches(t, c, 300*time.Millisecond)

	h := &gapHandler{offs: map[int][]int64{}}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- k.Consume(ctx, "events", "detect", h) }()
	// A guard only: the records arrive within a few fetches.
	guard := time.Now().Add(60 * time.Second)
	for h.n.Load() < records && time.Now().Before(guard) {
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if n := h.n.Load(); n != records {
		t.Fatalf("handled %d of %d records through a broker answering fetches 300 ms late", n, records)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for p, offs := range h.offs {
		for i, o := range offs {
			if o != int64(i) {
				t.Fatalf("partition %d: record %d has offset %d", p, i, o)
			}
		}
	}
	if got := fmt.Sprint(len(h.offs)); got != "3" {
		t.Fatalf("records on %s partitions, want 3", got)
	}
}

// Every reader error is counted; the log gets the first and then at most
// one per readErrLogEvery, with the number left out.
func TestReaderErrorsCountedLogRateLimited(t *testing.T) {
	var logs strings.Builder
	cfg := Config{Type: TypeKafka, Kafka: KafkaConfig{Brokers: []string{"127.0.0.1:1"}}}
	cfg.SetDefaults()
	k, err := NewKafka(cfg.Kafka, slog.New(slog.NewTextHandler(&logs, nil)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	e := &readerErrors{k: k, topic: "events", p: 2}
	for i := range 100 {
		e.Printf("the kafka reader got an unknown error reading partition %d of %s at offset %d: %s", 2, "events", i, "i/o timeout")
	}
	if n := testutil.ToFloat64(k.readErrors.WithLabelValues("events")); n != 100 {
		t.Fatalf("counted %v errors, want 100", n)
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "offset 0: i/o timeout") || !strings.Contains(lines[0], "partition=2") {
		t.Fatalf("logged %d lines, want the first error only:\n%s", len(lines), logs.String())
	}
	// Errors while the reader is being stopped (its connections cut on
	// purpose) are neither counted nor logged.
	e.stopping.Store(true)
	e.Printf("the kafka reader got an unknown error: %s", "use of closed network connection")
	if n := testutil.ToFloat64(k.readErrors.WithLabelValues("events")); n != 100 {
		t.Fatalf("counted %v errors after stopping, want 100", n)
	}
}

// The lag gauge of a reader that stopped receiving follows the broker's
// end offset instead of keeping the value of its last record.
func TestKafkaLagShowsAStalledReader(t *testing.T) {
	old := readLagEvery
	readLagEvery = 200 * time.Millisecond
	t.Cleanup(func() { readLagEvery = old })
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "events"), kfake.ListenFn(loopbackListen))
	if err != nil {
		t.Fatalf("kfake cluster: %v", err)
	}
	t.Cleanup(c.Close)
	k := testKafka(t, c.ListenAddrs())
	publishN(t, k, "events", "a", 30)

	h := &gapHandler{offs: map[int][]int64{}}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- k.Consume(ctx, "events", "detect", h) }()
	waitFor(t, "30 records", func() bool { return h.n.Load() >= 30 })

	// From now on no fetch is answered (until the test ends).
	release := make(chan struct{})
	var sleeping sync.WaitGroup
	var mu sync.Mutex
	stalled := true
	t.Cleanup(func() {
		mu.Lock()
		stalled = false
		mu.Unlock()
		close(release)
		sleeping.Wait()
	})
	c.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		mu.Lock()
		if !stalled {
			mu.Unlock()
			return nil, nil, false
		}
		sleeping.Add(1)
		mu.Unlock()
		defer sleeping.Done()
		c.SleepControl(func() { <-release })
		return nil, nil, false
	})
	publishN(t, k, "events", "b", 50)
	lag := func() float64 {
		var sum float64
		for p := range 3 {
			sum += testutil.ToFloat64(k.lag.WithLabelValues("events", "detect", fmt.Sprint(p)))
		}
		return sum
	}
	guard := time.Now().Add(30 * time.Second) // a guard only
	for lag() != 50 && time.Now().Before(guard) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := lag(); got != 50 {
		t.Fatalf("lag gauges sum to %v with 50 records not received", got)
	}
	if n := h.n.Load(); n != 30 {
		t.Fatalf("handled %d records while no fetch was answered, want 30", n)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// The library behaviour behind TestKafkaSlowBrokerStillDelivers, on
// kafka-go's Reader alone: with MaxWait 100 ms it asks the broker to hold a
// fetch 75 ms and gives up reading the answer 100 ms after sending it. A
// broker answering 300 ms late is never read: the reader reconnects and
// asks for the same offset again and again, returns no message and no
// error.
func TestKafkaGoReaderDropsLateFetchAnswers(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "events"), kfake.ListenFn(loopbackListen))
	if err != nil {
		t.Fatalf("kfake cluster: %v", err)
	}
	t.Cleanup(c.Close)
	brokers := c.ListenAddrs()
	publishN(t, testKafka(t, brokers), "events", "late", 10)
	delayFetches(t, c, 300*time.Millisecond)

	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: "events", Partition: 0, MinBytes: 1, MaxBytes: 1 << 20,
		MaxWait: 100 * time.Millisecond})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	m, err := r.FetchMessage(ctx)
	if err == nil {
		t.Fatalf("kafka-go read offset %d through fetch answers 300 ms late with MaxWait 100 ms: the library changed, revisit readMaxWait", m.Offset)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("FetchMessage: %v, want only our deadline", err)
	}
	if st := r.Stats(); st.Dials < 2 {
		t.Fatalf("reader dialled %d times in 3 s, want a reconnect after each late answer", st.Dials)
	}
}

// delayFetches makes c answer every fetch d after it arrives (on top of any
// hold) until the test ends; the delays end, and the last ones finish,
// before the cluster closes (kfake leaves a control sleeping at Close
// behind).
func delayFetches(t *testing.T, c *kfake.Cluster, d time.Duration) {
	var (
		mu       sync.Mutex
		slow     = true
		sleeping sync.WaitGroup
	)
	t.Cleanup(func() {
		mu.Lock()
		slow = false
		mu.Unlock()
		sleeping.Wait()
	})
	c.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		mu.Lock()
		if !slow {
			mu.Unlock()
			return nil, nil, false
		}
		sleeping.Add(1)
		mu.Unlock()
		defer sleeping.Done()
		c.SleepControl(func() { time.Sleep(d) })
		return nil, nil, false
	})
}
