// Package ingest owns turning raw audit-log streams into normalized
// schema.Events: format auto-detection, framing with limits against
// hostile input (ingest/jsonx), the CloudTrail (ingest/cloudtrail) and
// Vault/OpenBao (ingest/vault) parsers, request/response pairing, and
// opening files, directories, .gz objects and stdin.
//
// A Reader yields events in input order; a bad record becomes a
// *RecordError naming the input and position and the Reader carries on
// with the next record.
//
// Speed: a record alone on its line (the usual case) is not run through
// the framing scanner; it is parsed where it lies, and an ordinary Vault
// entry is read in place by vault.Parser.ParseLine, which validates the
// whole record but builds no tree. Anything those fast paths decline goes
// the general way (framing, fastjson), which has the last word on errors,
// so both give the same events, errors and offsets (fastpath_test.go and
// the packages' fuzz targets check it). Repeated strings are shared
// through a bounded intern.Table.
package ingest

import (
	"auditwatch/schema"
	"errors"
	"fmt"
	"io"
	"time"
)

// Formats accepted by Options.Format.
const (
	FormatAuto       = "auto"
	FormatCloudTrail = "cloudtrail"
	FormatVault      = "vault"
)

// Sentinel errors wrapped by RecordError.
var (
	ErrUnrecognized = errors.New("unrecognized record: neither a CloudTrail record nor a Vault audit entry")
	ErrWrongFormat  = errors.New("record is not of the requested format")
	ErrGzipLimit    = errors.New("decompressed size exceeds the limit")
	ErrInvalidJSON  = errors.New("invalid JSON")
	ErrServerLog    = errors.New("a Vault server (operational) log line, not an audit entry; read the audit device's output instead")
)

// Options configures a Reader. Zero fields take the defaults of
// DefaultOptions.
type Options struct {
	// Format is "auto" (detect per record), "cloudtrail" or "vault".
	Format string `yaml:"format"`
	// MaxRecordBytes bounds one record (default 1 MiB).
	MaxRecordBytes int `yaml:"max_record_bytes"`
	// MaxDepth bounds JSON nesting (default 64).
	MaxDepth int `yaml:"max_depth"`
	// MaxGzipBytes bounds the decompressed size of one .gz object
	// (default 1 GiB).
	MaxGzipBytes int64 `yaml:"max_gzip_bytes"`
	// MaxGzipRatio bounds decompressed/compressed bytes of one .gz object
	// once 8 MiB have come out (default 200; log files compress about
	// 10-30:1, a gzip bomb about 1000:1).
	MaxGzipRatio int64 `yaml:"max_gzip_ratio"`
	// MaxPending bounds Vault request entries waiting for their
	// response (default 10000).
	MaxPending int `yaml:"max_pending"`
	// Now is the clock used for records that carry no time at all
	// (Vault 0.1, stripped CloudTrail records). Default time.Now.
	Now func() time.Time `yaml:"-"`
	// Stdin is what the path "-" reads (default os.Stdin).
	Stdin io.Reader `yaml:"-"`
	// KeepRaw sets schema.Event.Raw to the original record (for Sigma
	// rules and the stored raw column). Off, events carry no copy.
	KeepRaw bool `yaml:"-"`
	// WantRaw, when set with KeepRaw, keeps the record only for events it
	// accepts (replay keeps records only where a rule matches them). raw
	// is the record's text, valid only during the call (nil when the
	// record was read as a tree). Of ev, WantRaw may set only Mark, which
	// the event then carries.
	WantRaw func(ev *schema.Event, raw []byte) bool `yaml:"-"`
}

// DefaultOptions returns the defaults.
func DefaultOptions() Options {
	return Options{
		Format:         FormatAuto,
		MaxRecordBytes: 1 << 20,
		MaxDepth:       64,
		MaxGzipBytes:   1 << 30,
		MaxGzipRatio:   200,
		MaxPending:     10000,
		Now:            time.Now,
	}
}

func (o Options) withDefaults() Options {
	d := DefaultOptions()
	if o.Format == "" {
		o.Format = d.Format
	}
	if o.MaxRecordBytes <= 0 {
		o.MaxRecordBytes = d.MaxRecordBytes
	}
	if o.MaxDepth <= 0 {
		o.MaxDepth = d.MaxDepth
	}
	if o.MaxGzipBytes <= 0 {
		o.MaxGzipBytes = d.MaxGzipBytes
	}
	if o.MaxGzipRatio <= 0 {
		o.MaxGzipRatio = d.MaxGzipRatio
	}
	if o.MaxPending <= 0 {
		o.MaxPending = d.MaxPending
	}
	if o.Now == nil {
		o.Now = d.Now
	}
	return o
}

// Validate reports every bad field.
func (o Options) Validate() error {
	var errs []error
	switch o.Format {
	case "", FormatAuto, FormatCloudTrail, FormatVault:
	default:
		errs = append(errs, fmt.Errorf("format: %q is not one of auto, cloudtrail, vault", o.Format))
	}
	if o.MaxRecordBytes < 0 {
		errs = append(errs, fmt.Errorf("max_record_bytes: %d is negative", o.MaxRecordBytes))
	}
	if o.MaxDepth < 0 || o.MaxDepth > 10000 {
		errs = append(errs, fmt.Errorf("max_depth: %d is outside 0..10000", o.MaxDepth))
	}
	if o.MaxGzipBytes < 0 {
		errs = append(errs, fmt.Errorf("max_gzip_bytes: %d is negative", o.MaxGzipBytes))
	}
	if o.MaxPending < 0 {
		errs = append(errs, fmt.Errorf("max_pending: %d is negative", o.MaxPending))
	}
	return errors.Join(errs...)
}

// RecordError is a record that could not be normalized.
type RecordError struct {
	Input  string // file name, or "-" for stdin
	Line   int    // 1-based line where the record starts (0 when unknown)
	Record int    // 1-based ordinal of the record in the input
	Offset int64  // byte offset of the record in the (decompressed) input
	Err    error
	// Raw is the start of the record as read (at most MaxRawExcerpt
	// bytes; empty when the input could not be read), for quarantine.
	Raw []byte
}

// MaxRawExcerpt bounds RecordError.Raw.
const MaxRawExcerpt = 64 << 10

// ErrRead marks a RecordError that is the input failing to be read (I/O,
// or compressed data over a cap or corrupt: see IsBadInput), not one bad
// record.
var ErrRead = errors.New("input read failed")

func (e *RecordError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: record %d: %v", e.Input, e.Line, e.Record, e.Err)
	}
	return fmt.Sprintf("%s: record %d: %v", e.Input, e.Record, e.Err)
}

func (e *RecordError) Unwrap() error { return e.Err }

// Stats counts what a Reader has seen.
type Stats struct {
	Records  int64 `json:"records"`  // records framed (including bad and skipped ones)
	Events   int64 `json:"events"`   // events returned
	Rejected int64 `json:"rejected"` // records returned as RecordError
	Skipped  int64 `json:"skipped"`  // records recognized and deliberately ignored (CloudTrail digests)
	Unpaired int64 `json:"unpaired"` // Vault request entries emitted without a response
	Evicted  int64 `json:"evicted"`  // of those, released early because MaxPending were waiting
	// InternResets counts how often the bounded table of shared strings
	// was full and started over (many distinct values: high cardinality
	// or hostile input).
	InternResets int64 `json:"intern_resets"`
}

// Add sums two Stats.
func (s Stats) Add(o Stats) Stats {
	return Stats{s.Records + o.Records, s.Events + o.Events, s.Rejected + o.Rejected, s.Skipped + o.Skipped, s.Unpaired + o.Unpaired, s.Evicted + o.Evicted, s.InternResets + o.InternResets}
}
