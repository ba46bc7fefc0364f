// Package dir owns the directory source: audit files (plain or gzip)
// dropped into a folder are read once each, in name order. It serves
// backfills and the quickstart. A file is taken once its size and
// modification time have been stable for the settle time; its position
// (the file being read and the cursor in it) and the set of finished
// files are checkpointed, so a restart resumes mid-file and never reads a
// finished file twice.
package dir

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"auditwatch/ingest"
	"auditwatch/ingest/source"
	"auditwatch/schema"
)

// Position is the checkpoint of a dir source.
type Position struct {
	// Done maps each finished file (relative path) to its size:mtime.
	Done map[string]string `json:"done,omitempty"`
	// Current is the file being read and Cursor the position in it (in
	// decompressed bytes for gzip files).
	Current string        `json:"current,omitempty"`
	Sig     string        `json:"sig,omitempty"`
	Cursor  source.Cursor `json:"cursor"`
}

func (p Position) clone() Position {
	q := p
	q.Done = make(map[string]string, len(p.Done))
	for k, v := range p.Done {
		q.Done[k] = v
	}
	return q
}

// Dir reads files dropped in a folder.
type Dir struct {
	cfg   Config
	name  string
	parse source.Parser
	cp    source.Checkpoints
	log   *slog.Logger
	m     *source.Metrics
	rej   *source.Rejector
	batch int
	opts  ingest.Options
	// integrity, when set, gets digest files and log file hashes.
	integrity source.Integrity
}

// SetIntegrity makes the source hand CloudTrail digest files (with the
// hex signature of a sibling DIGEST.sig file, when present) and every log
// file's SHA-256 (uncompressed, as read) to i (call before Run).
func (d *Dir) SetIntegrity(i source.Integrity) { d.integrity = i }

// maxDigestBytes caps a digest file's decompressed size.
const maxDigestBytes = 64 << 20

// isDigest reports whether rel names a CloudTrail digest file, and
// isDigestSig its sibling signature file.
func isDigest(rel string) bool {
	rel = "/" + filepath.ToSlash(rel)
	return strings.Contains(rel, "/CloudTrail-Digest/") && (strings.HasSuffix(rel, ".json.gz") || strings.HasSuffix(rel, ".json"))
}

func isDigestSig(rel string) bool {
	return strings.HasSuffix(rel, ".sig") && isDigest(strings.TrimSuffix(rel, ".sig"))
}

// readDigest hands a digest file and its sibling signature to the hook.
func (d *Dir) readDigest(ctx context.Context, digestPath string) {
	f, err := os.Open(digestPath)
	if err != nil {
		d.m.Errors.WithLabelValues(d.name).Inc()
		d.log.Error("open digest", "path", digestPath, "err", err)
		return
	}
	content, err := source.ReadMaybeGzip(f, maxDigestBytes)
	f.Close()
	if err != nil {
		d.m.Rejected.WithLabelValues(d.name).Inc()
		d.log.Warn("unreadable digest file", "path", digestPath, "err", err)
	}
	var sig string
	if b, err := os.ReadFile(digestPath + ".sig"); err == nil {
		sig = strings.TrimSpace(string(b))
	}
	d.integrity.Digest(ctx, digestPath, content, sig)
}

// New returns a Dir source named name.
func New(cfg Config, name string, parse source.Parser, cp source.Checkpoints, logger *slog.Logger, m *source.Metrics) (*Dir, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("dir %s: %w", name, err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m = source.NewMetrics(nil)
	}
	log := logger.With("source", name)
	return &Dir{cfg: cfg, name: name, parse: parse, cp: cp, log: log, m: m, rej: source.NewRejector(name, log, m), batch: 512,
		opts: ingest.DefaultOptions()}, nil
}

// Name is the source name.
func (d *Dir) Name() string { return d.name }

type candidate struct {
	rel, path, sig string
}

func (d *Dir) list(now time.Time, settle bool) ([]candidate, error) {
	var out []candidate
	err := filepath.WalkDir(d.cfg.Path, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if p == d.cfg.Path {
				return err
			}
			return nil
		}
		if strings.HasPrefix(e.Name(), ".") && p != d.cfg.Path {
			if e.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if e.IsDir() || !e.Type().IsRegular() {
			return nil
		}
		if d.cfg.Pattern != "" {
			if ok, _ := filepath.Match(d.cfg.Pattern, e.Name()); !ok {
				return nil
			}
		}
		fi, err := e.Info()
		if err != nil {
			return nil
		}
		if settle && now.Sub(fi.ModTime()) < d.cfg.SettleTime.D() {
			return nil
		}
		rel, _ := filepath.Rel(d.cfg.Path, p)
		out = append(out, candidate{rel: rel, path: p, sig: fmt.Sprintf("%d:%d", fi.Size(), fi.ModTime().UnixNano())})
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].rel < out[j].rel })
	return out, err
}

// Run reads every file not yet done, then polls for new ones (or returns,
// with Once).
func (d *Dir) Run(ctx context.Context, pub source.Publisher) error {
	var pos Position
	if d.cp != nil {
		b, err := d.cp.Load(d.name)
		if err != nil {
			return err
		}
		if err := source.DecodePosition(b, &pos); err != nil {
			return fmt.Errorf("dir %s: %w", d.name, err)
		}
	}
	if pos.Done == nil {
		pos.Done = map[string]string{}
	}
	tick := time.NewTicker(d.cfg.PollInterval.D())
	defer tick.Stop()
	defer d.rej.Close()
	for {
		files, err := d.list(time.Now(), !d.cfg.Once)
		if err != nil {
			d.m.Errors.WithLabelValues(d.name).Inc()
			d.log.Error("list folder", "path", d.cfg.Path, "err", err)
		}
		for _, c := range files {
			if pos.Done[c.rel] == c.sig {
				continue
			}
			if isDigestSig(c.rel) || (d.integrity != nil && isDigest(c.rel)) {
				// A digest (or its signature, which makes the digest
				// checked again) goes to the integrity hook, not the parser.
				if d.integrity != nil {
					d.readDigest(ctx, strings.TrimSuffix(c.path, ".sig"))
				}
				if err := d.finish(ctx, pub, c, &pos); err != nil {
					return err
				}
				continue
			}
			if err := d.readFile(ctx, pub, c, &pos); err != nil {
				return err
			}
			if ctx.Err() != nil {
				return nil
			}
		}
		if d.cfg.Once {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func (d *Dir) readFile(ctx context.Context, pub source.Publisher, c candidate, pos *Position) error {
	f, err := os.Open(c.path)
	if err != nil {
		d.m.Errors.WithLabelValues(d.name).Inc()
		d.log.Error("open file", "path", c.path, "err", err)
		return nil
	}
	defer f.Close()
	defer d.rej.Flush()
	// The one reader for compressed input: caps on size and ratio, no
	// nested gzip; the parser's record limits bound each record.
	r, _ := ingest.Decompress(f, d.opts)
	var hr *source.HashingReader
	if d.integrity != nil {
		hr = source.NewHashingReader(r)
		r = hr
	}
	cur := source.Cursor{}
	if pos.Current == c.rel && pos.Sig == c.sig {
		cur = pos.Cursor
		if _, err := io.CopyN(io.Discard, r, cur.Offset); err != nil {
			d.log.Warn("resume offset past end of file; reading it again", "path", c.path, "err", err)
			return d.finish(ctx, pub, c, pos)
		}
	}
	tr := source.Track(d.parse, r, c.path, cur)
	pos.Current, pos.Sig = c.rel, c.sig
	batch := make([]schema.Event, 0, d.batch)
	emit := func() error {
		pos.Cursor = tr.Cursor()
		p := pos.clone()
		d.m.Events.WithLabelValues(d.name).Add(float64(len(batch)))
		if err := pub.Publish(ctx, source.Batch{Source: d.name, Events: batch, Position: source.EncodeCursor(p)}); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("dir %s: %w", d.name, err)
		}
		batch = make([]schema.Event, 0, d.batch)
		return nil
	}
	for {
		if ctx.Err() != nil {
			return nil
		}
		ev, err := tr.Next()
		switch {
		case err == nil:
			d.m.Records.WithLabelValues(d.name).Inc()
			batch = append(batch, ev)
			if len(batch) >= d.batch {
				if err := emit(); err != nil {
					return err
				}
			}
			continue
		case errors.Is(err, io.EOF):
		case errors.Is(err, ingest.ErrRead):
			// The file's content (over a gzip cap, corrupt) or the disk:
			// the file is rejected as a whole and the next one is read.
			d.m.Errors.WithLabelValues(d.name).Inc()
			d.rej.Input(c.path, err)
			for {
				// what the reader still releases before its io.EOF
				ev, err := tr.Next()
				if err != nil {
					break
				}
				batch = append(batch, ev)
			}
		case source.IsRecordError(err):
			d.m.Records.WithLabelValues(d.name).Inc()
			d.rej.Record(err)
			continue
		default:
			d.m.Errors.WithLabelValues(d.name).Inc()
			d.rej.Input(c.path, err)
		}
		batch = append(batch, tr.Flush()...)
		if len(batch) > 0 {
			if err := emit(); err != nil {
				return err
			}
		}
		if hr != nil && errors.Is(err, io.EOF) {
			if sum, herr := hr.Finish(); herr == nil {
				d.integrity.LogFile(c.path, sum)
			}
		}
		return d.finish(ctx, pub, c, pos)
	}
}

// finish marks c done and publishes the position.
func (d *Dir) finish(ctx context.Context, pub source.Publisher, c candidate, pos *Position) error {
	pos.Done[c.rel] = c.sig
	pos.Current, pos.Sig, pos.Cursor = "", "", source.Cursor{}
	if err := pub.Publish(ctx, source.Batch{Source: d.name, Position: source.EncodeCursor(pos.clone())}); err != nil && ctx.Err() == nil {
		return fmt.Errorf("dir %s: %w", d.name, err)
	}
	d.log.Info("file read", "path", c.path)
	return nil
}
