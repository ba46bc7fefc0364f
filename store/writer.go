package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"auditwatch/schema"
)

// Inserter is what the Writer writes blocks to (a Store).
type Inserter interface {
	InsertEvents(ctx context.Context, evs []schema.Event) error
	InsertFindings(ctx context.Context, fs []schema.Finding) error
}

// ErrWriterClosed is returned by Add after Close.
var ErrWriterClosed = errors.New("store writer is closed")

// Writer batches events and findings into blocks bounded by row count and
// age. A block that fails is kept and retried as the same block, so it
// carries the same deduplication token (derived from its rows' ids) and a
// retry that follows a lost acknowledgement never doubles rows. Flush returns only when every row added before it is durable.
type Writer struct {
	st     Inserter
	cfg    BatchConfig
	logger *slog.Logger

	mu      sync.Mutex
	evs     []schema.Event
	fs      []schema.Finding
	oldest  time.Time // of the buffered events
	oldestF time.Time // of the buffered findings
	closed  bool
	// flushing is held by the one flush at a time (a channel so that a
	// caller waiting for it gives up when its ctx ends); pending blocks
	// live under it.
	flushing chan struct{}
	pendEv   []schema.Event
	pendF    []schema.Finding

	// Submit's bookkeeping (under mu): rows ever added, rows ever
	// written, the callbacks waiting for a count of them, the estimated
	// bytes of events not yet written, and a channel closed (and
	// replaced) after each written block.
	addedEv, addedF     uint64
	writtenEv, writtenF uint64
	acks                []ack
	queuedBytes         int
	wrote               chan struct{}
	lastWrite           time.Time

	kick chan struct{}
	stop chan struct{}
	done chan struct{}
	// loopCtx bounds the loop's own flushes; Close cancels it so that a
	// stalled store does not hold Close beyond its ctx.
	loopCtx    context.Context
	cancelLoop context.CancelFunc

	rows     *prometheus.CounterVec
	failures *prometheus.CounterVec
	seconds  prometheus.Histogram
	buffered prometheus.Gauge
}

// NewWriter starts a Writer whose background loop flushes rows older than
// cfg.MaxInterval. Close stops it.
func NewWriter(st Inserter, cfg BatchConfig, logger *slog.Logger, reg prometheus.Registerer) (*Writer, error) {
	if cfg.MaxRows <= 0 || cfg.MaxInterval <= 0 || cfg.RetryBackoff <= 0 {
		c := Config{Batch: cfg}
		c.SetDefaults()
		cfg = c.Batch
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	w := &Writer{
		st: st, cfg: cfg, logger: logger,
		stop: make(chan struct{}), done: make(chan struct{}),
		kick: make(chan struct{}, 1), wrote: make(chan struct{}),
		flushing: make(chan struct{}, 1),
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "auditwatch_store_rows_inserted_total", Help: "Rows written to storage, by table.",
		}, []string{"table"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "auditwatch_store_insert_failed_total", Help: "Failed block inserts (retried), by table.",
		}, []string{"table"}),
		seconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "auditwatch_store_insert_seconds", Help: "Time to write one block.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}),
		buffered: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "auditwatch_store_buffered_rows", Help: "Rows waiting in the storage writer.",
		}),
	}
	// Every table's series exist from the start (at 0), so dashboards and
	// alerts on them see the writer before its first block or failure.
	for _, table := range []string{"events", "findings"} {
		w.rows.WithLabelValues(table)
		w.failures.WithLabelValues(table)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{w.rows, w.failures, w.seconds, w.buffered} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("store writer metrics: %w", err)
			}
		}
	}
	w.loopCtx, w.cancelLoop = context.WithCancel(context.Background())
	go w.loop()
	return w, nil
}

func (w *Writer) loop() {
	defer close(w.done)
	tick := min(w.cfg.MaxInterval.D()/4, 100*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		var all, findings bool
		select {
		case <-w.stop:
			return
		case <-w.kick:
			w.mu.Lock()
			all = len(w.evs) > 0 || len(w.fs) > 0
			w.mu.Unlock()
		case <-t.C:
			w.mu.Lock()
			all = len(w.evs) > 0 && time.Since(w.oldest) >= w.cfg.MaxInterval.D() ||
				len(w.fs) > 0 && time.Since(w.oldestF) >= w.cfg.MaxInterval.D()
			findings = len(w.fs) > 0 && time.Since(w.oldestF) >= findingsDelay
			w.mu.Unlock()
		}
		if !all && !findings {
			continue
		}
		ctx, cancel := context.WithTimeout(w.loopCtx, 4*w.cfg.MaxInterval.D()+10*time.Second)
		var err error
		if all {
			err = w.Flush(ctx)
		} else {
			err = w.flushFindings(ctx)
		}
		cancel()
		if err != nil && w.loopCtx.Err() == nil {
			w.logger.Warn("storage flush failed; rows kept for retry", "err", err)
		}
	}
}

// findingsDelay is how long the loop lets findings gather before it
// writes them on their own (an analyst looks a finding up, e.g. with
// `auditwatch allow`, as soon as it is alerted); events wait for
// MaxInterval, so their blocks stay large.
const findingsDelay = 200 * time.Millisecond

// flushFindings writes the buffered findings (not the events).
func (w *Writer) flushFindings(ctx context.Context) error {
	if err := w.lockFlush(ctx); err != nil {
		return err
	}
	defer w.unlockFlush()
	if len(w.pendEv) > 0 {
		// a failed events block comes first
		return w.writePending(ctx)
	}
	if len(w.pendF) == 0 {
		w.mu.Lock()
		m := min(len(w.fs), w.cfg.MaxRows)
		w.pendF = append([]schema.Finding(nil), w.fs[:m]...)
		w.fs = append(w.fs[:0:0], w.fs[m:]...)
		if len(w.fs) > 0 {
			w.oldestF = time.Now()
		}
		w.buffered.Set(float64(len(w.evs) + len(w.fs)))
		w.mu.Unlock()
	}
	if len(w.pendF) == 0 {
		return nil
	}
	return w.writePending(ctx)
}

// Add buffers events; when a block is full it is written before Add returns
// (back-pressure on the caller).
func (w *Writer) Add(ctx context.Context, evs []schema.Event) error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return ErrWriterClosed
	}
	if len(w.evs) == 0 {
		w.oldest = time.Now()
	}
	w.evs = append(w.evs, evs...)
	w.addedEv += uint64(len(evs))
	w.queuedBytes += eventsBytes(evs)
	full := len(w.evs) >= w.cfg.MaxRows
	w.buffered.Set(float64(len(w.evs) + len(w.fs)))
	w.mu.Unlock()
	if full {
		return w.Flush(ctx)
	}
	return nil
}

// AddFindings buffers findings like Add.
func (w *Writer) AddFindings(ctx context.Context, fs []schema.Finding) error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return ErrWriterClosed
	}
	if len(w.fs) == 0 {
		w.oldestF = time.Now()
	}
	w.fs = append(w.fs, fs...)
	w.addedF += uint64(len(fs))
	full := len(w.fs) >= w.cfg.MaxRows
	w.buffered.Set(float64(len(w.evs) + len(w.fs)))
	w.mu.Unlock()
	if full {
		return w.Flush(ctx)
	}
	return nil
}

// Flush writes every buffered row in blocks of at most MaxRows, retrying a
// failed block (same rows, same token) until ctx ends. It returns nil only
// when every row added before the call is stored; on error the rows stay
// buffered for the next Flush.
func (w *Writer) Flush(ctx context.Context) error {
	if err := w.lockFlush(ctx); err != nil {
		return err
	}
	defer w.unlockFlush()
	for {
		if len(w.pendEv) == 0 && len(w.pendF) == 0 {
			w.mu.Lock()
			n := min(len(w.evs), w.cfg.MaxRows)
			w.pendEv = append([]schema.Event(nil), w.evs[:n]...)
			w.evs = append(w.evs[:0:0], w.evs[n:]...)
			m := min(len(w.fs), w.cfg.MaxRows)
			w.pendF = append([]schema.Finding(nil), w.fs[:m]...)
			w.fs = append(w.fs[:0:0], w.fs[m:]...)
			if len(w.evs) > 0 {
				w.oldest = time.Now()
			}
			if len(w.fs) > 0 {
				w.oldestF = time.Now()
			}
			w.mu.Unlock()
		}
		if len(w.pendEv) == 0 && len(w.pendF) == 0 {
			w.buffered.Set(0)
			return nil
		}
		if err := w.writePending(ctx); err != nil {
			return err
		}
	}
}

// lockFlush waits for the flush in progress, if any, until ctx ends.
func (w *Writer) lockFlush(ctx context.Context) error {
	select {
	case w.flushing <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("storage flush: waiting for the flush in progress: %w", ctx.Err())
	}
}

func (w *Writer) unlockFlush() { <-w.flushing }

func (w *Writer) writePending(ctx context.Context) error {
	backoff := w.cfg.RetryBackoff.D()
	for {
		err := w.tryPending(ctx)
		if err == nil {
			return nil
		}
		w.logger.Warn("storage insert failed; retrying the same block", "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return fmt.Errorf("storage flush: %w (last insert error: %v)", ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

func (w *Writer) tryPending(ctx context.Context) error {
	if len(w.pendEv) > 0 {
		start := time.Now()
		if err := w.st.InsertEvents(ctx, w.pendEv); err != nil {
			w.failures.WithLabelValues("events").Inc()
			return err
		}
		w.seconds.Observe(time.Since(start).Seconds())
		w.rows.WithLabelValues("events").Add(float64(len(w.pendEv)))
		w.written(w.pendEv, 0)
		w.pendEv = nil
	}
	if len(w.pendF) > 0 {
		if err := w.st.InsertFindings(ctx, w.pendF); err != nil {
			w.failures.WithLabelValues("findings").Inc()
			return err
		}
		w.rows.WithLabelValues("findings").Add(float64(len(w.pendF)))
		w.written(nil, len(w.pendF))
		w.pendF = nil
	}
	return nil
}

// ack is a Submit callback waiting until this many rows are written.
type ack struct {
	ev, f uint64
	done  func()
}

// maxQueuedBytes bounds the events Submit queues ahead of the store
// (estimated by eventsBytes): beyond it, Submit waits for a block to be
// written.
const maxQueuedBytes = 128 << 20

// eventsBytes estimates the memory evs hold: each event's original
// record and about 512 bytes of fields.
func eventsBytes(evs []schema.Event) int {
	n := 0
	for i := range evs {
		n += len(evs[i].Raw) + 512
	}
	return n
}

// written counts a block written (called under flushing) and runs the
// Submit callbacks it completes, in submission order.
func (w *Writer) written(evs []schema.Event, findings int) {
	w.mu.Lock()
	w.writtenEv += uint64(len(evs))
	w.writtenF += uint64(findings)
	w.lastWrite = time.Now()
	w.queuedBytes = max(w.queuedBytes-eventsBytes(evs), 0)
	n := 0
	for n < len(w.acks) && w.acks[n].ev <= w.writtenEv && w.acks[n].f <= w.writtenF {
		n++
	}
	due := w.acks[:n:n]
	w.acks = w.acks[n:]
	close(w.wrote)
	w.wrote = make(chan struct{})
	w.mu.Unlock()
	for _, a := range due {
		a.done()
	}
}

// Submit queues events and findings to be stored and returns without
// waiting for the store: the detect stage hands each checkpoint's events
// over this way and goes on detecting while they are written. done (may
// be nil) runs once they, and every row added or submitted before them,
// are stored; it runs on the writer's goroutine and must not block. The
// writer's loop writes the queued events once they are MaxInterval old,
// or at once when MaxRows or 32 MiB of events are queued, in blocks of up
// to MaxRows (findings after 200 ms, on their own): when storing
// falls behind (a slow insert, merges), what queued meanwhile goes into
// one larger block, which costs the store less per row. A failed block is
// retried as the same block until it is written or the writer closes.
// Submit waits only while the events queued ahead of the store exceed
// 128 MiB (back-pressure, until ctx ends).
func (w *Writer) Submit(ctx context.Context, evs []schema.Event, fs []schema.Finding, done func()) error {
	for {
		w.mu.Lock()
		if w.closed {
			w.mu.Unlock()
			return ErrWriterClosed
		}
		if w.queuedBytes <= maxQueuedBytes || w.queuedBytes == 0 {
			break
		}
		wrote := w.wrote
		w.mu.Unlock()
		w.signal()
		select {
		case <-wrote:
		case <-ctx.Done():
			return fmt.Errorf("storage queue full: %w", ctx.Err())
		}
	}
	if len(w.evs) == 0 && len(evs) > 0 {
		w.oldest = time.Now()
	}
	if len(w.fs) == 0 && len(fs) > 0 {
		w.oldestF = time.Now()
	}
	w.evs = append(w.evs, evs...)
	w.fs = append(w.fs, fs...)
	w.addedEv += uint64(len(evs))
	w.addedF += uint64(len(fs))
	w.queuedBytes += eventsBytes(evs)
	w.buffered.Set(float64(len(w.evs) + len(w.fs)))
	// A quarter of the queue's bound is written at once, so the queue has
	// room for what comes while it is written.
	full := len(w.evs) >= w.cfg.MaxRows || len(w.fs) >= w.cfg.MaxRows || w.queuedBytes >= maxQueuedBytes/4
	if done != nil {
		if w.writtenEv >= w.addedEv && w.writtenF >= w.addedF {
			w.mu.Unlock()
			done()
			return nil
		}
		w.acks = append(w.acks, ack{ev: w.addedEv, f: w.addedF, done: done})
	}
	w.mu.Unlock()
	if full {
		w.signal()
	}
	return nil
}

// Backlog is what the writer holds and has not written: events and
// findings added or submitted and not yet stored, and when a block was
// last written (zero before the first): /readyz detail.
func (w *Writer) Backlog() (events, findings uint64, lastWrite time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.addedEv - w.writtenEv, w.addedF - w.writtenF, w.lastWrite
}

// signal asks the writer's loop to write what is queued now.
func (w *Writer) signal() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Close flushes what is buffered (bounded by ctx) and stops the writer.
func (w *Writer) Close(ctx context.Context) error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	w.mu.Unlock()
	close(w.stop)
	w.cancelLoop()
	<-w.done
	return w.Flush(ctx)
}

// EventsToken is a block's deduplication token: a hash of its events' ids.
func EventsToken(evs []schema.Event) string {
	h := sha256.New()
	for i := range evs {
		h.Write([]byte(evs[i].Source))
		h.Write([]byte{0})
		h.Write([]byte(evs[i].ID))
		h.Write([]byte{0})
	}
	return "ev-" + hex.EncodeToString(h.Sum(nil)[:16])
}

// FindingsToken is a findings block's deduplication token.
func FindingsToken(fs []schema.Finding) string {
	h := sha256.New()
	for i := range fs {
		fmt.Fprintf(h, "%s\x00%d\x00", fs[i].ID, fs[i].Revision)
	}
	return "fi-" + hex.EncodeToString(h.Sum(nil)[:16])
}

// WriteEvents adds evs and returns once they (and everything added before)
// are stored: the durable event sink the pipeline hands runs of events to
// before it acknowledges its input.
func (w *Writer) WriteEvents(ctx context.Context, evs []schema.Event) error {
	if err := w.Add(ctx, evs); err != nil {
		return err
	}
	return w.Flush(ctx)
}

// WriteFindings is WriteEvents for findings (a durable finding sink).
func (w *Writer) WriteFindings(ctx context.Context, fs []schema.Finding) error {
	if err := w.AddFindings(ctx, fs); err != nil {
		return err
	}
	return w.Flush(ctx)
}
