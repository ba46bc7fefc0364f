package source

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"auditwatch/ingest"
	"auditwatch/internal/escape"
)

// Rejection logging defaults: per source, the first LogFirst rejections of
// each minute are logged in full (input, line, reason), the rest are
// counted and reported in one summary line a minute.
const (
	DefaultLogFirst     = 10
	DefaultSummaryEvery = time.Minute
	// maxLoggedError bounds the error text of one log line.
	maxLoggedError = 512
)

// Rejector is where a source reports bad records and unreadable inputs:
// it counts them (auditwatch_ingest_rejected_total), logs them without
// flooding (the first few of each minute with input and line, then one
// summary a minute) and writes the raw record to the quarantine file. It
// is safe for concurrent use.
type Rejector struct {
	source string
	log    *slog.Logger
	m      *Metrics
	q      *Quarantine
	now    func() time.Time
	first  int
	every  time.Duration

	mu         sync.Mutex
	window     time.Time // start of the current logging window
	logged     int       // full lines written in the window
	suppressed int64     // rejections not logged in full since the last summary
	last       string    // the last suppressed reason
}

// NewRejector returns the Rejector of one source; m.Quarantine (may be
// nil) receives raw records.
func NewRejector(source string, log *slog.Logger, m *Metrics) *Rejector {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Rejector{source: source, log: log, m: m, q: m.Quarantine, now: time.Now, first: DefaultLogFirst, every: DefaultSummaryEvery}
}

// SetClock replaces the clock (tests).
func (r *Rejector) SetClock(now func() time.Time) { r.now = now }

// Record reports one bad record (a RecordError names input and line).
func (r *Rejector) Record(err error) {
	r.m.Rejected.WithLabelValues(r.source).Inc()
	var re *ingest.RecordError
	if errors.As(err, &re) && r.q != nil {
		r.q.Write(r.source, re.Input, re.Line, err, re.Raw)
	}
	r.note("rejected record", err)
}

// Input reports an input (file, object) that was rejected or could not be
// read; input names it.
func (r *Rejector) Input(input string, err error) {
	r.m.Rejected.WithLabelValues(r.source).Inc()
	if r.q != nil {
		r.q.Write(r.source, input, 0, err, nil)
	}
	r.note("rejected input", err, "input", escape.Bounded(escape.Log, input, 256))
}

func (r *Rejector) note(msg string, err error, attrs ...any) {
	text := escape.Bounded(escape.Log, err.Error(), maxLoggedError)
	now := r.now()
	r.mu.Lock()
	if r.window.IsZero() || now.Sub(r.window) >= r.every {
		r.summaryLocked(now)
		r.window, r.logged = now, 0
	}
	if r.logged < r.first {
		r.logged++
		r.mu.Unlock()
		r.log.Warn(msg, append(attrs, "err", text)...)
		return
	}
	r.suppressed++
	r.last = text
	r.mu.Unlock()
}

// summaryLocked writes the summary of suppressed rejections, if any.
func (r *Rejector) summaryLocked(now time.Time) {
	if r.suppressed == 0 {
		return
	}
	r.log.Warn("rejections not logged one by one", "count", r.suppressed, "since", r.window.UTC().Format(time.RFC3339), "last_err", r.last,
		"total_metric", "auditwatch_ingest_rejected_total")
	r.suppressed, r.last = 0, ""
}

// Flush writes the summary when a minute has passed since the window
// began; Close writes it in any case.
func (r *Rejector) Flush() {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.window.IsZero() && now.Sub(r.window) >= r.every {
		r.summaryLocked(now)
		r.window, r.logged = now, 0
	}
}

// Close writes any pending summary (the source is stopping).
func (r *Rejector) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.summaryLocked(r.now())
}

// Quarantine is a capped JSON Lines file of rejected raw records: one
// object per rejection with the source, input, line, reason and the raw
// record (cut to ingest.MaxRawExcerpt bytes). Once the file reaches its
// cap further records are counted (auditwatch_ingest_quarantine_dropped_total),
// not written. It is shared by the sources of a process and safe for
// concurrent use.
type Quarantine struct {
	path    string
	max     int64
	mu      sync.Mutex
	f       *os.File
	size    int64
	written prometheus.Counter
	dropped prometheus.Counter
}

// DefaultQuarantineBytes caps the quarantine file.
const DefaultQuarantineBytes = 64 << 20

// OpenQuarantine opens (appending) or creates the quarantine file at path,
// capped at max bytes (<= 0: DefaultQuarantineBytes); reg (may be nil)
// gets its counters.
func OpenQuarantine(path string, max int64, reg prometheus.Registerer) (*Quarantine, error) {
	if max <= 0 {
		max = DefaultQuarantineBytes
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("quarantine: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("quarantine: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("quarantine: %w", err)
	}
	q := &Quarantine{path: path, max: max, f: f, size: st.Size(),
		written: prometheus.NewCounter(prometheus.CounterOpts{Name: "auditwatch_ingest_quarantine_records_total",
			Help: "Rejected raw records written to the quarantine file."}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "auditwatch_ingest_quarantine_dropped_total",
			Help: "Rejected raw records not written because the quarantine file is at its cap."}),
	}
	if reg != nil {
		q.written = register(reg, q.written)
		q.dropped = register(reg, q.dropped)
	}
	return q, nil
}

// Path is the quarantine file.
func (q *Quarantine) Path() string { return q.path }

type quarantined struct {
	Time   time.Time `json:"time"`
	Source string    `json:"source"`
	Input  string    `json:"input"`
	Line   int       `json:"line,omitempty"`
	Error  string    `json:"error"`
	Raw    string    `json:"raw,omitempty"`
	// RawBase64 holds the raw record instead when it is not valid UTF-8.
	RawBase64 []byte `json:"raw_base64,omitempty"`
}

// Write appends one rejection, unless the cap is reached.
func (q *Quarantine) Write(source, input string, line int, err error, raw []byte) {
	rec := quarantined{Time: time.Now().UTC(), Source: source, Input: input, Line: line,
		Error: escape.Bounded(escape.Log, err.Error(), maxLoggedError)}
	if utf8.Valid(raw) {
		rec.Raw = string(raw)
	} else {
		rec.RawBase64 = raw
	}
	b, jerr := json.Marshal(rec)
	if jerr != nil {
		q.dropped.Inc()
		return
	}
	b = append(b, '\n')
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.f == nil || q.size+int64(len(b)) > q.max {
		q.dropped.Inc()
		return
	}
	n, werr := q.f.Write(b)
	q.size += int64(n)
	if werr != nil {
		q.dropped.Inc()
		return
	}
	q.written.Inc()
}

// Close closes the file.
func (q *Quarantine) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.f == nil {
		return nil
	}
	err := q.f.Close()
	q.f = nil
	return err
}
