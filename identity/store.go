package identity

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// store writes links through to a bbolt file. Writes are rare (one per
// lease, per new network of an identity, per revocation) and idempotent.
type store struct {
	db *bolt.DB
}

var (
	bIssues = []byte("issues")   // request id (or key) -> Issue
	bNets   = []byte("nets")     // Vault principal -> netState
	bFams   = []byte("families") // mount+role -> AWS principal family
	bRevs   = []byte("revokes")  // lease HMAC -> time of an unmatched body-form revocation
)

// FileName is the link store's file in its directory.
const FileName = "links.db"

func openStore(dir string) (*store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("identity: link store: %w", err)
	}
	path := filepath.Join(dir, FileName)
	// Writes are not synced one by one (a link is written per issued
	// credential): sync makes them durable at each checkpoint, before the
	// stream position that would replay them is committed.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second, NoSync: true})
	if err != nil {
		return nil, fmt.Errorf("identity: link store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bIssues, bNets, bFams, bRevs} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("identity: link store %s: %w", path, err)
	}
	return &store{db: db}, nil
}

func (s *store) close() error {
	return errors.Join(s.sync(), s.db.Close())
}

// sync makes every write so far durable.
func (s *store) sync() error {
	if err := s.db.Sync(); err != nil {
		return fmt.Errorf("identity: link store sync: %w", err)
	}
	return nil
}

// issueKey identifies an issue in the store: its Vault request id, else
// its lease, else its key.
func issueKey(is *Issue) []byte {
	switch {
	case is.Request != "":
		return []byte("r:" + is.Request)
	case is.Lease != "":
		return []byte("l:" + is.Lease)
	case is.Key != "":
		return []byte("k:" + is.Key)
	}
	return []byte("h:" + is.KeyHMAC)
}

func (s *store) put(bucket, k []byte, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		return
	}
	// a failed write loses nothing the stream cannot replay: the source
	// position is only committed after the detect checkpoint
	_ = s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put(k, b) })
}

func (s *store) putIssue(is *Issue)              { s.put(bIssues, issueKey(is), is) }
func (s *store) putNets(p string, ns *netState)  { s.put(bNets, []byte(p), ns) }
func (s *store) putFamily(roleKey, fam string)   { s.put(bFams, []byte(roleKey), fam) }
func (s *store) putRevoke(h string, t time.Time) { s.put(bRevs, []byte(h), t) }
func (s *store) deleteRevoke(h string) {
	_ = s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bRevs).Delete([]byte(h)) })
}
func (s *store) deleteIssue(is *Issue) {
	_ = s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bIssues).Delete(issueKey(is)) })
}

// loadAll reads everything back, issues in the order they were issued.
func (s *store) loadAll() ([]*Issue, map[string]*netState, map[string]string, map[string]time.Time, error) {
	var issues []*Issue
	nets := map[string]*netState{}
	fams := map[string]string{}
	revs := map[string]time.Time{}
	err := s.db.View(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bIssues).ForEach(func(k, v []byte) error {
			is := new(Issue)
			if err := json.Unmarshal(v, is); err != nil {
				return fmt.Errorf("issue %q: %w", k, err)
			}
			issues = append(issues, is)
			return nil
		}); err != nil {
			return err
		}
		if err := tx.Bucket(bNets).ForEach(func(k, v []byte) error {
			ns := new(netState)
			if err := json.Unmarshal(v, ns); err != nil {
				return fmt.Errorf("networks of %q: %w", k, err)
			}
			nets[string(k)] = ns
			return nil
		}); err != nil {
			return err
		}
		if err := tx.Bucket(bFams).ForEach(func(k, v []byte) error {
			var f string
			if err := json.Unmarshal(v, &f); err != nil {
				return fmt.Errorf("family of %q: %w", k, err)
			}
			fams[string(k)] = f
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bRevs).ForEach(func(k, v []byte) error {
			var t time.Time
			if err := json.Unmarshal(v, &t); err != nil {
				return fmt.Errorf("revocation %q: %w", k, err)
			}
			revs[string(k)] = t
			return nil
		})
	})
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("identity: link store: %w", err)
	}
	sortByTime(issues)
	return issues, nets, fams, revs, nil
}
