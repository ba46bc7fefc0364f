package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"auditwatch/identity"
	"auditwatch/stream"
)

// shareLinks makes the detect instances of a Kafka deployment share what
// their credential linkers learn through the links topic: e's linker
// publishes its changes at each checkpoint (before the input is
// committed), and the returned component reads every change any instance
// published, in a consumer group of this instance's own (each instance
// reads the whole topic), and merges it.
func (d *daemon) shareLinks(k stream.Stream, topic string, e *enrichment) (func(ctx context.Context) error, error) {
	member, err := linksMember(d.stateDir("identity"))
	if err != nil {
		return nil, err
	}
	e.linker.ShareChanges()
	e.share = func(ctx context.Context, ss []identity.Shared) error {
		recs := make([]stream.Record, 0, len(ss))
		for i := range ss {
			b, err := identity.MarshalShared(ss[i])
			if err != nil {
				return err
			}
			recs = append(recs, stream.Record{Key: ss[i].Key(), Value: b})
		}
		done := make(chan error, 1)
		if err := k.Publish(ctx, topic, recs, func(err error) { done <- err }); err != nil {
			return err
		}
		select {
		case err := <-done:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	group := d.cfg.Stream.Kafka.DetectGroup + "-links-" + member
	h := &linksHandler{l: e.linker, log: d.log.With("component", "links")}
	return func(ctx context.Context) error { return k.Consume(ctx, topic, group, h) }, nil
}

// linksMember is this instance's stable name among the readers of the
// links topic, kept in dir.
func linksMember(dir string) (string, error) {
	path := filepath.Join(dir, "links-member")
	b, err := os.ReadFile(path)
	if err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("links member name: %w", err)
	}
	var r [8]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", err
	}
	name := hex.EncodeToString(r[:])
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("links member name: %w", err)
	}
	if err := os.WriteFile(path, []byte(name+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("links member name: %w", err)
	}
	return name, nil
}

// linksHandler merges the changes read from the links topic.
type linksHandler struct {
	l   *identity.Linker
	log *slog.Logger

	mu     sync.Mutex
	commit func(ctx context.Context, partition int, next int64) error
}

func (h *linksHandler) Assigned(_ context.Context, a stream.Assignment) (map[int]int64, error) {
	h.mu.Lock()
	h.commit = a.Commit
	h.mu.Unlock()
	return nil, nil
}

func (h *linksHandler) Handle(ctx context.Context, p int, recs []stream.Record) error {
	if len(recs) == 0 {
		return nil
	}
	bad := 0
	for i := range recs {
		if recs[i].Value == nil {
			bad++
			continue
		}
		s, err := identity.UnmarshalShared(recs[i].Value)
		if err == nil {
			err = h.l.Apply(s)
		}
		if err != nil {
			bad++
		}
	}
	if bad > 0 {
		h.log.Warn("links topic: records skipped", "partition", p, "count", bad)
	}
	h.mu.Lock()
	commit := h.commit
	h.mu.Unlock()
	if commit == nil {
		return nil
	}
	// the merged changes are in the link store: commit past them
	return commit(ctx, p, recs[len(recs)-1].Offset+1)
}

func (h *linksHandler) Revoked(context.Context, []int) error { return nil }
