package alert

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"auditwatch/alert/deadletter"
	"auditwatch/alert/ledger"
	"auditwatch/alert/notify"
	"auditwatch/alert/outbox"
)

// Delivery states of an output, as reported by Status and the
// auditwatch_alert_output_state metric.
const (
	StateIdle       = "idle"       // queue empty
	StateDelivering = "delivering" // working through the queue
	StateRetrying   = "retrying"   // the head alert failed and is being retried
)

// worker drains one output's outbox queue in order, one alert at a time:
// the idempotency check, the output's retry loop, then the ledger record
// and the queue acknowledgement (or the dead letter).
type worker struct {
	r     *Router
	out   *output
	pause time.Duration // wait after an error that left the head queued

	mu        sync.Mutex
	state     string
	lastError string // reason of the last failed attempt
	lastOK    time.Time
}

// OutputStatus is one output's delivery state.
type OutputStatus struct {
	Output string `json:"output"`
	State  string `json:"state"`
	// Backlog is how many alerts are queued; Lag how long the oldest has
	// waited.
	Backlog int           `json:"backlog"`
	Lag     time.Duration `json:"lag_ns"`
	// LastError is the reason of the last failed attempt ("" when the last
	// attempt succeeded); LastDelivered when the last alert was delivered.
	LastError     string    `json:"last_error,omitempty"`
	LastDelivered time.Time `json:"last_delivered,omitzero"`
}

// Status returns every output's delivery state, in config order.
func (r *Router) Status() []OutputStatus {
	now := r.clock.Now()
	out := make([]OutputStatus, 0, len(r.order))
	for _, name := range r.order {
		s := OutputStatus{Output: name, State: StateIdle}
		n, oldest := r.box.Backlog(name)
		s.Backlog = n
		if n > 0 && !oldest.IsZero() {
			s.Lag = max(now.Sub(oldest), 0)
		}
		if w := r.outputs[name].w; w != nil {
			w.mu.Lock()
			if w.state != "" {
				s.State = w.state
			}
			s.LastError, s.LastDelivered = w.lastError, w.lastOK
			w.mu.Unlock()
		}
		if n == 0 {
			s.State = StateIdle
		}
		out = append(out, s)
	}
	return out
}

func (w *worker) set(state string) {
	w.mu.Lock()
	w.state = state
	w.mu.Unlock()
}

func (w *worker) run(ctx context.Context) {
	name := w.out.name
	box := w.r.box
	for ctx.Err() == nil {
		es, err := box.Peek(name, peekWindow)
		if err != nil {
			w.r.log.Error("alert outbox unreadable", "output", name, "err", err)
			w.sleep(ctx)
			continue
		}
		if len(es) == 0 {
			w.set(StateIdle)
			select {
			case <-ctx.Done():
				return
			case <-box.Wake(name):
			case <-time.After(5 * time.Second):
			}
			continue
		}
		w.set(StateDelivering)
		ordered := firstAlertsFirst(es)
		taken := map[uint64]bool{}
		for i, e := range ordered {
			if taken[e.Seq] {
				continue
			}
			var err error
			if batch := w.updates(ordered[i:], taken); len(batch) > 1 {
				err = w.handleBatch(ctx, batch)
			} else {
				err = w.handle(ctx, e)
			}
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				w.r.log.Error("alert neither delivered nor dead-lettered; it stays queued", "output", name,
					"finding", e.Alert.Finding.ID, "events", len(e.Events), "err", notify.SanitizeLine(err.Error(), 512))
				w.sleep(ctx)
				break
			}
		}
	}
}

// peekWindow is how many queued entries a worker looks at at once: the
// window in which a new incident's first alert goes ahead of updates.
const peekWindow = 256

// firstAlertsFirst orders a peeked window for delivery: the first alert of
// each group (a new incident) before the updates of groups already
// alerted, each kind in queue order. When an output is slower than the
// findings (Slack's one post a second per channel), a new incident is not
// queued behind another's repeats; an update still follows its own first
// alert, which is either already delivered or earlier in this window.
func firstAlertsFirst(es []outbox.Entry) []outbox.Entry {
	out := make([]outbox.Entry, 0, len(es))
	for _, e := range es {
		if len(e.Events) == 0 && !e.Alert.Update {
			out = append(out, e)
		}
	}
	if len(out) == 0 || len(out) == len(es) {
		return es
	}
	for _, e := range es {
		if len(e.Events) > 0 || e.Alert.Update {
			out = append(out, e)
		}
	}
	return out
}

// BatchNotifier is a Notifier that can deliver several queued updates of
// one incident in one message (Slack bot mode: one thread reply), each
// revision still delivered once. MaxBatch is how many at once (0: none);
// NotifyBatch makes one attempt for all of them.
type BatchNotifier interface {
	MaxBatch() int
	NotifyBatch(ctx context.Context, as []notify.Alert) error
}

// updates returns es[0] and the updates of its incident queued after it
// in es (up to the output's batch size), marking them taken, when es[0]
// is an update and the output batches; else nil. A backlog of one
// incident's updates then costs one message of a rate-limited output, not
// one per update.
func (w *worker) updates(es []outbox.Entry, taken map[uint64]bool) []outbox.Entry {
	bn, ok := w.out.n.(BatchNotifier)
	head := es[0]
	if !ok || len(head.Events) > 0 || !head.Alert.Update {
		return nil
	}
	limit := bn.MaxBatch()
	if limit < 2 {
		return nil
	}
	key := head.Alert.ThreadKey()
	batch := []outbox.Entry{head}
	for _, e := range es[1:] {
		if len(batch) == limit {
			break
		}
		if !taken[e.Seq] && len(e.Events) == 0 && e.Alert.Update && e.Alert.ThreadKey() == key {
			batch = append(batch, e)
		}
	}
	if len(batch) > 1 {
		for _, e := range batch {
			taken[e.Seq] = true
		}
	}
	return batch
}

// handleBatch delivers several updates of one incident in one message
// (those the ledger has not seen), records each in the ledger and
// acknowledges each in the outbox; what fails permanently is
// dead-lettered, each finding on its own.
func (w *worker) handleBatch(ctx context.Context, es []outbox.Entry) error {
	r, out := w.r, w.out
	var todo, repeats []outbox.Entry
	inBatch := map[string]bool{}
	for _, e := range es {
		f := e.Alert.Finding
		key := ledger.Key(out.name, f.ID, f.Revision)
		if inBatch[key] {
			// The outbox is written at least once: after a restart the
			// same revision can be queued twice, and both copies can be
			// picked for one batch. It is posted once; the copy is
			// acknowledged with it.
			repeats = append(repeats, e)
			continue
		}
		done, _, err := r.ledger.Done(key)
		if err != nil {
			return fmt.Errorf("output %s: %w", out.name, err)
		}
		if done {
			r.m.suppressed.WithLabelValues("duplicate").Inc()
			if err := r.box.Ack(out.name, e.Seq); err != nil {
				return err
			}
			continue
		}
		inBatch[key] = true
		todo = append(todo, e)
	}
	if len(todo) == 0 {
		return nil
	}
	as := make([]notify.Alert, len(todo))
	for i, e := range todo {
		as[i] = e.Alert
	}
	bn := out.n.(BatchNotifier)
	start := r.clock.Now()
	observe := r.observe(out.name)
	attempts, err := out.retry.Do(ctx, func(ctx context.Context) error { return bn.NotifyBatch(ctx, as) }, func(at notify.Attempt) {
		observe(at)
		w.mu.Lock()
		w.state, w.lastError = StateRetrying, string(at.Decision.Reason)
		w.mu.Unlock()
	})
	if err != nil && (ctx.Err() != nil || notify.Classify(err).Reason == notify.ReasonCanceled) {
		return fmt.Errorf("output %s, %d updates of %s: %w", out.name, len(as), as[0].Finding.ID, err)
	}
	if err == nil {
		r.m.sent.WithLabelValues(out.name).Add(float64(len(as)))
		r.m.latency.WithLabelValues(out.name).Observe(r.clock.Now().Sub(start).Seconds())
		w.mu.Lock()
		w.state, w.lastError, w.lastOK = StateDelivering, "", r.clock.Now()
		w.mu.Unlock()
	}
	for _, e := range todo {
		f := e.Alert.Finding
		state := ledger.Delivered
		if err != nil {
			fc := f
			if derr := r.deadLetter(out, err, attempts, deadletter.Record{Finding: &fc}); derr != nil {
				return derr
			}
			state = ledger.DeadLettered
		}
		if merr := r.ledger.Mark(ledger.Key(out.name, f.ID, f.Revision), state, r.clock.Now()); merr != nil {
			return fmt.Errorf("output %s: finding %s not recorded: %w", out.name, f.ID, merr)
		}
		r.m.lag.WithLabelValues(out.name).Observe(max(r.clock.Now().Sub(e.Enqueued), 0).Seconds())
		if err := r.box.Ack(out.name, e.Seq); err != nil {
			return err
		}
	}
	for _, e := range repeats { // recorded in the ledger with their first copy
		r.m.suppressed.WithLabelValues("duplicate").Inc()
		if err := r.box.Ack(out.name, e.Seq); err != nil {
			return err
		}
	}
	return nil
}

func (w *worker) sleep(ctx context.Context) {
	t := time.NewTimer(w.pause)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// handle delivers (or dead-letters) e and acknowledges it in the outbox.
func (w *worker) handle(ctx context.Context, e outbox.Entry) error {
	if len(e.Events) > 0 {
		if w.out.ev == nil {
			w.r.log.Error("queued events for an output that cannot take them; dropped", "output", w.out.name, "events", len(e.Events))
		} else if err := w.r.deliverEvents(ctx, w.out, e.Events); err != nil {
			return err
		}
	} else if err := w.r.deliver(ctx, w.out, e.Alert, w); err != nil {
		return err
	}
	w.r.m.lag.WithLabelValues(w.out.name).Observe(max(w.r.clock.Now().Sub(e.Enqueued), 0).Seconds())
	return w.r.box.Ack(w.out.name, e.Seq)
}

// deliver sends a to out through its retry loop unless the ledger says
// this finding revision was already handled there, then records the
// outcome; what fails permanently or runs out of retries is dead-lettered.
// An error means a was neither delivered nor dead-lettered (the context
// ended, or the dead-letter file failed). w, when set, follows the state.
func (r *Router) deliver(ctx context.Context, out *output, a notify.Alert, w *worker) error {
	f := a.Finding
	lkey := ledger.Key(out.name, f.ID, f.Revision)
	done, _, err := r.ledger.Done(lkey)
	if err != nil {
		return fmt.Errorf("output %s: %w", out.name, err)
	}
	if done {
		r.m.suppressed.WithLabelValues("duplicate").Inc()
		return nil
	}
	start := r.clock.Now()
	observe := r.observe(out.name)
	attempts, err := out.retry.Do(ctx, func(ctx context.Context) error { return out.n.Notify(ctx, a) }, func(at notify.Attempt) {
		observe(at)
		if w != nil {
			w.mu.Lock()
			w.state, w.lastError = StateRetrying, string(at.Decision.Reason)
			w.mu.Unlock()
		}
	})
	if err == nil {
		r.m.sent.WithLabelValues(out.name).Inc()
		r.m.latency.WithLabelValues(out.name).Observe(r.clock.Now().Sub(start).Seconds())
		if w != nil {
			w.mu.Lock()
			w.state, w.lastError, w.lastOK = StateDelivering, "", r.clock.Now()
			w.mu.Unlock()
		}
		if merr := r.ledger.Mark(lkey, ledger.Delivered, r.clock.Now()); merr != nil {
			// Delivered but not recorded: the entry stays queued and the
			// next attempt may post again (Slack looks its message up first).
			return fmt.Errorf("output %s: delivered finding %s not recorded: %w", out.name, f.ID, merr)
		}
		return nil
	}
	if ctx.Err() != nil || notify.Classify(err).Reason == notify.ReasonCanceled {
		return fmt.Errorf("output %s, finding %s: %w", out.name, f.ID, err)
	}
	fc := f
	if err := r.deadLetter(out, err, attempts, deadletter.Record{Finding: &fc}); err != nil {
		return err
	}
	if merr := r.ledger.Mark(lkey, ledger.DeadLettered, r.clock.Now()); merr != nil {
		return errors.Join(fmt.Errorf("output %s: dead-lettered finding %s not recorded", out.name, f.ID), merr)
	}
	return nil
}
