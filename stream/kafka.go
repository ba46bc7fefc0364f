package stream

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl/plain"

	"auditwatch/schema"
)

// Record value types, in the "auditwatch-type" header.
const (
	headerType  = "auditwatch-type"
	typeEvent   = "event"
	typeFinding = "finding"
	typeValue   = "value"
)

// Kafka is the Stream on a Kafka cluster.
type Kafka struct {
	cfg    KafkaConfig
	log    *slog.Logger
	dialer *kafka.Dialer
	w      *kafka.Writer

	produced, consumed, commits *prometheus.CounterVec
	readErrors                  *prometheus.CounterVec
	lag                         *prometheus.GaugeVec
	// partsRead and topicParts: the partitions this process reads per
	// group, and the topic's partition count. Summed over a group's live
	// processes, partsRead below topicParts is a partition no live member
	// reads (the lag gauge lists only partitions someone reads).
	partsRead, topicParts *prometheus.GaugeVec
	// inflight bounds Publish calls not yet acknowledged (back-pressure).
	inflight chan struct{}

	partsMu sync.Mutex
	parts   map[string]topicParts // partition counts for notes, by topic
}

// topicParts is a topic's partition count as last looked up.
type topicParts struct {
	n  int
	at time.Time
}

// headerNote marks a note (Record.Note); headerPartition holds the index of
// the partition a note's copy goes to (noteBalancer).
const (
	headerNote      = "aw-note"
	headerPartition = "aw-partition"
)

// noteBalancer sends a note's copy to the partition its header names and
// every other record by its key's hash.
type noteBalancer struct{ hash kafka.Hash }

func (b *noteBalancer) Balance(msg kafka.Message, partitions ...int) int {
	for _, h := range msg.Headers {
		if h.Key == headerPartition {
			if i, err := strconv.Atoi(string(h.Value)); err == nil && i >= 0 && len(partitions) > 0 {
				return partitions[i%len(partitions)]
			}
		}
	}
	return b.hash.Balance(msg, partitions...)
}

// partitions returns how many partitions topic has (looked up again
// after a minute).
func (k *Kafka) partitions(ctx context.Context, topic string) (int, error) {
	k.partsMu.Lock()
	defer k.partsMu.Unlock()
	if tp, ok := k.parts[topic]; ok && time.Since(tp.at) < time.Minute {
		return tp.n, nil
	}
	var lastErr error
	for _, b := range k.cfg.Brokers {
		ps, err := k.dialer.LookupPartitions(ctx, "tcp", b, topic)
		if err != nil {
			lastErr = err
			continue
		}
		if len(ps) == 0 {
			lastErr = fmt.Errorf("topic %s has no partitions", topic)
			continue
		}
		if k.parts == nil {
			k.parts = map[string]topicParts{}
		}
		k.parts[topic] = topicParts{n: len(ps), at: time.Now()}
		return len(ps), nil
	}
	return 0, fmt.Errorf("kafka %s: partitions: %w", topic, lastErr)
}

// maxInflight is how many Publish calls may await their acknowledgement.
const maxInflight = 32

// pending tracks the records of one Publish call until all are acknowledged.
type pending struct {
	k     *Kafka
	topic string
	left  atomic.Int64
	n     int
	once  sync.Once
	mu    sync.Mutex
	err   error
	done  func(error)
}

func (p *pending) finish(n int, err error) {
	if err != nil {
		p.mu.Lock()
		if p.err == nil {
			p.err = err
		}
		p.mu.Unlock()
	}
	if p.left.Add(-int64(n)) > 0 {
		return
	}
	p.once.Do(func() {
		<-p.k.inflight
		p.mu.Lock()
		err := p.err
		p.mu.Unlock()
		if err != nil {
			err = fmt.Errorf("kafka publish %s: %w", p.topic, err)
		} else {
			p.k.produced.WithLabelValues(p.topic).Add(float64(p.n))
		}
		if p.done != nil {
			p.done(err)
		}
	})
}

// NewKafka connects a Kafka stream (lazily: the first request dials).
func NewKafka(cfg KafkaConfig, logger *slog.Logger, reg prometheus.Registerer) (*Kafka, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("kafka stream: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	dialer := &kafka.Dialer{Timeout: 10 * time.Second, DualStack: true, ClientID: cfg.ClientID}
	transport := &kafka.Transport{ClientID: cfg.ClientID, DialTimeout: 10 * time.Second}
	if cfg.TLS {
		dialer.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
		transport.TLS = dialer.TLS
	}
	if cfg.SASL.Mechanism == "plain" {
		pw, err := cfg.SASL.Password.Value()
		if err != nil {
			return nil, fmt.Errorf("kafka stream: sasl password: %w", err)
		}
		m := plain.Mechanism{Username: cfg.SASL.Username, Password: pw}
		dialer.SASLMechanism = m
		transport.SASL = m
	}
	k := &Kafka{
		cfg:    cfg,
		log:    logger,
		dialer: dialer,
		w: &kafka.Writer{
			Addr:         kafka.TCP(cfg.Brokers...),
			Balancer:     &noteBalancer{},
			RequiredAcks: kafka.RequireAll,
			BatchSize:    cfg.BatchSize,
			BatchBytes:   16 << 20,
			BatchTimeout: cfg.BatchTimeout.D(),
			WriteTimeout: cfg.WriteTimeout.D(),
			MaxAttempts:  10,
			Transport:    transport,
			// Async: WriteMessages enqueues in call order and returns;
			// Completion reports each produced batch (see Publish).
			Async: true,
		},
		inflight: make(chan struct{}, maxInflight),
		produced: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "auditwatch_stream_produced_total",
			Help: "Records acknowledged by all in-sync replicas, by topic."}, []string{"topic"}),
		consumed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "auditwatch_stream_consumed_total",
			Help: "Records fetched, by topic."}, []string{"topic"}),
		commits: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "auditwatch_stream_commits_total",
			Help: "Offset commits, by topic."}, []string{"topic"}),
		readErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "auditwatch_stream_read_errors_total",
			Help: "Partition reader errors (each one reconnects and fetches the same offset again), by topic."}, []string{"topic"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "auditwatch_stream_lag_records",
			Help: "Records behind the partition's end, by topic, consumer group and partition."}, []string{"topic", "group", "partition"}),
		partsRead: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "auditwatch_stream_partitions_read",
			Help: "Partitions of the topic this process reads for the consumer group now (0 during a rebalance); summed over the group's processes, less than auditwatch_stream_topic_partitions means partitions no live member reads."}, []string{"topic", "group"}),
		topicParts: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "auditwatch_stream_topic_partitions",
			Help: "Partitions of the topic, as last looked up by a consumer."}, []string{"topic"}),
	}
	k.w.Completion = func(msgs []kafka.Message, err error) {
		for i := range msgs {
			if p, ok := msgs[i].WriterData.(*pending); ok {
				p.finish(1, err)
			}
		}
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{k.produced, k.consumed, k.commits, k.readErrors, k.lag, k.partsRead, k.topicParts} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("kafka stream metrics: %w", err)
			}
		}
	}
	return k, nil
}

// Encode is the Kafka value of a record.
func Encode(r *Record) ([]byte, string, error) {
	switch {
	case r.Event != nil && len(r.Event.Raw) > 0:
		return appendEventRaw(nil, r.Event), typeEventRaw, nil
	case r.Event != nil:
		return r.Event.AppendJSON(nil), typeEvent, nil
	case r.Finding != nil:
		b, err := json.Marshal(r.Finding)
		return b, typeFinding, err
	case r.Value != nil:
		return r.Value, typeValue, nil
	}
	return nil, "", errors.New("record carries neither an event nor a finding")
}

// Decode fills r from a Kafka value of the given type.
func Decode(r *Record, typ string, v []byte) error {
	switch typ {
	case typeValue:
		r.Value = append([]byte{}, v...)
	case typeFinding:
		var f schema.Finding
		if err := json.Unmarshal(v, &f); err != nil {
			return err
		}
		r.Finding = &f
	case typeEventRaw:
		var ev schema.Event
		if err := decodeEventRaw(v, &ev); err != nil {
			return err
		}
		r.Event = &ev
	default:
		var ev schema.Event
		if err := DecodeEvent(v, &ev); err != nil {
			return err
		}
		r.Event = &ev
	}
	return nil
}

// Publish enqueues recs on topic in call order and returns; done is called
// once all in-sync replicas hold every record (or with the error). At most
// maxInflight calls await their acknowledgement; more block (back-pressure).
// Position-only records are not written (Kafka sources checkpoint on their
// own).
func (k *Kafka) Publish(ctx context.Context, topic string, recs []Record, done func(error)) error {
	msgs := make([]kafka.Message, 0, len(recs))
	for i := range recs {
		r := &recs[i]
		if r.Event == nil && r.Finding == nil && r.Value == nil {
			continue
		}
		v, typ, err := Encode(r)
		if err != nil {
			err = fmt.Errorf("kafka publish %s: %w", topic, err)
			if done != nil {
				done(err)
			}
			return err
		}
		if r.Note {
			n, err := k.partitions(ctx, topic)
			if err != nil {
				if done != nil {
					done(err)
				}
				return err
			}
			for i := range n {
				msgs = append(msgs, kafka.Message{Topic: topic, Key: []byte(r.Key), Value: v,
					Headers: []kafka.Header{{Key: headerType, Value: []byte(typ)}, {Key: headerNote, Value: []byte("1")},
						{Key: headerPartition, Value: []byte(strconv.Itoa(i))}}})
			}
			continue
		}
		msgs = append(msgs, kafka.Message{Topic: topic, Key: []byte(r.Key), Value: v,
			Headers: []kafka.Header{{Key: headerType, Value: []byte(typ)}}})
	}
	if len(msgs) == 0 {
		if done != nil {
			done(nil)
		}
		return nil
	}
	select {
	case k.inflight <- struct{}{}:
	case <-ctx.Done():
		err := fmt.Errorf("kafka publish %s: %w", topic, ctx.Err())
		if done != nil {
			done(err)
		}
		return err
	}
	p := &pending{k: k, topic: topic, n: len(msgs), done: done}
	p.left.Store(int64(len(msgs)))
	for i := range msgs {
		msgs[i].WriterData = p
	}
	if err := k.w.WriteMessages(ctx, msgs...); err != nil {
		// Nothing was enqueued.
		p.finish(len(msgs), err)
		return fmt.Errorf("kafka publish %s: %w", topic, err)
	}
	return nil
}

// Consume joins group on topic. For each generation it asks h where to
// start each assigned partition, reads every partition in its own
// goroutine, and when the generation ends (rebalance, ctx) lets h
// checkpoint and commit before the partitions are given up.
func (k *Kafka) Consume(ctx context.Context, topic, group string, h Handler) error {
	dialer, conns := groupDialer(k.dialer)
	cg, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:                group,
		Brokers:           k.cfg.Brokers,
		Dialer:            dialer,
		Topics:            []string{topic},
		StartOffset:       kafka.FirstOffset,
		HeartbeatInterval: time.Second,
		SessionTimeout:    10 * time.Second,
		RebalanceTimeout:  10 * time.Second,
		JoinGroupBackoff:  200 * time.Millisecond,
	})
	if err != nil {
		return fmt.Errorf("kafka consumer group %s: %w", group, err)
	}
	defer closeGroup(cg, conns, closeGrace)
	read := k.partsRead.WithLabelValues(topic, group)
	defer read.Set(0)
	for {
		gen, err := cg.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, kafka.ErrGroupClosed) {
				return nil
			}
			k.log.Warn("consumer group", "group", group, "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		if err := k.generation(ctx, topic, group, gen, h); err != nil {
			return err
		}
	}
}

func (k *Kafka) generation(ctx context.Context, topic, group string, gen *kafka.Generation, h Handler) error {
	assigned := gen.Assignments[topic]
	read := k.partsRead.WithLabelValues(topic, group)
	read.Set(float64(len(assigned)))
	defer read.Set(0)
	if n, err := k.partitions(ctx, topic); err == nil {
		k.topicParts.WithLabelValues(topic).Set(float64(n))
	}
	if len(assigned) == 0 {
		// Nothing for us in this generation: wait for the next.
		wait := make(chan struct{})
		gen.Start(func(gctx context.Context) {
			select {
			case <-gctx.Done():
			case <-ctx.Done():
			}
			close(wait)
		})
		<-wait
		return nil
	}
	a := Assignment{Topic: topic, Committed: map[int]int64{}, Oldest: map[int]int64{}}
	for _, pa := range assigned {
		off := pa.Offset
		if off < 0 {
			off = -1
		}
		a.Committed[pa.ID] = off
		a.Oldest[pa.ID] = kafka.FirstOffset
	}
	a.Commit = func(_ context.Context, partition int, next int64) error {
		if err := gen.CommitOffsets(map[string]map[int]int64{topic: {partition: next}}); err != nil {
			return err
		}
		k.commits.WithLabelValues(topic).Inc()
		return nil
	}
	starts, err := h.Assigned(ctx, a)
	if err != nil {
		return fmt.Errorf("kafka assign %s: %w", topic, err)
	}
	var (
		wg      sync.WaitGroup
		errOnce sync.Once
		failure error
	)
	for _, pa := range assigned {
		p := pa.ID
		start, ok := starts[p]
		if !ok {
			start = a.Committed[p]
			if start < 0 {
				start = kafka.FirstOffset
			}
		}
		wg.Add(1)
		gen.Start(func(gctx context.Context) {
			defer wg.Done()
			pctx, cancel := context.WithCancel(gctx)
			defer cancel()
			stop := context.AfterFunc(ctx, cancel)
			defer stop()
			if err := k.partition(pctx, topic, group, p, start, h); err != nil {
				errOnce.Do(func() { failure = err })
			}
			// Checkpoint and commit before the partition goes.
			rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer rcancel()
			if err := h.Revoked(rctx, []int{p}); err != nil {
				k.log.Warn("revoke partition", "topic", topic, "partition", p, "err", err)
			}
		})
	}
	wg.Wait()
	return failure
}

// Partition reader timing. kafka-go's partition reader sets its
// connection's read deadline MaxWait after it sends a fetch and asks the
// broker to hold the fetch for MaxWait less min(1 s, MaxWait/4); an answer
// later than the deadline is an i/o timeout, on which it closes the
// connection and fetches the same offset again, without a backoff on the
// answer's size and, with no ErrorLogger, silently. The readers had a
// 100 ms MaxWait: a broker that took more than 25 ms beyond its hold to
// answer (a loaded machine, a far broker, a large catch-up fetch) was
// asked again and again and the partition stalled for good, with its lag
// gauge still showing the last value (0). With 5 s an idle fetch is held
// 4 s and its answer has 1 s; a fetch with records waiting has 5 s. The
// wait costs nothing: a held fetch is answered as soon as a record
// arrives, and closing a reader cuts its connections instead of waiting
// for the held fetch (readerConns).
const (
	readMaxWait = 5 * time.Second
	// readMaxBytes bounds one fetch answer (a larger first batch is still
	// returned whole), so a catch-up is read in parts the broker answers
	// quickly.
	readMaxBytes = 1 << 20
	// readErrLogEvery spaces a partition reader's error logs; every
	// error is counted (auditwatch_stream_read_errors_total).
	readErrLogEvery = 30 * time.Second
)

// readLagEvery is how often a reader's lag is read from the broker's end
// offset (the gauge of a reader receiving nothing follows it; a variable
// for the test).
var readLagEvery = 10 * time.Second

// readerErrors counts a partition reader's errors and logs the first, then
// at most one per readErrLogEvery with the number since the last.
type readerErrors struct {
	k        *Kafka
	topic    string
	p        int
	stopping atomic.Bool

	mu      sync.Mutex
	last    time.Time
	skipped int
}

func (e *readerErrors) Printf(msg string, args ...any) {
	if e.stopping.Load() {
		return // the reader's connections are being cut on purpose
	}
	e.k.readErrors.WithLabelValues(e.topic).Inc()
	e.mu.Lock()
	now := time.Now()
	if !e.last.IsZero() && now.Sub(e.last) < readErrLogEvery {
		e.skipped++
		e.mu.Unlock()
		return
	}
	skipped := e.skipped
	e.last, e.skipped = now, 0
	e.mu.Unlock()
	e.k.log.Warn("kafka partition reader: "+fmt.Sprintf(msg, args...), "topic", e.topic, "partition", e.p, "errors_not_logged", skipped)
}

// partition reads one partition from start until ctx ends, feeding h in
// batches.
func (k *Kafka) partition(ctx context.Context, topic, group string, p int, start int64, h Handler) error {
	// The reader dials through its own connection set, so stopping it
	// need not wait for a fetch the broker holds.
	dialer, conns := groupDialer(k.dialer)
	errs := &readerErrors{k: k, topic: topic, p: p}
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:         k.cfg.Brokers,
		Topic:           topic,
		Partition:       p,
		Dialer:          dialer,
		MinBytes:        1,
		MaxBytes:        readMaxBytes,
		MaxWait:         readMaxWait,
		ReadLagInterval: readLagEvery,
		ErrorLogger:     errs,
	})
	defer func() {
		errs.stopping.Store(true)
		conns.abort()
		r.Close()
	}()
	if err := r.SetOffset(start); err != nil {
		return fmt.Errorf("kafka %s/%d: seek %d: %w", topic, p, start, err)
	}
	msgs := make(chan kafka.Message, 4*maxBatch)
	fetchErr := make(chan error, 1)
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		defer close(msgs)
		for {
			m, err := r.FetchMessage(fctx)
			if err != nil {
				if fctx.Err() == nil {
					fetchErr <- err
				}
				return
			}
			select {
			case msgs <- m:
			case <-fctx.Done():
				return
			}
		}
	}()
	defer func() {
		cancel()
		for range msgs {
		}
	}()
	lag := k.lag.WithLabelValues(topic, group, strconv.Itoa(p))
	consumed := k.consumed.WithLabelValues(topic)
	tick := time.NewTicker(IdleTick)
	defer tick.Stop()
	lagAt := time.Now()
	batch := make([]Record, 0, maxBatch)
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return nil
		case err := <-fetchErr:
			return fmt.Errorf("kafka %s/%d: fetch: %w", topic, p, err)
		case m, ok := <-msgs:
			if !ok {
				return nil
			}
			var err error
			if batch, err = appendMsg(batch, m); err != nil {
				k.log.Error("undecodable record skipped", "topic", topic, "partition", p, "offset", m.Offset, "err", err)
			}
		drain:
			for len(batch) < maxBatch {
				select {
				case m, ok := <-msgs:
					if !ok {
						break drain
					}
					if batch, err = appendMsg(batch, m); err != nil {
						k.log.Error("undecodable record skipped", "topic", topic, "partition", p, "offset", m.Offset, "err", err)
					}
				default:
					break drain
				}
			}
			consumed.Add(float64(len(batch)))
			lag.Set(float64(r.Lag()))
			lagAt = time.Now()
		case <-tick.C:
			// No record: the gauge follows the broker's end offset
			// (refreshed by the reader every readLagEvery), so a reader
			// that stopped receiving shows its lag growing.
			if time.Since(lagAt) >= time.Second {
				lag.Set(float64(r.Stats().Lag))
				lagAt = time.Now()
			}
		}
		if err := h.Handle(ctx, p, batch); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("kafka %s/%d: handle: %w", topic, p, err)
		}
	}
}

// appendMsg decodes m onto batch. An undecodable record becomes a
// position-only record, so its offset is still committed past.
func appendMsg(batch []Record, m kafka.Message) ([]Record, error) {
	r := Record{Key: string(m.Key), Partition: m.Partition, Offset: m.Offset}
	typ := typeEvent
	for _, hd := range m.Headers {
		switch hd.Key {
		case headerType:
			typ = string(hd.Value)
		case headerNote:
			r.Note = true
		}
	}
	err := Decode(&r, typ, m.Value)
	if err != nil {
		r.Event, r.Finding, r.Value = nil, nil, nil
	}
	return append(batch, r), err
}

// Close flushes and closes the producer.
func (k *Kafka) Close() error {
	err := k.w.Close()
	// The writer's transport keeps a connection pool per broker set; end it.
	k.w.Transport.(*kafka.Transport).CloseIdleConnections()
	return err
}
