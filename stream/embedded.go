package stream

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// IdleTick is how often a consumer calls Handle with no records when its
// input is idle.
const IdleTick = 200 * time.Millisecond

// maxBatch caps the records passed to one Handle call.
const maxBatch = 1024

// Embedded is the in-process Stream: one bounded queue (one partition)
// per topic, one consumer per topic.
type Embedded struct {
	size  int
	depth *prometheus.GaugeVec

	mu     sync.Mutex
	topics map[string]*queue
	closed bool
}

type entry struct {
	rec Record
	ack *ackGroup
}

type ackGroup struct {
	left atomic.Int64
	done func(error)
	once sync.Once
}

func (a *ackGroup) finish(err error) {
	if a == nil || a.done == nil {
		return
	}
	a.once.Do(func() { a.done(err) })
}

type queue struct {
	name string
	ch   chan entry
	// pubMu orders offsets with channel order.
	pubMu sync.Mutex
	next  int64

	mu        sync.Mutex
	pending   []entry // delivered, not committed, in offset order
	consuming bool
	closed    chan struct{}
}

// NewEmbedded returns an embedded stream whose queues hold size records.
func NewEmbedded(cfg EmbeddedConfig, reg prometheus.Registerer) (*Embedded, error) {
	if cfg.QueueSize <= 0 {
		return nil, errors.New("embedded stream: queue_size must be positive")
	}
	e := &Embedded{
		size:   cfg.QueueSize,
		topics: map[string]*queue{},
		depth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "auditwatch_stream_queue_depth",
			Help: "Records queued in an embedded stream topic, not yet consumed.",
		}, []string{"topic"}),
	}
	if reg != nil {
		if err := reg.Register(e.depth); err != nil {
			return nil, fmt.Errorf("embedded stream metrics: %w", err)
		}
	}
	return e, nil
}

func (e *Embedded) topic(name string) (*queue, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, ErrClosed
	}
	q, ok := e.topics[name]
	if !ok {
		q = &queue{name: name, ch: make(chan entry, e.size), closed: make(chan struct{})}
		e.topics[name] = q
	}
	return q, nil
}

// Publish enqueues recs, blocking while the queue is full. done is called
// when the consumer has committed every record.
func (e *Embedded) Publish(ctx context.Context, topic string, recs []Record, done func(error)) error {
	q, err := e.topic(topic)
	if err != nil {
		if done != nil {
			done(err)
		}
		return err
	}
	if len(recs) == 0 {
		if done != nil {
			done(nil)
		}
		return nil
	}
	ag := &ackGroup{done: done}
	ag.left.Store(int64(len(recs)))
	g := e.depth.WithLabelValues(topic)
	q.pubMu.Lock()
	defer q.pubMu.Unlock()
	for i := range recs {
		r := recs[i]
		r.Offset = q.next
		select {
		case q.ch <- entry{rec: r, ack: ag}:
			q.next++
			g.Inc()
		case <-ctx.Done():
			// Records already queued will still be committed, but the
			// group as a whole was not taken.
			ag.finish(ctx.Err())
			return ctx.Err()
		case <-q.closed:
			ag.finish(ErrClosed)
			return ErrClosed
		}
	}
	return nil
}

// Consume feeds h from topic's queue. The embedded stream has one
// partition (0) and one consumer per topic; group is ignored.
func (e *Embedded) Consume(ctx context.Context, topic, group string, h Handler) error {
	q, err := e.topic(topic)
	if err != nil {
		return err
	}
	q.mu.Lock()
	if q.consuming {
		q.mu.Unlock()
		return fmt.Errorf("embedded stream: topic %s already has a consumer", topic)
	}
	q.consuming = true
	q.mu.Unlock()
	defer func() {
		q.mu.Lock()
		q.consuming = false
		q.mu.Unlock()
	}()
	commit := func(_ context.Context, partition int, next int64) error {
		if partition != 0 {
			return fmt.Errorf("embedded stream: no partition %d", partition)
		}
		q.commit(next)
		return nil
	}
	if _, err := h.Assigned(ctx, Assignment{Topic: topic, Committed: map[int]int64{0: -1}, Oldest: map[int]int64{0: 0}, Commit: commit}); err != nil {
		return fmt.Errorf("assign %s: %w", topic, err)
	}
	g := e.depth.WithLabelValues(topic)
	tick := time.NewTimer(IdleTick)
	defer tick.Stop()
	batch := make([]Record, 0, maxBatch)
	for {
		batch = batch[:0]
		if !tick.Stop() {
			select {
			case <-tick.C:
			default:
			}
		}
		tick.Reset(IdleTick)
		select {
		case <-ctx.Done():
			return e.revoke(h, topic)
		case <-q.closed:
			return nil
		case en := <-q.ch:
			batch = q.take(batch, en)
		drain:
			for len(batch) < maxBatch {
				select {
				case en := <-q.ch:
					batch = q.take(batch, en)
				default:
					break drain
				}
			}
			g.Sub(float64(len(batch)))
		case <-tick.C:
		}
		if err := h.Handle(ctx, 0, batch); err != nil {
			if ctx.Err() != nil {
				return e.revoke(h, topic)
			}
			return fmt.Errorf("handle %s: %w", topic, err)
		}
	}
}

func (e *Embedded) revoke(h Handler, topic string) error {
	// The owner's context is done; give the handler a bounded context of
	// its own to checkpoint in.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Revoked(ctx, []int{0}); err != nil {
		return fmt.Errorf("revoke %s: %w", topic, err)
	}
	return nil
}

func (q *queue) take(batch []Record, en entry) []Record {
	q.mu.Lock()
	// Only the offset and the acknowledgement are kept until the commit:
	// holding the event would keep its batch in memory until then.
	q.pending = append(q.pending, entry{rec: Record{Offset: en.rec.Offset}, ack: en.ack})
	q.mu.Unlock()
	return append(batch, en.rec)
}

// commit acknowledges every delivered record with an offset below next.
func (q *queue) commit(next int64) {
	q.mu.Lock()
	i := 0
	for i < len(q.pending) && q.pending[i].rec.Offset < next {
		i++
	}
	done := q.pending[:i:i]
	q.pending = append(q.pending[:0:0], q.pending[i:]...)
	q.mu.Unlock()
	for _, en := range done {
		if en.ack != nil && en.ack.left.Add(-1) == 0 {
			en.ack.finish(nil)
		}
	}
}

// Close stops every queue; uncommitted records' done callbacks get ErrClosed.
func (e *Embedded) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	qs := e.topics
	e.mu.Unlock()
	for _, q := range qs {
		close(q.closed)
		q.mu.Lock()
		pend := q.pending
		q.pending = nil
		q.mu.Unlock()
		for _, en := range pend {
			en.ack.finish(ErrClosed)
		}
	drain:
		for {
			select {
			case en := <-q.ch:
				en.ack.finish(ErrClosed)
			default:
				break drain
			}
		}
	}
	return nil
}
