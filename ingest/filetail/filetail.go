// Package filetail owns the live tail of a Vault/OpenBao file audit device.
// It follows the file across rotation (rename and a new file after
// SIGHUP, copytruncate, plain truncation), identifies a file by its inode
// plus a fingerprint of its first bytes rather than by name, and
// checkpoints the byte offset it has fully handled (the parser's safe
// offset) together with the ids of events already emitted past it.
package filetail

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"auditwatch/ingest/source"
	"auditwatch/schema"
)

// Position is the checkpoint of a tail.
type Position struct {
	Inode       uint64 `json:"inode"`
	Fingerprint []byte `json:"fp"`
	source.Cursor
}

// Tail follows one audit file.
type Tail struct {
	cfg   Config
	name  string
	parse source.Parser
	cp    source.Checkpoints
	log   *slog.Logger
	m     *source.Metrics
}

// New returns a Tail named name (the source name) over cfg.Path.
func New(cfg Config, name string, parse source.Parser, cp source.Checkpoints, logger *slog.Logger, m *source.Metrics) (*Tail, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("filetail %s: %w", name, err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m = source.NewMetrics(nil)
	}
	return &Tail{cfg: cfg, name: name, parse: parse, cp: cp, log: logger.With("source", name), m: m}, nil
}

// Name is the source name.
func (t *Tail) Name() string { return t.name }

// file is the open file being read.
type file struct {
	f    *os.File
	path string
	ino  uint64
	fp   []byte
	tr   *source.Tracked
}

func inode(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

// fingerprint reads up to n leading bytes of f.
func fingerprint(f *os.File, n int) ([]byte, error) {
	b := make([]byte, n)
	k, err := f.ReadAt(b, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return b[:k], nil
}

// matches reports whether f (inode ino) is the file pos was taken in.
func matches(f *os.File, ino uint64, pos Position) bool {
	if pos.Inode != ino {
		return false
	}
	cur, err := fingerprint(f, len(pos.Fingerprint))
	return err == nil && bytes.Equal(cur, pos.Fingerprint)
}

func (t *Tail) openAt(path string, pos Position) (*file, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	fp, err := fingerprint(f, t.cfg.FingerprintBytes)
	if err != nil {
		f.Close()
		return nil, err
	}
	cur := pos.Cursor
	if cur.Offset > fi.Size() {
		cur = source.Cursor{}
	}
	if _, err := f.Seek(cur.Offset, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	return &file{f: f, path: path, ino: inode(fi), fp: fp, tr: source.Track(t.parse, f, path, cur)}, nil
}

// open opens the audit file at the checkpointed position. When the file
// was rotated while we were down, the rotated file is found by inode and
// fingerprint among its siblings and read to its end first.
func (t *Tail) open(pos *Position, first bool) (*file, error) {
	f, err := os.Open(t.cfg.Path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	ino := inode(fi)
	hasPos := pos.Inode != 0 || pos.Offset != 0
	switch {
	case hasPos && matches(f, ino, *pos):
		f.Close()
		return t.openAt(t.cfg.Path, *pos)
	case hasPos:
		f.Close()
		if old := t.findRotated(*pos); old != "" {
			t.log.Info("resuming a rotated file", "path", old)
			return t.openAt(old, *pos)
		}
		t.log.Warn("checkpointed file is gone; starting the current file from its beginning", "path", t.cfg.Path)
		return t.openAt(t.cfg.Path, Position{})
	case first && t.cfg.StartAt == "end":
		f.Close()
		return t.openAt(t.cfg.Path, Position{Cursor: source.Cursor{Offset: fi.Size()}})
	default:
		f.Close()
		return t.openAt(t.cfg.Path, Position{})
	}
}

// findRotated looks beside the audit file for the file pos was taken in
// (audit.log.1, audit.log-20260101, …).
func (t *Tail) findRotated(pos Position) string {
	dir, base := filepath.Split(t.cfg.Path)
	if dir == "" {
		dir = "."
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return ""
	}
	var names []string
	for _, e := range ents {
		if e.Type().IsRegular() && strings.HasPrefix(e.Name(), base) && e.Name() != base {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for _, n := range names {
		p := filepath.Join(dir, n)
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		fi, err := f.Stat()
		ok := err == nil && matches(f, inode(fi), pos)
		f.Close()
		if ok {
			return p
		}
	}
	return ""
}

// Run tails the file until ctx ends.
func (t *Tail) Run(ctx context.Context, pub source.Publisher) error {
	var pos Position
	if t.cp != nil {
		b, err := t.cp.Load(t.name)
		if err != nil {
			return err
		}
		if err := source.DecodePosition(b, &pos); err != nil {
			return fmt.Errorf("filetail %s: %w", t.name, err)
		}
	}
	var cur *file
	defer func() {
		if cur != nil {
			cur.f.Close()
		}
	}()
	first := true
	lastData := time.Now()
	flushed := true
	tick := time.NewTicker(t.cfg.PollInterval)
	defer tick.Stop()
	for {
		if cur == nil {
			f, err := t.open(&pos, first)
			switch {
			case err == nil:
				cur, first = f, false
			case errors.Is(err, os.ErrNotExist):
			default:
				t.m.Errors.WithLabelValues(t.name).Inc()
				t.log.Error("open audit file", "path", t.cfg.Path, "err", err)
			}
		}
		if cur != nil {
			// Truncation first: reading on from the old offset of a
			// truncated and rewritten file would yield torn records.
			nf, err := t.truncated(ctx, cur, pub)
			if err != nil {
				return err
			}
			cur = nf
		}
		if cur != nil {
			n, err := t.pump(ctx, cur, pub)
			if err != nil {
				return err
			}
			if n > 0 {
				lastData, flushed = time.Now(), false
			}
			next, err := t.check(ctx, cur, pub)
			if err != nil {
				return err
			}
			if next != cur {
				cur = next
				if cur != nil {
					continue
				}
			} else if !flushed && time.Since(lastData) >= t.cfg.IdleFlush {
				if err := t.publish(ctx, pub, cur, cur.tr.Flush()); err != nil {
					return err
				}
				flushed = true
			}
			if cur != nil {
				pos = t.position(cur)
				t.m.Lag.WithLabelValues(t.name).Set(float64(t.size(cur) - cur.tr.Read()))
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func (t *Tail) size(cur *file) int64 {
	fi, err := cur.f.Stat()
	if err != nil {
		return 0
	}
	return fi.Size()
}

func (t *Tail) position(cur *file) Position {
	return Position{Inode: cur.ino, Fingerprint: cur.fp, Cursor: cur.tr.Cursor()}
}

// pump reads cur to its end, publishing batches; it returns the count of
// records seen (events plus rejected).
func (t *Tail) pump(ctx context.Context, cur *file, pub source.Publisher) (int, error) {
	batch := make([]schema.Event, 0, t.cfg.BatchSize)
	seen := 0
	for {
		ev, err := cur.tr.Next()
		switch {
		case err == nil:
			seen++
			t.m.Records.WithLabelValues(t.name).Inc()
			batch = append(batch, ev)
			if len(batch) >= t.cfg.BatchSize {
				if err := t.publish(ctx, pub, cur, batch); err != nil {
					return seen, err
				}
				batch = make([]schema.Event, 0, t.cfg.BatchSize)
			}
			continue
		case errors.Is(err, io.EOF):
		case source.IsRecordError(err):
			seen++
			t.m.Records.WithLabelValues(t.name).Inc()
			t.m.Rejected.WithLabelValues(t.name).Inc()
			t.log.Warn("rejected record", "err", err)
			continue
		default:
			t.m.Errors.WithLabelValues(t.name).Inc()
			t.log.Error("read audit file", "path", cur.path, "err", err)
		}
		if len(batch) > 0 || seen > 0 {
			if err := t.publish(ctx, pub, cur, batch); err != nil {
				return seen, err
			}
		}
		return seen, nil
	}
}

func (t *Tail) publish(ctx context.Context, pub source.Publisher, cur *file, evs []schema.Event) error {
	// The fingerprint grows with a young file until it is full length.
	if len(cur.fp) < t.cfg.FingerprintBytes {
		if fp, err := fingerprint(cur.f, t.cfg.FingerprintBytes); err == nil && bytes.HasPrefix(fp, cur.fp) {
			cur.fp = fp
		}
	}
	pos := t.position(cur)
	t.m.Events.WithLabelValues(t.name).Add(float64(len(evs)))
	if err := pub.Publish(ctx, source.Batch{Source: t.name, Events: evs, Position: source.EncodeCursor(pos)}); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("filetail %s: %w", t.name, err)
	}
	return nil
}

// check looks for rotation and truncation at the end of cur. It returns
// the file to go on with: cur, a new file, or nil when none is there yet.
func (t *Tail) check(ctx context.Context, cur *file, pub source.Publisher) (*file, error) {
	fi, statErr := os.Stat(t.cfg.Path)
	rotated := statErr != nil || inode(fi) != cur.ino
	if rotated {
		// Drain what was written before the rename, then release what
		// waits for a response (its response, if any, is in this file).
		if _, err := t.pump(ctx, cur, pub); err != nil {
			return cur, err
		}
		if err := t.publish(ctx, pub, cur, cur.tr.Flush()); err != nil {
			return cur, err
		}
		cur.f.Close()
		if statErr != nil {
			t.log.Info("audit file moved away; waiting for a new one", "path", t.cfg.Path)
			return nil, nil
		}
		t.log.Info("audit file rotated", "path", t.cfg.Path)
		nf, err := t.openAt(t.cfg.Path, Position{})
		if err != nil {
			return nil, nil
		}
		return nf, nil
	}
	return cur, nil
}

// truncated reopens cur from its start when the file was truncated.
func (t *Tail) truncated(ctx context.Context, cur *file, pub source.Publisher) (*file, error) {
	fi, err := os.Stat(t.cfg.Path)
	if err != nil || inode(fi) != cur.ino {
		return cur, nil // rotation: handled after draining
	}
	// Same inode: truncated (copytruncate or truncate) when it is shorter
	// than what was read, or when its leading bytes changed.
	size := fi.Size()
	fp, err := fingerprint(cur.f, len(cur.fp))
	if size < cur.tr.Read() || (err == nil && !bytes.Equal(fp, cur.fp)) {
		t.log.Info("audit file truncated", "path", t.cfg.Path, "size", size, "read", cur.tr.Read())
		if err := t.publish(ctx, pub, cur, cur.tr.Flush()); err != nil {
			return cur, err
		}
		cur.f.Close()
		nf, err := t.openAt(t.cfg.Path, Position{})
		if err != nil {
			return nil, nil
		}
		return nf, nil
	}
	return cur, nil
}
