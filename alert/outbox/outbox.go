// Package outbox owns the alert stage's durable hand-off: every alert the
// router accepts is written once, in one fsynced bbolt transaction, to one
// queue per output, and each output's delivery worker drains its own queue
// at its own pace. A finding is acknowledged to the detect stage (whose
// checkpoint then advances) as soon as Append returns, not after delivery,
// so a slow or dead output delays only its own queue. The file survives
// SIGKILL: an entry stays queued until its output acknowledges it
// (delivered or dead-lettered).
package outbox

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"auditwatch/alert/notify"
	"auditwatch/schema"
)

// FileName is the outbox's file name under the alert state directory.
const FileName = "outbox.db"

// Entry is one queued alert, or one batch of raw events, of one output.
type Entry struct {
	Seq      uint64       `json:"-"`
	Enqueued time.Time    `json:"enqueued"`
	Alert    notify.Alert `json:"alert"`
	// Events, when set, make the entry a batch of raw events for a SIEM
	// output (event_outputs); Alert is then empty.
	Events []schema.Event `json:"events,omitempty"`
}

// Outbox is safe for concurrent use. An empty path keeps the queues in
// memory (tests and embedders without a state directory).
type Outbox struct {
	db   *bolt.DB
	path string
	// beforeCommit, when set, runs inside every Append transaction
	// (fault injection: a disk-full error).
	beforeCommit func() error

	mu     sync.Mutex
	queues map[string]*queue
}

type queue struct {
	n      int       // entries queued
	oldest time.Time // enqueue time of the oldest entry (zero when empty)
	wake   chan struct{}
	mem    []Entry // memory mode only
	seq    uint64  // memory mode only
}

// Option changes how Open builds the outbox.
type Option func(*Outbox)

// WithCommitHook runs fn inside every Append before it commits; an error
// fails the Append as a full disk would. For fault tests.
func WithCommitHook(fn func() error) Option { return func(o *Outbox) { o.beforeCommit = fn } }

// Open opens (creating) the outbox at path with a queue for each output
// named. Entries of outputs no longer configured stay in the file and are
// reported by Orphans.
func Open(path string, outputs []string, opts ...Option) (*Outbox, error) {
	o := &Outbox{path: path, queues: map[string]*queue{}}
	for _, opt := range opts {
		opt(o)
	}
	for _, name := range outputs {
		o.queues[name] = &queue{wake: make(chan struct{}, 1)}
	}
	if path == "" {
		return o, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("alert outbox: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("alert outbox %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for name, q := range o.queues {
			b, err := tx.CreateBucketIfNotExists(bucket(name))
			if err != nil {
				return err
			}
			q.n = b.Stats().KeyN
			if k, v := b.Cursor().First(); k != nil {
				var e Entry
				if json.Unmarshal(v, &e) == nil {
					q.oldest = e.Enqueued
				}
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("alert outbox %s: %w", path, err)
	}
	o.db = db
	return o, nil
}

func bucket(output string) []byte { return []byte("q/" + output) }

func seqKey(n uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], n)
	return k[:]
}

// Path is the file the outbox lives in ("" in memory).
func (o *Outbox) Path() string { return o.path }

// ErrUnknownOutput is returned for a queue that was not opened.
var ErrUnknownOutput = errors.New("alert outbox: unknown output")

// Append queues every alert of batch (output name → alerts, in order) in
// one transaction, synced to disk before it returns. On error nothing of
// the batch is queued.
func (o *Outbox) Append(batch map[string][]notify.Alert, now time.Time) error {
	es := make(map[string][]Entry, len(batch))
	for name, as := range batch {
		for _, a := range as {
			es[name] = append(es[name], Entry{Enqueued: now, Alert: a})
		}
	}
	return o.append(es, now)
}

// AppendEvents queues evs as one entry on each of the outputs named, in
// one synced transaction.
func (o *Outbox) AppendEvents(outputs []string, evs []schema.Event, now time.Time) error {
	es := make(map[string][]Entry, len(outputs))
	for _, name := range outputs {
		es[name] = []Entry{{Enqueued: now, Events: evs}}
	}
	return o.append(es, now)
}

func (o *Outbox) append(batch map[string][]Entry, now time.Time) error {
	for name := range batch {
		if o.queues[name] == nil {
			return fmt.Errorf("%w %q", ErrUnknownOutput, name)
		}
	}
	if o.db == nil {
		if o.beforeCommit != nil {
			if err := o.beforeCommit(); err != nil {
				return fmt.Errorf("alert outbox: %w", err)
			}
		}
		o.mu.Lock()
		for name, es := range batch {
			q := o.queues[name]
			for _, e := range es {
				q.seq++
				e.Seq = q.seq
				q.mem = append(q.mem, e)
			}
			o.added(q, len(es), now)
		}
		o.mu.Unlock()
		o.wakeAll(batch)
		return nil
	}
	err := o.db.Update(func(tx *bolt.Tx) error {
		for name, es := range batch {
			b := tx.Bucket(bucket(name))
			for _, e := range es {
				n, err := b.NextSequence()
				if err != nil {
					return err
				}
				v, err := json.Marshal(e)
				if err != nil {
					return err
				}
				if err := b.Put(seqKey(n), v); err != nil {
					return err
				}
			}
		}
		if o.beforeCommit != nil {
			return o.beforeCommit()
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("alert outbox %s: %w", o.path, err)
	}
	o.mu.Lock()
	for name, es := range batch {
		o.added(o.queues[name], len(es), now)
	}
	o.mu.Unlock()
	o.wakeAll(batch)
	return nil
}

func (o *Outbox) added(q *queue, n int, now time.Time) {
	if n == 0 {
		return
	}
	if q.n == 0 {
		q.oldest = now
	}
	q.n += n
}

func (o *Outbox) wakeAll(batch map[string][]Entry) {
	for name, as := range batch {
		if len(as) == 0 {
			continue
		}
		select {
		case o.queues[name].wake <- struct{}{}:
		default:
		}
	}
}

// Wake returns a channel that receives after alerts are appended to
// output's queue.
func (o *Outbox) Wake(output string) <-chan struct{} {
	if q := o.queues[output]; q != nil {
		return q.wake
	}
	return nil
}

// Peek returns up to max entries at the head of output's queue, oldest
// first.
func (o *Outbox) Peek(output string, max int) ([]Entry, error) {
	q := o.queues[output]
	if q == nil {
		return nil, fmt.Errorf("%w %q", ErrUnknownOutput, output)
	}
	if o.db == nil {
		o.mu.Lock()
		defer o.mu.Unlock()
		n := min(max, len(q.mem))
		return append([]Entry(nil), q.mem[:n]...), nil
	}
	var out []Entry
	err := o.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucket(output)).Cursor()
		for k, v := c.First(); k != nil && len(out) < max; k, v = c.Next() {
			var e Entry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("entry %d: %w", binary.BigEndian.Uint64(k), err)
			}
			e.Seq = binary.BigEndian.Uint64(k)
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("alert outbox %s: %s: %w", o.path, output, err)
	}
	return out, nil
}

// Ack removes entry seq from output's queue (delivered or dead-lettered).
func (o *Outbox) Ack(output string, seq uint64) error {
	q := o.queues[output]
	if q == nil {
		return fmt.Errorf("%w %q", ErrUnknownOutput, output)
	}
	if o.db == nil {
		o.mu.Lock()
		defer o.mu.Unlock()
		for i, e := range q.mem {
			if e.Seq == seq {
				q.mem = append(q.mem[:i], q.mem[i+1:]...)
				q.n--
				break
			}
		}
		if len(q.mem) > 0 {
			q.oldest = q.mem[0].Enqueued
		} else {
			q.oldest = time.Time{}
		}
		return nil
	}
	var oldest time.Time
	var removed bool
	err := o.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket(output))
		if b.Get(seqKey(seq)) != nil {
			removed = true
			if err := b.Delete(seqKey(seq)); err != nil {
				return err
			}
		}
		if k, v := b.Cursor().First(); k != nil {
			var e Entry
			if json.Unmarshal(v, &e) == nil {
				oldest = e.Enqueued
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("alert outbox %s: %s: %w", o.path, output, err)
	}
	o.mu.Lock()
	if removed {
		q.n--
	}
	q.oldest = oldest
	o.mu.Unlock()
	return nil
}

// Backlog returns how many entries output's queue holds and when the
// oldest was queued (zero when empty).
func (o *Outbox) Backlog(output string) (int, time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	q := o.queues[output]
	if q == nil {
		return 0, time.Time{}
	}
	return q.n, q.oldest
}

// Orphans returns the queues in the file whose output is not configured,
// with their sizes (a renamed or removed output leaves its queue behind).
func (o *Outbox) Orphans() (map[string]int, error) {
	out := map[string]int{}
	if o.db == nil {
		return out, nil
	}
	err := o.db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			n := string(name)
			if len(n) > 2 && n[:2] == "q/" && o.queues[n[2:]] == nil {
				if k := b.Stats().KeyN; k > 0 {
					out[n[2:]] = k
				}
			}
			return nil
		})
	})
	return out, err
}

// Close closes the file.
func (o *Outbox) Close() error {
	if o.db == nil {
		return nil
	}
	return o.db.Close()
}
