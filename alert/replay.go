package alert

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"auditwatch/alert/deadletter"
	"auditwatch/alert/ledger"
	"auditwatch/alert/notify"
	"auditwatch/schema"
)

// ReplayStats counts what Replay did.
type ReplayStats struct {
	Findings, Events int // records delivered again (events counted one by one)
	Failed           int // records that failed again (and were dead-lettered again)
	Done             int // records already delivered (by an earlier resend or later redelivery): skipped
	Skipped          int // records of an output not configured, not selected, or unable to take them
}

// Replay reads a dead-letter file and delivers every record again to the
// output that failed it (only output, when set), through that output's
// retry loop. It reads the file as it was when Replay started, so records
// that fail again — appended to the router's live dead-letter file, which
// may be the same file — are left for the next run. It is idempotent: a
// finding revision the ledger records as delivered to that output, and an
// event batch resent before, are skipped; running it twice sends nothing
// twice.
func (r *Router) Replay(ctx context.Context, path, only string) (ReplayStats, error) {
	if !r.enter() {
		return ReplayStats{}, ErrClosed
	}
	defer r.cmu.RUnlock()
	ctx, cancel := r.bind(ctx)
	defer cancel()
	var st ReplayStats
	err := deadletter.ReadFileAsOfNow(path, func(line int, rec deadletter.Record) error {
		if only != "" && rec.Output != only {
			st.Skipped++
			return nil
		}
		out, ok := r.outputs[rec.Output]
		if !ok {
			st.Skipped++
			r.log.Warn("dead-letter record for an unknown output skipped", "line", line, "output", notify.SanitizeLine(rec.Output, 64))
			return nil
		}
		switch {
		case rec.Finding != nil:
			f := *rec.Finding
			key := ledger.Key(out.name, f.ID, f.Revision)
			done, how, err := r.ledger.Done(key)
			if err != nil {
				return fmt.Errorf("line %d: %w", line, err)
			}
			if done && how == ledger.Delivered {
				st.Done++
				return nil
			}
			if err := r.ledger.Forget(key); err != nil {
				return fmt.Errorf("line %d: %w", line, err)
			}
			a := notify.Alert{Finding: f, Key: groupKey(f), Repeat: 1, GroupCount: max(f.Count, 1)}
			if err := r.deliver(ctx, out, a, nil); err != nil {
				return fmt.Errorf("line %d: not resent: %w", line, err)
			}
			if done, how, _ := r.ledger.Done(key); done && how == ledger.Delivered {
				st.Findings++
			} else {
				st.Failed++
			}
		case len(rec.Events) > 0 && out.ev == nil:
			st.Skipped++
		case len(rec.Events) > 0:
			key := ledger.Key(out.name, "events:"+batchID(rec.Events), 0)
			done, _, err := r.ledger.Done(key)
			if err != nil {
				return fmt.Errorf("line %d: %w", line, err)
			}
			if done {
				st.Done++
				return nil
			}
			attempts, err := out.retry.Do(ctx, func(ctx context.Context) error { return out.ev.SendEvents(ctx, rec.Events) }, r.observe(out.name))
			if err == nil {
				st.Events += len(rec.Events)
				r.m.eventsSent.WithLabelValues(out.name).Add(float64(len(rec.Events)))
				return r.ledger.Mark(key, ledger.Delivered, r.clock.Now())
			}
			if ctx.Err() != nil {
				return fmt.Errorf("line %d: not resent: %w", line, err)
			}
			st.Failed++
			if err := r.deadLetter(out, err, attempts, deadletter.Record{Events: rec.Events}); err != nil {
				return fmt.Errorf("line %d: %w", line, err)
			}
		default:
			st.Skipped++
		}
		return nil
	})
	return st, err
}

// batchID identifies an event batch by its events' ids and times.
func batchID(evs []schema.Event) string {
	h := sha256.New()
	for _, ev := range evs {
		fmt.Fprintf(h, "%s\x00%s\x00%d\n", ev.Source, ev.ID, ev.Time.UnixNano())
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}
