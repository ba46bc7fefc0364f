// Package state owns the durable store behind auditwatch's detectors: an
// embedded bbolt file holding every detector's baselines and open bursts,
// the engine's event-time reorder buffer and the caller's position metadata.
//
// Why bbolt: detector state is a key/value working set that is read on a
// cache miss and written in batches at a checkpoint. bbolt gives exactly
// that with one file, no background compaction threads, fully serialisable
// multi-bucket transactions (so state, reorder buffer and source offsets
// commit atomically) and pure Go (no cgo on CI). An LSM store such as pebble
// would write faster under sustained random writes, but the engine already
// batches writes per checkpoint, so bbolt's single-writer B+tree is not the
// bottleneck, and its copy-on-write pages make a torn write impossible.
//
// Layout: one top-level bucket per partition key-space ("p/<partition>"), so
// state can later be split by stream partition by moving whole buckets.
// Inside it, one nested bucket per space (a detector's table, "_engine",
// "_meta").
package state

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"auditwatch/config/duration"
)

// ErrClosed is returned by operations on a closed Store.
var ErrClosed = errors.New("state: store closed")

// FileName is the name of the database file inside a state directory.
const FileName = "detect.db"

// Config is the `state:` section of the configuration.
type Config struct {
	// Dir holds the database file. Empty means a temporary directory that
	// is removed on Close.
	Dir string `yaml:"dir"`
	// Partition names the key-space this process owns (a stream
	// partition). Default "0".
	Partition string `yaml:"partition"`
	// OpenTimeout bounds waiting for the file lock held by another process.
	OpenTimeout duration.Duration `yaml:"open_timeout"`
	// Fresh empties the partition's key-space on open (its state is
	// being rebuilt from a replayable stream).
	Fresh bool `yaml:"-"`
}

// SetDefaults fills unset fields.
func (c *Config) SetDefaults() {
	if c.Partition == "" {
		c.Partition = "0"
	}
	if c.OpenTimeout == 0 {
		c.OpenTimeout = duration.Duration(5 * time.Second)
	}
}

// Validate reports every bad field.
func (c Config) Validate() error {
	var errs []error
	if c.Partition == "" {
		errs = append(errs, errors.New("state.partition: must not be empty"))
	}
	if c.OpenTimeout < 0 {
		errs = append(errs, errors.New("state.open_timeout: must not be negative"))
	}
	return errors.Join(errs...)
}

// ErrPartitionOpen is returned by Open for a partition already open in
// this process.
var ErrPartitionOpen = errors.New("state: partition already open")

// Store is an open state database bound to one partition key-space.
// Several partitions of one directory may be open at once in a process:
// they share the database file (bbolt allows one process per file) and
// commit one at a time.
type Store struct {
	db        *bolt.DB
	shared    *sharedDB
	partition []byte
	tempDir   string
}

// sharedDB is one open database file and the partitions using it.
type sharedDB struct {
	db    *bolt.DB
	path  string
	parts map[string]bool
}

var (
	openMu  sync.Mutex
	openDBs = map[string]*sharedDB{}
)

// Open opens (creating if needed) the store described by cfg. With
// cfg.Fresh the partition's key-space is emptied first.
func Open(cfg Config) (*Store, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	dir := cfg.Dir
	temp := ""
	if dir == "" {
		d, err := os.MkdirTemp("", "auditwatch-state-")
		if err != nil {
			return nil, fmt.Errorf("state: temp dir: %w", err)
		}
		dir, temp = d, d
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state: create %s: %w", dir, err)
	}
	path, err := filepath.Abs(filepath.Join(dir, FileName))
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	openMu.Lock()
	defer openMu.Unlock()
	sh := openDBs[path]
	if sh == nil {
		db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: cfg.OpenTimeout.D(), FreelistType: bolt.FreelistMapType})
		if err != nil {
			if temp != "" {
				os.RemoveAll(temp)
			}
			return nil, fmt.Errorf("state: open %s: %w", path, err)
		}
		sh = &sharedDB{db: db, path: path, parts: map[string]bool{}}
		openDBs[path] = sh
	}
	if sh.parts[cfg.Partition] {
		return nil, fmt.Errorf("%w: %s in %s", ErrPartitionOpen, cfg.Partition, path)
	}
	sh.parts[cfg.Partition] = true
	s := &Store{db: sh.db, shared: sh, partition: []byte("p/" + cfg.Partition), tempDir: temp}
	if err := sh.db.Update(func(tx *bolt.Tx) error {
		if cfg.Fresh && tx.Bucket(s.partition) != nil {
			if err := tx.DeleteBucket(s.partition); err != nil {
				return err
			}
		}
		_, err := tx.CreateBucketIfNotExists(s.partition)
		return err
	}); err != nil {
		s.closeLocked()
		return nil, fmt.Errorf("state: init %s: %w", path, err)
	}
	return s, nil
}

// Path is the database file.
func (s *Store) Path() string { return s.shared.path }

// Partition is the key-space this store reads and writes.
func (s *Store) Partition() string { return string(s.partition[2:]) }

// Close closes the store; the database file closes with its last
// partition (a temporary store is removed).
func (s *Store) Close() error {
	if s == nil || s.db == nil {
		return nil
	}
	openMu.Lock()
	defer openMu.Unlock()
	return s.closeLocked()
}

func (s *Store) closeLocked() error {
	var err error
	delete(s.shared.parts, s.Partition())
	if len(s.shared.parts) == 0 {
		err = s.shared.db.Close()
		delete(openDBs, s.shared.path)
	}
	s.db = nil
	if s.tempDir != "" {
		if rerr := os.RemoveAll(s.tempDir); rerr != nil && err == nil {
			err = rerr
		}
	}
	return err
}

// Get returns a copy of the value of key in space, or nil when absent.
func (s *Store) Get(space string, key []byte) ([]byte, error) {
	if s.db == nil {
		return nil, ErrClosed
	}
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		b := s.space(tx, space)
		if b == nil {
			return nil
		}
		if v := b.Get(key); v != nil {
			out = append([]byte(nil), v...)
		}
		return nil
	})
	return out, err
}

// ForEach calls fn for every key of space in key order (values valid only
// during the call).
func (s *Store) ForEach(space string, fn func(k, v []byte) error) error {
	if s.db == nil {
		return ErrClosed
	}
	return s.db.View(func(tx *bolt.Tx) error {
		b := s.space(tx, space)
		if b == nil {
			return nil
		}
		return b.ForEach(fn)
	})
}

// Count returns the number of keys in space.
func (s *Store) Count(space string) (int, error) {
	n := 0
	err := s.ForEach(space, func(_, _ []byte) error { n++; return nil })
	return n, err
}

func (s *Store) space(tx *bolt.Tx, space string) *bolt.Bucket {
	p := tx.Bucket(s.partition)
	if p == nil {
		return nil
	}
	return p.Bucket([]byte(space))
}

// Batch collects writes committed together by Commit.
type Batch struct {
	ops []op
}

type op struct {
	space string
	key   []byte
	val   []byte // nil = delete
	reset bool   // clear the whole space first
}

// Put stores val under key in space (val must not be modified afterwards).
func (b *Batch) Put(space string, key, val []byte) {
	if val == nil {
		val = []byte{}
	}
	b.ops = append(b.ops, op{space: space, key: key, val: val})
}

// Delete removes key from space.
func (b *Batch) Delete(space string, key []byte) {
	b.ops = append(b.ops, op{space: space, key: key})
}

// Reset empties space: it applies before every other op of that space in
// the batch (Commit orders a space's ops by key).
func (b *Batch) Reset(space string) {
	b.ops = append(b.ops, op{space: space, reset: true})
}

// Len is the number of queued operations.
func (b *Batch) Len() int { return len(b.ops) }

// Commit applies every operation of b in one transaction: all or nothing.
func (s *Store) Commit(b *Batch) error {
	if s.db == nil {
		return ErrClosed
	}
	// Apply in key order within each space (a space's Reset first, ops on
	// one key in the order queued): B+tree inserts in order touch each page
	// once instead of seeking at random, several times faster for the
	// large random-key batches of a checkpoint.
	slices.SortStableFunc(b.ops, func(x, y op) int {
		if c := strings.Compare(x.space, y.space); c != 0 {
			return c
		}
		if x.reset != y.reset {
			if x.reset {
				return -1
			}
			return 1
		}
		return bytes.Compare(x.key, y.key)
	})
	err := s.db.Update(func(tx *bolt.Tx) error {
		p, err := tx.CreateBucketIfNotExists(s.partition)
		if err != nil {
			return err
		}
		buckets := map[string]*bolt.Bucket{}
		for _, o := range b.ops {
			bk := buckets[o.space]
			if o.reset {
				if p.Bucket([]byte(o.space)) != nil {
					if err := p.DeleteBucket([]byte(o.space)); err != nil {
						return fmt.Errorf("reset %s: %w", o.space, err)
					}
				}
				bk = nil
			}
			if bk == nil {
				if bk, err = p.CreateBucketIfNotExists([]byte(o.space)); err != nil {
					return fmt.Errorf("bucket %s: %w", o.space, err)
				}
				buckets[o.space] = bk
			}
			if o.reset {
				continue
			}
			if o.val == nil {
				err = bk.Delete(o.key)
			} else {
				err = bk.Put(o.key, o.val)
			}
			if err != nil {
				return fmt.Errorf("%s: %w", o.space, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("state: commit: %w", err)
	}
	b.ops = b.ops[:0]
	return nil
}

// Has reports whether space holds any key.
func (s *Store) Has(space string) (bool, error) {
	if s.db == nil {
		return false, ErrClosed
	}
	has := false
	err := s.db.View(func(tx *bolt.Tx) error {
		if b := s.space(tx, space); b != nil {
			k, _ := b.Cursor().First()
			has = k != nil
		}
		return nil
	})
	return has, err
}

// Scan calls fn for up to limit keys of space in key order, starting after
// the key after (from the first key when nil), and returns the last key
// visited (nil once the end of the space is reached). Values are valid only
// during the call.
func (s *Store) Scan(space string, after []byte, limit int, fn func(k, v []byte)) ([]byte, error) {
	if s.db == nil {
		return nil, ErrClosed
	}
	var last []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		b := s.space(tx, space)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		var k, v []byte
		if after == nil {
			k, v = c.First()
		} else {
			k, v = c.Seek(after)
			if k != nil && string(k) == string(after) {
				k, v = c.Next()
			}
		}
		for n := 0; k != nil && n < limit; n++ {
			fn(k, v)
			last = append(last[:0], k...)
			k, v = c.Next()
		}
		if k == nil {
			last = nil
		}
		return nil
	})
	return last, err
}
