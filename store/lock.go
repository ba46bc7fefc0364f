package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// ErrStoreBusy is returned when another process holds the embedded store.
var ErrStoreBusy = errors.New("embedded store is in use by another process")

// ErrNoStore is returned by read-only opens of a store that does not exist.
var ErrNoStore = errors.New("store does not exist")

// The embedded engine opens a data directory in one process only. Every
// process that opens one first takes an exclusive flock(2) on the
// directory itself (nothing is created for it): the pipeline waits for
// it, so a query that opened the store a moment earlier delays the
// pipeline's start by the query's duration instead of making it fail, and
// a query that finds it taken asks the running process's query endpoint.
// Within one process the lock is shared (connections of one process share
// the engine).
type dirLock struct {
	f *os.File
	n int
}

var (
	locksMu sync.Mutex
	locks   = map[string]*dirLock{}
)

// lockRetry is the clock of lockDir's retries while the lock is taken
// (tests drive it).
var lockRetry = func() <-chan time.Time { return time.After(50 * time.Millisecond) }

// lockDir takes the directory's lock, waiting up to wait (0: try once).
// It returns ErrStoreBusy when the lock stays taken.
func lockDir(ctx context.Context, dir string, wait time.Duration) (func(), error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	locksMu.Lock()
	defer locksMu.Unlock()
	if l := locks[abs]; l != nil {
		l.n++
		return releaser(abs), nil
	}
	f, err := os.Open(abs)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(wait)
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", abs, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("%s: %w", abs, ErrStoreBusy)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-lockRetry():
		}
	}
	locks[abs] = &dirLock{f: f, n: 1}
	return releaser(abs), nil
}

func releaser(abs string) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			locksMu.Lock()
			defer locksMu.Unlock()
			l := locks[abs]
			if l == nil {
				return
			}
			l.n--
			if l.n == 0 {
				l.f.Close() // releases the flock
				delete(locks, abs)
			}
		})
	}
}
