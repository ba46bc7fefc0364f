package source

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Checkpoints loads and saves source positions. Load returns nil, nil for
// a source that has no position yet.
type Checkpoints interface {
	Load(source string) ([]byte, error)
	Save(source string, pos []byte) error
}

var bucketPositions = []byte("positions")

// Store is a durable Checkpoints in a small bbolt file. Every Save is one
// fsynced transaction.
type Store struct {
	db *bolt.DB
}

// OpenStore opens (creating) the checkpoint file at path.
func OpenStore(path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("checkpoint store %s: %w", path, err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("checkpoint store %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketPositions)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("checkpoint store %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Load returns the saved position of source, or nil.
func (s *Store) Load(source string) ([]byte, error) {
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketPositions).Get([]byte(source)); v != nil {
			out = append([]byte(nil), v...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load checkpoint of %s: %w", source, err)
	}
	return out, nil
}

// Save durably records the position of source.
func (s *Store) Save(source string, pos []byte) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPositions).Put([]byte(source), pos)
	})
	if err != nil {
		return fmt.Errorf("save checkpoint of %s: %w", source, err)
	}
	return nil
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// MemCheckpoints is an in-memory Checkpoints seeded from a map. The
// embedded pipeline seeds it from the detector checkpoint's metadata, where
// source positions are stored atomically with detector state.
type MemCheckpoints struct {
	mu  sync.Mutex
	pos map[string][]byte
}

// NewMemCheckpoints returns a MemCheckpoints holding a copy of seed.
func NewMemCheckpoints(seed map[string][]byte) *MemCheckpoints {
	m := &MemCheckpoints{pos: map[string][]byte{}}
	for k, v := range seed {
		m.pos[k] = append([]byte(nil), v...)
	}
	return m
}

// Load returns the position of source, or nil.
func (m *MemCheckpoints) Load(source string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.pos[source]
	if !ok {
		return nil, nil
	}
	return append([]byte(nil), v...), nil
}

// Save records the position of source.
func (m *MemCheckpoints) Save(source string, pos []byte) error {
	if source == "" {
		return errors.New("save checkpoint: empty source name")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pos[source] = append([]byte(nil), pos...)
	return nil
}
