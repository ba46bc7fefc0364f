// Package allow owns the responders' allow entries: a finding judged
// benign becomes an expiring entry (`auditwatch allow --finding ID`) that
// keeps the next identical finding from alerting. Entries are JSON lines
// appended to one file under the state directory; the detect stage filters
// its findings through them and notices new lines while it runs.
package allow

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"auditwatch/schema"
)

// FileName is the entries file inside the allow directory of state.dir.
const FileName = "entries.jsonl"

// Entry allows the findings of one detector that match every field set:
// the principal (always compared, empty included), the network holding
// the finding's address and the secret (resource).
type Entry struct {
	// ID names the entry (derived from the finding and the creation time).
	ID string `json:"id"`
	// Finding is the id of the finding the entry was made from.
	Finding   string `json:"finding"`
	Detector  string `json:"detector"`
	Principal string `json:"principal"`
	// Network is a CIDR prefix; empty matches any address.
	Network string `json:"network,omitempty"`
	// Resource is the secret; empty matches any.
	Resource string    `json:"resource,omitempty"`
	Created  time.Time `json:"created"`
	// Expires is when the entry stops allowing (zero: never).
	Expires time.Time `json:"expires,omitzero"`
	Comment string    `json:"comment,omitempty"`
	// By is who made it (the login of the person running the command).
	By string `json:"by,omitempty"`

	prefix netip.Prefix
}

// Prefixes are the network sizes an address is widened to (the
// unexpected_ip detector's learned network: /24 and /64 by default).
type Prefixes struct{ IPv4, IPv6 int }

// What each detector's entry keeps of its finding: the evidence that made
// it a finding. Detectors not listed keep every field the finding has.
var fields = map[string]struct{ network, resource bool }{
	schema.DetectorUnexpectedIP:      {network: true},
	schema.DetectorNewLocation:       {network: true},
	schema.DetectorFirstTimeAccess:   {resource: true},
	schema.DetectorAuthFailureSpike:  {network: true},
	schema.DetectorAccessVolumeSpike: {},
	schema.DetectorSecretEnumeration: {},
}

// FromFinding makes the entry that allows f's kind of finding again: the
// same detector and principal and, by detector, the network of its
// address (unexpected_ip, new_location, auth_failure_spike), its secret
// (first_time_access), nothing more (access_volume_spike,
// secret_enumeration) or both (others: privileged_use, honeytokens, rules,
// credential linking). ttl 0 never expires.
func FromFinding(f schema.Finding, p Prefixes, now time.Time, ttl time.Duration) (Entry, error) {
	if f.Detector == "" {
		return Entry{}, errors.New("allow: the finding names no detector")
	}
	keep, listed := fields[f.Detector]
	if !listed {
		keep.network, keep.resource = true, true
	}
	e := Entry{Finding: f.ID, Detector: f.Detector, Principal: f.Principal, Created: now.UTC()}
	if keep.network && f.SourceIP != "" {
		a, err := netip.ParseAddr(f.SourceIP)
		if err != nil {
			return Entry{}, fmt.Errorf("allow: finding %s: source address %q: %w", f.ID, f.SourceIP, err)
		}
		bits := p.IPv4
		if a.Is6() && !a.Is4In6() {
			bits = p.IPv6
		}
		a = a.Unmap()
		if bits <= 0 || bits > a.BitLen() {
			bits = a.BitLen()
		}
		pfx, err := a.Prefix(bits)
		if err != nil {
			return Entry{}, fmt.Errorf("allow: finding %s: %w", f.ID, err)
		}
		e.Network = pfx.String()
	}
	if keep.resource {
		e.Resource = f.Resource
	}
	if e.Principal == "" && e.Network == "" && e.Resource == "" {
		return Entry{}, fmt.Errorf("allow: finding %s (%s) has no principal, address or secret to allow", f.ID, f.Detector)
	}
	if ttl > 0 {
		e.Expires = e.Created.Add(ttl)
	}
	e.ID = schema.MakeID("allow", f.ID, e.Created.Format(time.RFC3339Nano))[:16]
	return e, e.compile()
}

func (e *Entry) compile() error {
	if e.Detector == "" {
		return errors.New("no detector")
	}
	if e.Network == "" {
		return nil
	}
	p, err := netip.ParsePrefix(e.Network)
	if err != nil {
		return fmt.Errorf("network: %w", err)
	}
	e.prefix = p.Masked()
	return nil
}

// Active reports whether the entry still allows at now.
func (e *Entry) Active(now time.Time) bool {
	return e.Expires.IsZero() || now.Before(e.Expires)
}

// Matches reports whether the entry allows f at now.
func (e *Entry) Matches(f *schema.Finding, now time.Time) bool {
	if f.Detector != e.Detector || f.Principal != e.Principal || !e.Active(now) {
		return false
	}
	if e.Resource != "" && f.Resource != e.Resource {
		return false
	}
	if e.Network != "" {
		a, err := netip.ParseAddr(f.SourceIP)
		if err != nil || !e.prefix.Contains(a.Unmap()) {
			return false
		}
	}
	return true
}

// Append adds e to the entries file at path durably (one write of one
// line on a file opened for appending, then fsync; the directory too
// when the file is new). Concurrent appenders do not interleave lines.
func Append(path string, e Entry) error {
	if err := e.compile(); err != nil {
		return fmt.Errorf("allow entry: %w", err)
	}
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("allow entry: %w", err)
	}
	if len(b) > maxLine {
		return fmt.Errorf("allow entry for finding %s: %d bytes, over the %d-byte line limit", e.Finding, len(b), maxLine)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("allow: %w", err)
	}
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("allow: %w", err)
	}
	_, werr := f.Write(append(b, '\n'))
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return fmt.Errorf("allow: write %s: %w", path, err)
	}
	if errors.Is(statErr, os.ErrNotExist) {
		if d, err := os.Open(dir); err == nil {
			d.Sync()
			d.Close()
		}
	}
	return nil
}

// Load reads the entries file at path (none when it does not exist). A
// line that does not decode is reported with its number and skipped, the
// others still load; a torn last line (an append cut short) is ignored.
func Load(path string) ([]Entry, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("allow: %w", err)
	}
	defer f.Close()
	return read(f, path)
}

// maxLine bounds one entry line (principals and paths are log-supplied).
const maxLine = 64 << 10

// maxLineErrors bounds the bad lines one read reports with file and line
// (the rest are counted), and maxErrText each one's text (a bad network
// is quoted from the line).
const (
	maxLineErrors = 20
	maxErrText    = 200
)

// lineErrors collects a read's per-line errors: the first maxLineErrors
// with file and line, then a count.
type lineErrors struct {
	path string
	errs []error
	more int
}

func (l *lineErrors) add(n int, err error) {
	if len(l.errs) >= maxLineErrors {
		l.more++
		return
	}
	msg := err.Error()
	if len(msg) > maxErrText {
		msg = strings.ToValidUTF8(msg[:maxErrText], "") + "…"
	}
	l.errs = append(l.errs, fmt.Errorf("%s:%d: %s", l.path, n, msg))
}

func (l *lineErrors) err() error {
	if l.more > 0 {
		l.errs = append(l.errs, fmt.Errorf("%s: %d more bad lines", l.path, l.more))
	}
	return errors.Join(l.errs...)
}

func read(r io.Reader, path string) ([]Entry, error) {
	var out []Entry
	errs := lineErrors{path: path}
	br := bufio.NewReaderSize(r, maxLine+1)
	for n := 1; ; n++ {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			errs.add(n, fmt.Errorf("line longer than %d bytes", maxLine))
			if err != nil {
				break
			}
			continue
		}
		if err != nil { // EOF: a last line without its newline is torn
			break
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		var e Entry
		if err := json.Unmarshal(line, &e); err != nil {
			errs.add(n, err)
			continue
		}
		if err := e.compile(); err != nil {
			errs.add(n, err)
			continue
		}
		out = append(out, e)
	}
	return out, errs.err()
}

// List is the entries file as the detect stage sees it: reloaded when the
// file changes (checked at most every CheckEvery while findings come),
// so `auditwatch allow` takes effect while `run` holds the state.
type List struct {
	path string
	now  func() time.Time
	// CheckEvery bounds how often the file is looked at.
	CheckEvery time.Duration
	// OnError sees a file that does not read (the entries that did read
	// still apply).
	OnError func(error)

	mu        sync.Mutex
	entries   []Entry
	size      int64
	mtime     time.Time
	checked   time.Time
	loaded    bool
	allowed   uint64
	lastError string
}

// Open returns the list of the entries file at path; now is the clock
// expiry is judged by (time.Now when nil).
func Open(path string, now func() time.Time) *List {
	if now == nil {
		now = time.Now
	}
	return &List{path: path, now: now, CheckEvery: 200 * time.Millisecond}
}

// Path is the entries file.
func (l *List) Path() string { return l.path }

// Allowed is how many findings the list has kept from alerting.
func (l *List) Allowed() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.allowed
}

// refresh reloads the file when its size or modification time changed.
func (l *List) refresh(now time.Time) {
	if l.loaded && now.Sub(l.checked) < l.CheckEvery {
		return
	}
	l.checked, l.loaded = now, true
	st, err := os.Stat(l.path)
	if errors.Is(err, os.ErrNotExist) {
		l.entries, l.size, l.mtime = nil, 0, time.Time{}
		return
	}
	if err != nil || (st.Size() == l.size && st.ModTime().Equal(l.mtime)) {
		return
	}
	es, err := Load(l.path)
	if err != nil && l.OnError != nil && err.Error() != l.lastError {
		l.lastError = err.Error()
		l.OnError(err)
	}
	l.entries, l.size, l.mtime = es, st.Size(), st.ModTime()
}

// Filter returns fs without the findings an active entry allows (fs's
// backing array is reused).
func (l *List) Filter(fs []schema.Finding) []schema.Finding {
	if len(fs) == 0 {
		return fs
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.refresh(now)
	if len(l.entries) == 0 {
		return fs
	}
	out := fs[:0]
next:
	for i := range fs {
		for j := range l.entries {
			if l.entries[j].Matches(&fs[i], now) {
				l.allowed++
				continue next
			}
		}
		out = append(out, fs[i])
	}
	return out
}
