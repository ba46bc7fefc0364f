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
	rej   *source.Rejector
	// now and after are the clock of polling and idle flushing (tests
	// inject one: SetClock).
	now   func() time.Time
	after func(time.Duration) <-chan time.Time
}

// SetClock replaces the wall clock of polling and idle flushing (tests;
// call before Run).
func (t *Tail) SetClock(now func() time.Time, after func(time.Duration) <-chan time.Time) {
	t.now, t.after = now, after
}

// New returns a Tail named name (the source name) over cfg.Path.
func New(cfg Config, name string, parse source.Parser, cp source.Checkpoints, logger *slog.Logger, m *source.Metrics) (*Tail, error) {
	b, err := source.Prepare("filetail", name, &cfg, logger, m)
	if err != nil {
		return nil, err
	}
	return &Tail{cfg: cfg, name: name, parse: parse, cp: cp, log: b.Log, m: b.M, rej: b.Rej, now: time.Now, after: time.After}, nil
}

// Name is the source name.
func (t *Tail) Name() string { return t.name }

// file is the open file being read.
type file struct {
	f    *os.File
	path string
	ino  uint64
	fp   []byte
	cur  source.Cursor
	tr   *source.Tracked
	// read is the offset handed to the parser; fileOff the offset read
	// from the file.
	read, fileOff int64
}

// start opens the parser over fw, from the file's cursor.
func (f *file) start(t *Tail, fw *follow) {
	f.read, f.fileOff = f.cur.Offset, f.cur.Offset
	f.tr = source.Track(t.parse, &countRead{fw: fw, f: f}, f.path, f.cur)
}

type countRead struct {
	fw *follow
	f  *file
}

func (c *countRead) Read(p []byte) (int, error) {
	n, err := c.fw.Read(p)
	c.f.read += int64(n)
	return n, err
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
	return &file{f: f, path: path, ino: inode(fi), fp: fp, cur: cur}, nil
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

// Stop reasons of a follow reader.
const (
	endIdle = iota + 1
	endRotated
	endTruncated
	endStopped
)

// follow feeds the parser whole lines of a growing file. At the end of
// the data it does not report EOF (which would make the parser release
// request entries still waiting for their response) but publishes what is
// ready and waits for more, until the file is idle for IdleFlush, was
// rotated or truncated, or the tail stops. A partial last line is held
// back until its newline is written.
// maxHeldLine bounds the partial line the follow reader holds back
// waiting for its newline (twice the parser's default record limit).
const maxHeldLine = 2 << 20

type follow struct {
	t       *Tail
	ctx     context.Context
	cur     *file
	buf     []byte // read from the file, not yet handed on
	chunk   []byte // read buffer while buf holds more than the reader asks for
	waiting func() error
	end     int
	err     error
	slept   bool
}

func (fw *follow) Read(p []byte) (int, error) {
	idleSince := fw.t.now()
	for {
		if fw.end != 0 {
			return 0, io.EOF
		}
		if i := bytes.LastIndexByte(fw.buf, '\n'); i >= 0 {
			n := copy(p, fw.buf[:i+1])
			fw.buf = fw.buf[n:]
			return n, nil
		}
		if len(fw.buf) >= maxHeldLine {
			// A line this long is over any record limit: hand it on as it
			// comes (the parser rejects it and skips to its end) instead of
			// holding it whole and searching it again on every read.
			n := copy(p, fw.buf)
			fw.buf = fw.buf[n:]
			return n, nil
		}
		if fw.slept {
			// Truncation first: reading on from the old offset of a
			// truncated and rewritten file would yield torn records.
			fw.slept = false
			if fw.t.isTruncated(fw.cur) {
				fw.end = endTruncated
				continue
			}
		}
		var n int
		var err error
		if k := len(fw.buf); k < len(p) {
			// Read straight into p behind the partial line held (no chunk
			// allocated and copied per read): hand on up to the last
			// newline read, hold the rest.
			copy(p, fw.buf)
			n, err = fw.cur.f.Read(p[k:])
			if n > 0 {
				fw.cur.fileOff += int64(n)
				idleSince = fw.t.now()
				if i := bytes.LastIndexByte(p[k:k+n], '\n'); i >= 0 {
					end := k + i + 1
					fw.buf = append(fw.buf[:0], p[end:k+n]...)
					return end, nil
				}
				fw.buf = append(fw.buf, p[k:k+n]...)
				continue
			}
		} else {
			if fw.chunk == nil {
				fw.chunk = make([]byte, 64<<10)
			}
			n, err = fw.cur.f.Read(fw.chunk)
			if n > 0 {
				fw.cur.fileOff += int64(n)
				fw.buf = append(fw.buf, fw.chunk[:n]...)
				idleSince = fw.t.now()
				continue
			}
		}
		if err != nil && !errors.Is(err, io.EOF) {
			fw.t.m.Errors.WithLabelValues(fw.t.name).Inc()
			fw.t.log.Error("read audit file", "path", fw.cur.path, "err", err)
		}
		// At the end of the data: hand on what is ready, then look around.
		if fw.waiting != nil {
			handing := fw.t.now()
			if err := fw.waiting(); err != nil {
				fw.err, fw.end = err, endStopped
				continue
			}
			// Time spent handing on (a full stream holds the publish) is
			// not time the file was idle: it may have grown meanwhile.
			// Counted, it released request entries whose responses were
			// already written as request-only events, and the responses
			// after them as events of their own.
			idleSince = idleSince.Add(fw.t.now().Sub(handing))
		}
		switch {
		case fw.ctx.Err() != nil:
			fw.end = endStopped
		case fw.t.isTruncated(fw.cur):
			fw.end = endTruncated
		case fw.t.isRotated(fw.cur):
			// Everything written before the rename was read above.
			fw.end = endRotated
		case fw.t.now().Sub(idleSince) >= fw.t.cfg.IdleFlush.D():
			fw.end = endIdle
		default:
			select {
			case <-fw.ctx.Done():
			case <-fw.t.after(fw.t.cfg.PollInterval.D()):
			}
			fw.slept = true
		}
	}
}

func (t *Tail) isRotated(cur *file) bool {
	fi, err := os.Stat(t.cfg.Path)
	return err != nil || inode(fi) != cur.ino
}

// isTruncated: same inode, but shorter than what was read or with other
// leading bytes (copytruncate followed by quick writes).
func (t *Tail) isTruncated(cur *file) bool {
	fi, err := os.Stat(t.cfg.Path)
	if err != nil || inode(fi) != cur.ino {
		return false
	}
	if fi.Size() < cur.fileOff {
		return true
	}
	fp, err := fingerprint(cur.f, len(cur.fp))
	return err == nil && !bytes.Equal(fp, cur.fp)
}

// Run tails the file until ctx ends.
func (t *Tail) Run(ctx context.Context, pub source.Publisher) error {
	defer t.rej.Close()
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
	first := true
	for ctx.Err() == nil {
		cur, err := t.open(&pos, first)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				t.m.Errors.WithLabelValues(t.name).Inc()
				t.log.Error("open audit file", "path", t.cfg.Path, "err", err)
			}
			select {
			case <-ctx.Done():
				return nil
			case <-t.after(t.cfg.PollInterval.D()):
			}
			continue
		}
		first = false
		end, err := t.follow(ctx, cur, pub)
		cur.f.Close()
		if err != nil {
			return err
		}
		switch end {
		case endIdle:
			// Same file again from the safe offset, with a fresh parser.
			pos = t.position(cur)
		case endRotated:
			t.log.Info("audit file rotated", "path", t.cfg.Path)
			pos = Position{}
		case endTruncated:
			t.log.Info("audit file truncated", "path", t.cfg.Path)
			pos = Position{}
			first = false
		case endStopped:
			return nil
		}
	}
	return nil
}

func (t *Tail) position(cur *file) Position {
	return Position{Inode: cur.ino, Fingerprint: cur.fp, Cursor: cur.tr.Cursor()}
}

// follow reads cur until its follow reader ends, publishing batches.
func (t *Tail) follow(ctx context.Context, cur *file, pub source.Publisher) (int, error) {
	batch := make([]schema.Event, 0, t.cfg.BatchSize)
	dirty := false
	flush := func() error {
		if len(batch) == 0 && !dirty {
			return nil
		}
		if err := t.publish(ctx, pub, cur, batch); err != nil {
			return err
		}
		batch = make([]schema.Event, 0, t.cfg.BatchSize)
		dirty = false
		return nil
	}
	fw := &follow{t: t, ctx: ctx, cur: cur, waiting: flush}
	cur.start(t, fw)
	for {
		ev, err := cur.tr.Next()
		switch {
		case err == nil:
			t.m.Records.WithLabelValues(t.name).Inc()
			batch = append(batch, ev)
			if len(batch) >= t.cfg.BatchSize {
				if err := flush(); err != nil {
					return 0, err
				}
			}
			continue
		case errors.Is(err, io.EOF):
		case source.IsRecordError(err):
			t.m.Records.WithLabelValues(t.name).Inc()
			t.rej.Record(err)
			dirty = true
			continue
		default:
			t.m.Errors.WithLabelValues(t.name).Inc()
			t.log.Error("read audit file", "path", cur.path, "err", err)
		}
		t.rej.Flush()
		if fw.err != nil {
			return 0, fw.err
		}
		if fw.end == endStopped || ctx.Err() != nil {
			return endStopped, nil
		}
		dirty = true
		if err := flush(); err != nil {
			return 0, err
		}
		if fi, err := cur.f.Stat(); err == nil {
			t.m.Lag.WithLabelValues(t.name).Set(float64(fi.Size() - cur.read))
		}
		return fw.end, nil
	}
}

func (t *Tail) publish(ctx context.Context, pub source.Publisher, cur *file, evs []schema.Event) error {
	if ctx.Err() != nil {
		return nil
	}
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
