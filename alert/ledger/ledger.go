// Package ledger owns the alert stage's small persistent state: which
// (output, finding id, revision) deliveries are done, so a redelivered
// finding never posts twice, and the Slack thread timestamp of each dedupe
// key, so repeats land in the same thread across restarts. It is a bbolt
// file; every write is one committed transaction.
package ledger

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// ErrInUse: another process (the running stage) holds the ledger.
var ErrInUse = errors.New("in use by another process (its lock was not released within 5s)")

var (
	bucketSent     = []byte("sent")
	bucketThreads  = []byte("threads")
	bucketAttempts = []byte("attempts")
)

// Outcome of a handled delivery.
const (
	Delivered    byte = 'd'
	DeadLettered byte = 'x'
)

// Ledger is safe for concurrent use. A zero path keeps everything in memory.
type Ledger struct {
	db *bolt.DB

	mu       sync.Mutex
	sent     map[string]byte
	threads  map[string]string
	attempts map[string]attempt
}

type attempt struct {
	at    time.Time
	where string
}

// Open opens (creating) the ledger at path, dropping delivery keys older
// than retention. An empty path gives an in-memory ledger.
func Open(path string, retention time.Duration, now time.Time) (*Ledger, error) {
	l := &Ledger{sent: map[string]byte{}, threads: map[string]string{}, attempts: map[string]attempt{}}
	if path == "" {
		return l, nil
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("alert ledger %s: %w", path, ErrInUse)
	}
	if err != nil {
		return nil, fmt.Errorf("alert ledger %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketSent, bucketThreads, bucketAttempts} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		if retention <= 0 {
			return nil
		}
		cutoff := now.Add(-retention).Unix()
		c := tx.Bucket(bucketSent).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if len(v) == 9 && int64(binary.BigEndian.Uint64(v[1:])) < cutoff {
				if err := c.Delete(); err != nil {
					return err
				}
			}
		}
		c = tx.Bucket(bucketAttempts).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if len(v) >= 8 && int64(binary.BigEndian.Uint64(v[:8]))/1e9 < cutoff {
				if err := c.Delete(); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("alert ledger %s: %w", path, err)
	}
	l.db = db
	return l, nil
}

// Key is the idempotency key of one finding revision on one output.
func Key(output, findingID string, revision int) string {
	return output + "\x00" + findingID + "\x00" + strconv.Itoa(revision)
}

// Done reports whether key was handled, and how (Delivered or DeadLettered).
func (l *Ledger) Done(key string) (bool, byte, error) {
	if l.db == nil {
		l.mu.Lock()
		defer l.mu.Unlock()
		o, ok := l.sent[key]
		return ok, o, nil
	}
	var out byte
	err := l.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketSent).Get([]byte(key)); len(v) > 0 {
			out = v[0]
		}
		return nil
	})
	if err != nil {
		return false, 0, fmt.Errorf("alert ledger: %w", err)
	}
	return out != 0, out, nil
}

// Mark records key as handled with outcome at now.
func (l *Ledger) Mark(key string, outcome byte, now time.Time) error {
	if l.db == nil {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.sent[key] = outcome
		return nil
	}
	v := make([]byte, 9)
	v[0] = outcome
	binary.BigEndian.PutUint64(v[1:], uint64(now.Unix()))
	if err := l.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketSent).Put([]byte(key), v) }); err != nil {
		return fmt.Errorf("alert ledger: %w", err)
	}
	return nil
}

// Forget removes key, so the delivery it records can be made again.
func (l *Ledger) Forget(key string) error {
	if l.db == nil {
		l.mu.Lock()
		defer l.mu.Unlock()
		delete(l.sent, key)
		return nil
	}
	if err := l.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketSent).Delete([]byte(key)) }); err != nil {
		return fmt.Errorf("alert ledger: %w", err)
	}
	return nil
}

// Thread returns the thread reference stored for key.
func (l *Ledger) Thread(key string) (string, bool, error) {
	if l.db == nil {
		l.mu.Lock()
		defer l.mu.Unlock()
		ts, ok := l.threads[key]
		return ts, ok, nil
	}
	var ts string
	err := l.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketThreads).Get([]byte(key)); v != nil {
			ts = string(v)
		}
		return nil
	})
	if err != nil {
		return "", false, fmt.Errorf("alert ledger: %w", err)
	}
	return ts, ts != "", nil
}

// SetThread stores the thread reference for key.
func (l *Ledger) SetThread(key, ts string) error {
	if ts == "" {
		return errors.New("alert ledger: empty thread reference")
	}
	if l.db == nil {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.threads[key] = ts
		return nil
	}
	if err := l.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketThreads).Put([]byte(key), []byte(ts)) }); err != nil {
		return fmt.Errorf("alert ledger: %w", err)
	}
	return nil
}

// UnknownPlace is the place Attempt gives for a record written before
// places were kept (8 bytes: the time alone).
const UnknownPlace = "?"

// Attempt returns when a post of key was first attempted, and where (the
// output's reference of the place, e.g. a Slack thread ts, "" for none),
// if one was: an output that cannot tell whether an attempt reached its
// peer (a timeout) looks the message up there before posting again.
func (l *Ledger) Attempt(key string) (time.Time, string, bool, error) {
	if l.db == nil {
		l.mu.Lock()
		defer l.mu.Unlock()
		a, ok := l.attempts[key]
		return a.at, a.where, ok, nil
	}
	var at time.Time
	var where string
	var ok bool
	err := l.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketAttempts).Get([]byte(key))
		switch {
		case len(v) == 8:
			at, where, ok = time.Unix(0, int64(binary.BigEndian.Uint64(v))), UnknownPlace, true
		case len(v) > 8 && v[8] == attemptPlaced:
			at, where, ok = time.Unix(0, int64(binary.BigEndian.Uint64(v))), string(v[9:]), true
		}
		return nil
	})
	if err != nil {
		return time.Time{}, "", false, fmt.Errorf("alert ledger: %w", err)
	}
	return at, where, ok, nil
}

// attemptPlaced marks an attempt record that carries its place: the time
// (8 bytes), this byte, the place.
const attemptPlaced byte = 1

// MarkAttempt records, durably, that a post of key is about to be made at
// where (replacing an earlier record of key).
func (l *Ledger) MarkAttempt(key string, at time.Time, where string) error {
	if l.db == nil {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.attempts[key] = attempt{at, where}
		return nil
	}
	v := make([]byte, 9, 9+len(where))
	binary.BigEndian.PutUint64(v, uint64(at.UnixNano()))
	v[8] = attemptPlaced
	v = append(v, where...)
	if err := l.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketAttempts).Put([]byte(key), v) }); err != nil {
		return fmt.Errorf("alert ledger: %w", err)
	}
	return nil
}

// Scoped returns a view of the thread and attempt tables whose keys are
// prefixed with scope (an output name), as one output's journal.
func (l *Ledger) Scoped(scope string) *Threads { return &Threads{l: l, scope: scope + "\x00"} }

// Threads is one output's thread and attempt tables.
type Threads struct {
	l     *Ledger
	scope string
}

// Thread returns the thread reference of key.
func (t *Threads) Thread(key string) (string, bool, error) { return t.l.Thread(t.scope + key) }

// SetThread stores the thread reference of key.
func (t *Threads) SetThread(key, ts string) error { return t.l.SetThread(t.scope+key, ts) }

// Attempt returns when and where a post of key was attempted.
func (t *Threads) Attempt(key string) (time.Time, string, bool, error) {
	return t.l.Attempt(t.scope + key)
}

// MarkAttempt records that a post of key is about to be made at where.
func (t *Threads) MarkAttempt(key string, at time.Time, where string) error {
	return t.l.MarkAttempt(t.scope+key, at, where)
}

// Close closes the file.
func (l *Ledger) Close() error {
	if l.db == nil {
		return nil
	}
	return l.db.Close()
}
