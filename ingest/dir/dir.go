// Package dir owns the directory source: audit files (plain or gzip)
// dropped into a folder are read once each, in name order; a file that
// turns out bad lets the next ones start beside it (up to
// Config.Parallel, within a window of that many files), so a slow bad
// file never holds the good files behind it. It serves backfills and
// the quickstart. A file is taken once its size and modification time
// have been stable for the settle time; its position (the files being
// read and the cursor in each) and the set of finished files are
// checkpointed, so a restart resumes mid-file and never reads a finished
// file twice. Batches are published one at a time, each carrying the
// position of everything published up to it.
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
	"sync"
	"sync/atomic"
	"time"

	"auditwatch/ingest"
	"auditwatch/ingest/source"
	"auditwatch/schema"
)

// Position is the checkpoint of a dir source.
type Position struct {
	// Done maps each finished file (relative path) to its size:mtime.
	Done map[string]string `json:"done,omitempty"`
	// Reading maps each file being read (relative path) to its size:mtime
	// and the cursor after its last published record.
	Reading map[string]Reading `json:"reading,omitempty"`
	// Current, Sig and Cursor are the one file being read, as checkpoints
	// written before files were read in parallel hold it; Run moves it to
	// Reading.
	Current string        `json:"current,omitempty"`
	Sig     string        `json:"sig,omitempty"`
	Cursor  source.Cursor `json:"cursor,omitzero"`
}

// Reading is where a file being read is.
type Reading struct {
	Sig string `json:"sig"`
	// Cursor is in decompressed bytes for gzip files.
	Cursor source.Cursor `json:"cursor"`
}

func (p Position) clone() Position {
	q := Position{Done: make(map[string]string, len(p.Done)), Reading: make(map[string]Reading, len(p.Reading))}
	for k, v := range p.Done {
		q.Done[k] = v
	}
	for k, v := range p.Reading {
		q.Reading[k] = v
	}
	return q
}

// progress is the source's position shared by the files being read;
// publishing under mu keeps each batch's position the position of
// everything published up to it.
type progress struct {
	mu  sync.Mutex
	pos Position
}

// publish updates the position with fn and publishes events with it.
func (pr *progress) publish(ctx context.Context, pub source.Publisher, name string, events []schema.Event, fn func(*Position)) error {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	fn(&pr.pos)
	return pub.Publish(ctx, source.Batch{Source: name, Events: events, Position: source.EncodeCursor(pr.pos.clone())})
}

func (pr *progress) done(c candidate) bool {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return pr.pos.Done[c.rel] == c.sig
}

// resume returns where a file's reading left off (zero: the start).
func (pr *progress) resume(c candidate) source.Cursor {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if r, ok := pr.pos.Reading[c.rel]; ok && r.Sig == c.sig {
		return r.Cursor
	}
	return source.Cursor{}
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
	// integrity, when set, gets digest files and log file hashes (one
	// call at a time: imu).
	integrity source.Integrity
	imu       sync.Mutex
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

// exists reports whether a file is at path.
func exists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, fs.ErrNotExist)
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
	d.imu.Lock()
	defer d.imu.Unlock()
	d.integrity.Digest(ctx, digestPath, content, sig)
}

// New returns a Dir source named name.
func New(cfg Config, name string, parse source.Parser, cp source.Checkpoints, logger *slog.Logger, m *source.Metrics) (*Dir, error) {
	b, err := source.Prepare("dir", name, &cfg, logger, m)
	if err != nil {
		return nil, err
	}
	return &Dir{cfg: cfg, name: name, parse: parse, cp: cp, log: b.Log, m: b.M, rej: b.Rej, batch: 512,
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
// with Once). Up to Config.Parallel files are read at once, in name
// order within a window of that many files from the oldest still being
// read.
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
	if pos.Reading == nil {
		pos.Reading = map[string]Reading{}
	}
	if pos.Current != "" {
		pos.Reading[pos.Current] = Reading{Sig: pos.Sig, Cursor: pos.Cursor}
		pos.Current, pos.Sig, pos.Cursor = "", "", source.Cursor{}
	}
	pr := &progress{pos: pos}
	defer d.rej.Close()

	// A failing file (its publish failed) stops the others and is Run's
	// error; the caller's ctx ending is a clean stop.
	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	defer wg.Wait()
	// The files being read, with how they are going: a file that turns
	// out bad lets the next start beside it; good files are read one
	// after another, in name order (the identity linker needs a key's
	// issue before its uses).
	inflight := map[string]*fileState{}
	finished := make(chan string, d.cfg.Parallel)
	turnedBad := make(chan struct{}, 1)
	stopped := func() error {
		cancel(nil)
		wg.Wait()
		if err := context.Cause(wctx); err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		return nil
	}
	// wait takes one finished file off inflight, or notes that one
	// turned bad; false when stopping.
	wait := func() bool {
		select {
		case rel := <-finished:
			delete(inflight, rel)
			return true
		case <-turnedBad:
			return true
		case <-wctx.Done():
			return false
		}
	}
	tick := time.NewTicker(d.cfg.PollInterval.D())
	defer tick.Stop()
	for {
		files, err := d.list(time.Now(), !d.cfg.Once)
		if err != nil {
			d.m.Errors.WithLabelValues(d.name).Inc()
			d.log.Error("list folder", "path", d.cfg.Path, "err", err)
		}
		index := make(map[string]int, len(files))
		for i, c := range files {
			index[c.rel] = i
		}
		for i, c := range files {
			if inflight[c.rel] != nil || pr.done(c) {
				continue
			}
			if isDigestSig(c.rel) || (d.integrity != nil && isDigest(c.rel)) {
				// A signature that came before its digest waits for it:
				// the digest, when it arrives, is read with it (and the
				// signature then hands it over again, as one that comes
				// after does). Reading it now would log and count an
				// error for a digest that is only not there yet.
				if isDigestSig(c.rel) && !exists(strings.TrimSuffix(c.path, ".sig")) {
					continue
				}
				// A digest (or its signature, which makes the digest
				// checked again) goes to the integrity hook, not the parser.
				if d.integrity != nil {
					d.readDigest(wctx, strings.TrimSuffix(c.path, ".sig"))
				}
				if err := d.finish(wctx, pub, c, pr); err != nil {
					cancel(err)
					return stopped()
				}
				continue
			}
			// A file starts when none is being read, or when every file
			// being read has turned out bad; at most Parallel files, none
			// further than Parallel files from the oldest still being read.
			for !d.mayStart(i, inflight, index) {
				if !wait() {
					return stopped()
				}
			}
			fs := &fileState{}
			fs.onBad = func() {
				select {
				case turnedBad <- struct{}{}:
				default:
				}
			}
			inflight[c.rel] = fs
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := d.readFile(wctx, pub, c, pr, fs); err != nil {
					cancel(err)
				}
				finished <- c.rel
			}()
		}
		if d.cfg.Once {
			for len(inflight) > 0 {
				if !wait() {
					return stopped()
				}
			}
			return stopped()
		}
		for again := false; !again; {
			select {
			case <-wctx.Done():
				return stopped()
			case rel := <-finished:
				delete(inflight, rel)
			case <-turnedBad:
			case <-tick.C:
				again = true
			}
		}
	}
}

// badAfter is how many rejected records, outnumbering the good ones, make
// a file bad (one that lets the next file start beside it).
const badAfter = 1000

// fileState is how the reading of one file is going.
type fileState struct {
	good, rejected atomic.Int64
	bad            atomic.Bool
	onBad          func()
}

func (f *fileState) record(ok bool) {
	if ok {
		f.good.Add(1)
		return
	}
	if r := f.rejected.Add(1); r >= badAfter && r > f.good.Load() && !f.bad.Swap(true) {
		f.onBad()
	}
}

// unreadable marks the file bad at once (over a gzip cap, corrupt).
func (f *fileState) unreadable() {
	if !f.bad.Swap(true) {
		f.onBad()
	}
}

// mayStart reports whether the file at index i of the listing may start:
// no file is being read, or every one being read is bad, fewer than
// Parallel are, and i is fewer than Parallel files after the oldest.
func (d *Dir) mayStart(i int, inflight map[string]*fileState, index map[string]int) bool {
	if len(inflight) == 0 {
		return true
	}
	if len(inflight) >= d.cfg.Parallel {
		return false
	}
	oldest := i
	for rel, fs := range inflight {
		if !fs.bad.Load() {
			return false
		}
		if j, ok := index[rel]; ok && j < oldest {
			oldest = j
		}
	}
	return i-oldest < d.cfg.Parallel
}

func (d *Dir) readFile(ctx context.Context, pub source.Publisher, c candidate, pr *progress, fs *fileState) error {
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
	cur := pr.resume(c)
	if cur.Offset > 0 {
		if _, err := io.CopyN(io.Discard, r, cur.Offset); err != nil {
			d.log.Warn("resume offset past end of file; reading it again", "path", c.path, "err", err)
			return d.finish(ctx, pub, c, pr)
		}
	}
	tr := source.Track(d.parse, r, c.path, cur)
	batch := make([]schema.Event, 0, d.batch)
	emit := func() error {
		at := Reading{Sig: c.sig, Cursor: tr.Cursor()}
		d.m.Events.WithLabelValues(d.name).Add(float64(len(batch)))
		if err := pr.publish(ctx, pub, d.name, batch, func(p *Position) { p.Reading[c.rel] = at }); err != nil {
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
			fs.record(true)
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
			fs.unreadable()
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
			fs.record(false)
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
				d.imu.Lock()
				d.integrity.LogFile(c.path, sum)
				d.imu.Unlock()
			}
		}
		return d.finish(ctx, pub, c, pr)
	}
}

// finish marks c done and publishes the position.
func (d *Dir) finish(ctx context.Context, pub source.Publisher, c candidate, pr *progress) error {
	err := pr.publish(ctx, pub, d.name, nil, func(p *Position) {
		p.Done[c.rel] = c.sig
		delete(p.Reading, c.rel)
	})
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("dir %s: %w", d.name, err)
	}
	d.log.Info("file read", "path", c.path)
	return nil
}
