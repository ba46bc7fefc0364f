package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"auditwatch/ingest/source"
	"auditwatch/schema"
	"auditwatch/stream"
)

// IngestConfig configures an Ingest publisher.
type IngestConfig struct {
	Stream      stream.Stream
	EventsTopic string
	// ByIPTopic, when set, also receives every failed authentication event
	// keyed by source IP (for the IP-keyed auth-failure detector).
	ByIPTopic string
	// CarryPositions puts each batch's source position on its last record
	// (embedded stream: the detect stage checkpoints it with its state).
	CarryPositions bool
	// Checkpoints, when set, saves a source's position once its batch is
	// durably taken (Kafka: sources keep their own checkpoints).
	Checkpoints source.Checkpoints
	// Notes, when set, picks the events also published as notes to every
	// partition of the events topic (stream.Record.Note): a secret's
	// rollout write, which readers keyed to other partitions are judged
	// against (detect.RolloutWrites).
	Notes      func(*schema.Event) bool
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Ingest is the source.Publisher that puts source batches on the stream.
// Acknowledgements may arrive out of order (Kafka partitions complete
// independently); Ingest releases them to each source in publication
// order, so a source's checkpoint never passes a batch not yet durable.
type Ingest struct {
	cfg  IngestConfig
	log  *slog.Logger
	out  *prometheus.CounterVec
	fail *prometheus.CounterVec

	mu     sync.Mutex
	orders map[string]*ackOrder
}

// ackOrder releases one source's acknowledgements in publication order.
type ackOrder struct {
	next, head uint64 // next sequence to hand out; first not yet released
	results    map[uint64]ackResult
	// failed is sticky: once a batch failed, no later batch of the source
	// may advance its checkpoint past it.
	failed error
}

type ackResult struct {
	err     error
	release func(error)
}

// take reserves the next sequence of source.
func (g *Ingest) take(src string) uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	o := g.orders[src]
	if o == nil {
		o = &ackOrder{results: map[uint64]ackResult{}}
		g.orders[src] = o
	}
	o.next++
	return o.next - 1
}

// finished records batch seq of src and releases every batch whose
// predecessors have all finished, in order.
func (g *Ingest) finished(src string, seq uint64, err error, release func(error)) {
	g.mu.Lock()
	o := g.orders[src]
	o.results[seq] = ackResult{err, release}
	var ready []ackResult
	for {
		r, ok := o.results[o.head]
		if !ok {
			break
		}
		delete(o.results, o.head)
		o.head++
		if r.err != nil && o.failed == nil {
			o.failed = r.err
		} else if r.err == nil && o.failed != nil {
			r.err = fmt.Errorf("an earlier batch was not taken: %w", o.failed)
		}
		ready = append(ready, r)
	}
	g.mu.Unlock()
	for _, r := range ready {
		r.release(r.err)
	}
}

// NewIngest returns an Ingest.
func NewIngest(cfg IngestConfig) (*Ingest, error) {
	if cfg.Stream == nil || cfg.EventsTopic == "" {
		return nil, errors.New("ingest stage: Stream and EventsTopic are required")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := cfg.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	g := &Ingest{cfg: cfg, log: log, orders: map[string]*ackOrder{},
		out: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "auditwatch_ingest_published_events_total",
			Help: "Events put on the stream, by source."}, []string{"source"}),
		fail: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "auditwatch_ingest_publish_errors_total",
			Help: "Batches the stream did not take, by source."}, []string{"source"}),
	}
	for _, c := range []prometheus.Collector{g.out, g.fail} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("ingest stage metrics: %w", err)
		}
	}
	return g, nil
}

// PrincipalKey is the events topic key of ev.
func PrincipalKey(ev *schema.Event) string {
	if ev.Principal != "" {
		return ev.Principal
	}
	return "anon|" + ev.SourceIP
}

// Publish puts b on the stream; b.Done runs once every record is durably
// held, after the source's checkpoint is saved.
func (g *Ingest) Publish(ctx context.Context, b source.Batch) error {
	recs := make([]stream.Record, 0, len(b.Events)+1)
	var byIP []stream.Record
	for i := range b.Events {
		ev := &b.Events[i]
		recs = append(recs, stream.Record{Key: PrincipalKey(ev), Event: ev})
		if g.cfg.Notes != nil && g.cfg.Notes(ev) {
			recs = append(recs, stream.Record{Key: PrincipalKey(ev), Event: ev, Note: true})
		}
		if g.cfg.ByIPTopic != "" && ev.Failed() && ev.SourceIP != "" {
			byIP = append(byIP, stream.Record{Key: ev.SourceIP, Event: ev})
		}
	}
	if g.cfg.CarryPositions && b.Position != nil {
		if len(recs) == 0 {
			recs = append(recs, stream.Record{Key: b.Source})
		}
		recs[len(recs)-1].Source = b.Source
		recs[len(recs)-1].Position = b.Position
	}
	parts := 1
	if len(byIP) > 0 {
		parts = 2
	}
	var (
		mu      sync.Mutex
		left    = parts
		failure error
	)
	seq := g.take(b.Source)
	// The callbacks keep what they need, not b: its events are free once
	// the consumer is done with them, not only at the commit.
	src, pos, bdone := b.Source, b.Position, b.Done
	release := func(ferr error) {
		if ferr == nil && g.cfg.Checkpoints != nil && pos != nil {
			if err := g.cfg.Checkpoints.Save(src, pos); err != nil {
				g.log.Error("save source checkpoint", "source", src, "err", err)
				ferr = err
			}
		}
		if bdone != nil {
			bdone(ferr)
		}
	}
	done := func(err error) {
		mu.Lock()
		if err != nil && failure == nil {
			failure = err
		}
		left--
		last := left == 0
		ferr := failure
		mu.Unlock()
		if !last {
			return
		}
		g.finished(src, seq, ferr, release)
	}
	if len(recs) == 0 {
		done(nil)
		return nil
	}
	if len(byIP) > 0 {
		if err := g.cfg.Stream.Publish(ctx, g.cfg.ByIPTopic, byIP, done); err != nil {
			g.fail.WithLabelValues(b.Source).Inc()
			done(err)
			return fmt.Errorf("publish %s: %w", b.Source, err)
		}
	}
	if err := g.cfg.Stream.Publish(ctx, g.cfg.EventsTopic, recs, done); err != nil {
		g.fail.WithLabelValues(b.Source).Inc()
		return fmt.Errorf("publish %s: %w", b.Source, err)
	}
	g.out.WithLabelValues(b.Source).Add(float64(len(b.Events)))
	return nil
}

// PositionsFromMeta extracts the source positions of a detector checkpoint.
func PositionsFromMeta(meta map[string][]byte) map[string][]byte {
	out := map[string][]byte{}
	for k, v := range meta {
		if len(k) > len(MetaSourcePrefix) && k[:len(MetaSourcePrefix)] == MetaSourcePrefix {
			out[k[len(MetaSourcePrefix):]] = v
		}
	}
	return out
}
