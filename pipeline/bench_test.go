package pipeline

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"auditwatch/config/duration"
	"auditwatch/detect"
	"auditwatch/detect/state"
	"auditwatch/gen"
	"auditwatch/ingest"
	"auditwatch/ingest/source"
	"auditwatch/internal/kafkatest"
	"auditwatch/schema"
	"auditwatch/stream"
)

const benchEvents = 200_000

// kafkaBenchPartitions is the events topic's partition count in the Kafka
// benchmarks: kafka-go writes one batch at a time per partition, so
// partitions are the producer's parallelism.
const kafkaBenchPartitions = 8

var (
	benchOnce  sync.Once
	benchRaw   []byte
	benchLearn time.Time
	benchErr   error
)

// benchInput is a generated mixed CloudTrail and Vault/OpenBao stream of
// 200,000 client requests with anomalies, made once per test binary.
func benchInput(b *testing.B) ([]byte, time.Time) {
	benchOnce.Do(func() {
		g, err := gen.New(gen.Config{Events: benchEvents, Anomalies: true, CloudTrailShare: 0.5}.Defaults())
		if err != nil {
			benchErr = err
			return
		}
		var buf bytes.Buffer
		if _, err := g.Run(context.Background(), gen.Output{Combined: &buf}); err != nil {
			benchErr = err
			return
		}
		benchRaw, benchLearn = buf.Bytes(), g.LearningEnd()
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchRaw, benchLearn
}

// readSource parses raw like a source does and publishes batches of 512.
func readSource(ctx context.Context, raw []byte, pub source.Publisher) (int, error) {
	r := ingest.NewReader(bytes.NewReader(raw), "bench", ingest.DefaultOptions())
	n := 0
	batch := make([]schema.Event, 0, 512)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		n += len(batch)
		err := pub.Publish(ctx, source.Batch{Source: "bench", Events: batch, Position: []byte(strconv.Itoa(n))})
		batch = make([]schema.Event, 0, 512)
		return err
	}
	for {
		ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			continue
		}
		batch = append(batch, ev)
		if len(batch) == cap(batch) {
			if err := flush(); err != nil {
				return n, err
			}
		}
	}
	batch = append(batch, r.Flush()...)
	return n, flush()
}

// BenchmarkReplayBaseline is `replay`'s work on the same input and
// machine: parse, then the engine in one goroutine, checkpointing every
// 100,000 events. The embedded pipeline's target is within 1.5x of it.
func BenchmarkReplayBaseline(b *testing.B) {
	raw, learn := benchInput(b)
	cfg := detect.Config{LearnUntil: learn}
	total := 0
	cpu0 := cpuTime()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		st, err := state.Open(state.Config{Dir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		eng, err := detect.New(cfg, st, nil, prometheus.NewRegistry())
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		r := ingest.NewReader(bytes.NewReader(raw), "bench", ingest.DefaultOptions())
		n := 0
		for {
			ev, err := r.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				continue
			}
			eng.Process(ev)
			if n++; n%100_000 == 0 {
				eng.Checkpoint(nil)
			}
		}
		eng.Checkpoint(nil)
		total += n
		b.StopTimer()
		st.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(total)/(cpuTime()-cpu0).Seconds(), "events/cpu-s")
}

// BenchmarkEmbeddedPipeline: source parsing → ingest stage → embedded
// stream → detect stage (checkpoint every second) → findings sink.
func BenchmarkEmbeddedPipeline(b *testing.B) {
	raw, learn := benchInput(b)
	cfg := detect.Config{LearnUntil: learn}
	total := 0
	cpu0 := cpuTime()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		var processed atomic.Int64
		emb, err := stream.NewEmbedded(stream.EmbeddedConfig{QueueSize: 8192}, prometheus.NewRegistry())
		if err != nil {
			b.Fatal(err)
		}
		stage, err := NewDetectStage(DetectConfig{Open: openEngines(b, b.TempDir(), cfg), Findings: newFindingCounter(),
			Registerer: prometheus.NewRegistry(),
			Observe: func(ev *schema.Event, _ []schema.Finding) {
				if ev != nil {
					processed.Add(1)
				}
			}})
		if err != nil {
			b.Fatal(err)
		}
		ing, err := NewIngest(IngestConfig{Stream: emb, EventsTopic: "events", CarryPositions: true, Registerer: prometheus.NewRegistry()})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		b.StartTimer()
		go func() { done <- emb.Consume(ctx, "events", "detect", stage) }()
		n, err := readSource(ctx, raw, ing)
		if err != nil {
			b.Fatal(err)
		}
		for processed.Load() < int64(n) {
			time.Sleep(time.Millisecond)
		}
		total += n
		b.StopTimer()
		cancel()
		<-done
		emb.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(total)/(cpuTime()-cpu0).Seconds(), "events/cpu-s")
}

// kafkaPipeline is ingest → Kafka events topic → detect stage → findings
// topic on an in-process kfake cluster.
type kafkaPipeline struct {
	prod, cons *stream.Kafka
	ing        *Ingest
	processed  atomic.Int64
	cancel     context.CancelFunc
	done       chan error
}

func startKafkaPipeline(b *testing.B, cfg detect.Config, sink FindingSink, checkpoint time.Duration) *kafkaPipeline {
	brokers := kafkatest.NewCluster(b, kafkaBenchPartitions, "events", "findings")
	mk := func() *stream.Kafka {
		sc := stream.Config{Type: stream.TypeKafka, Kafka: stream.KafkaConfig{Brokers: brokers}}
		sc.SetDefaults()
		sc.Kafka.BatchTimeout = duration.Duration(time.Millisecond)
		k, err := stream.NewKafka(sc.Kafka, nil, prometheus.NewRegistry())
		if err != nil {
			b.Fatal(err)
		}
		return k
	}
	p := &kafkaPipeline{prod: mk(), cons: mk(), done: make(chan error, 1)}
	var err error
	p.ing, err = NewIngest(IngestConfig{Stream: p.prod, EventsTopic: "events", Registerer: prometheus.NewRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	pub := FindingsPublisher{Stream: p.cons, Topic: "findings"}
	var findings FindingSink = pub
	if sink != nil {
		findings = FindingSinks{pub, sink}
	}
	stage, err := NewDetectStage(DetectConfig{Open: openEngines(b, b.TempDir(), cfg), Findings: findings, Replayable: true,
		CheckpointInterval: checkpoint, Registerer: prometheus.NewRegistry(),
		Observe: func(ev *schema.Event, fs []schema.Finding) {
			if ev != nil {
				p.processed.Add(1)
			}
		}})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	go func() { p.done <- p.cons.Consume(ctx, "events", "detect", stage) }()
	return p
}

func (p *kafkaPipeline) stop() {
	p.cancel()
	<-p.done
	p.prod.Close()
	p.cons.Close()
}

// BenchmarkKafkaPipeline: source parsing → ingest stage → Kafka events
// topic (4 partitions, acks=all) → detect stage (one instance, the four
// partitions in parallel) → findings topic.
func BenchmarkKafkaPipeline(b *testing.B) {
	raw, learn := benchInput(b)
	cfg := detect.Config{LearnUntil: learn}
	total := 0
	cpu0 := cpuTime()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		p := startKafkaPipeline(b, cfg, nil, time.Second)
		b.StartTimer()
		n, err := readSource(context.Background(), raw, p.ing)
		if err != nil {
			b.Fatal(err)
		}
		for p.processed.Load() < int64(n) {
			time.Sleep(time.Millisecond)
		}
		total += n
		b.StopTimer()
		p.stop()
		b.StartTimer()
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "events/s")
	// The machine is shared: CPU time (kfake included, in this process)
	// per event tells the cost apart from waiting for a core.
	b.ReportMetric(float64(total)/(cpuTime()-cpu0).Seconds(), "events/cpu-s")
}

// cpuTime is the CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// latencySink records, for every finding handed on, the time since the
// newest of its evidence events was published.
type latencySink struct {
	published *sync.Map // event id → time.Time
	mu        sync.Mutex
	lat       []time.Duration
}

func (s *latencySink) WriteFindings(_ context.Context, fs []schema.Finding) error {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range fs {
		var newest time.Time
		for _, id := range f.EventIDs {
			if v, ok := s.published.Load(id); ok && v.(time.Time).After(newest) {
				newest = v.(time.Time)
			}
		}
		if !newest.IsZero() {
			s.lat = append(s.lat, now.Sub(newest))
		}
	}
	return nil
}

// BenchmarkKafkaLatency publishes the generated stream at a fixed 10,000
// events/s through the Kafka pipeline, with event times rewritten to the
// wall clock as a live trail has them, and reports the latency from an
// event's publication to its finding's hand-off to the findings topic.
// allowed_lateness is 100ms and the checkpoint interval 100ms: a finding
// waits for the reorder buffer and for the checkpoint that publishes it,
// both configurable; the default 15-minute lateness suits CloudTrail's
// delivery delay and adds that much by design.
func BenchmarkKafkaLatency(b *testing.B) {
	raw, _ := benchInput(b)
	r := ingest.NewReader(bytes.NewReader(raw), "bench", ingest.DefaultOptions())
	var evs []schema.Event
	for len(evs) < 100_000 {
		ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err == nil {
			evs = append(evs, ev)
		}
	}
	// The generated span compressed onto 10 s of wall time: time runs 2160x.
	cfg := detect.Config{AllowedLateness: detect.Duration(100 * time.Millisecond)}
	cfg.UnexpectedIP.LearningPeriod = detect.Duration(2 * time.Second)
	cfg.FirstTimeAccess.LearningPeriod = detect.Duration(2 * time.Second)
	cfg.AccessVolumeSpike.LearningPeriod = detect.Duration(2 * time.Second)
	var all []time.Duration
	b.ResetTimer()
	for range b.N {
		sink := &latencySink{published: &sync.Map{}}
		p := startKafkaPipeline(b, cfg, sink, 100*time.Millisecond)
		const rate = 10_000
		const batch = 100 // every 10 ms
		start := time.Now()
		for i := 0; i < len(evs); i += batch {
			at := start.Add(time.Duration(i) * time.Second / rate)
			time.Sleep(time.Until(at))
			now := time.Now()
			chunk := make([]schema.Event, 0, batch)
			for _, ev := range evs[i:min(i+batch, len(evs))] {
				ev.Time = now
				sink.published.Store(ev.ID, now)
				chunk = append(chunk, ev)
			}
			if err := p.ing.Publish(context.Background(), source.Batch{Source: "bench", Events: chunk}); err != nil {
				b.Fatal(err)
			}
		}
		for p.processed.Load() < int64(len(evs)) {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond)
		p.stop()
		sink.mu.Lock()
		all = append(all, sink.lat...)
		sink.mu.Unlock()
	}
	b.StopTimer()
	if len(all) == 0 {
		b.Fatal("no findings to measure")
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(len(all))/float64(b.N), "findings/op")
}
