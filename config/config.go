// Package config owns auditwatch's root YAML configuration: which sources
// to read, which stream connects the stages, where state and checkpoints
// live, the detectors, alert outputs and storage sections, the HTTP
// endpoint for metrics and health, and logging. Decoding is strict (an
// unknown key is an error), defaults are filled in one place (SetDefaults),
// and Validate reports every bad field with its path.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"auditwatch/config/duration"
	"auditwatch/ingest/dir"
	"auditwatch/ingest/filetail"
	"auditwatch/ingest/lookup"
	"auditwatch/ingest/s3sqs"
	"auditwatch/ingest/socket"
	"auditwatch/internal/redact"
	"auditwatch/stream"
)

// ErrInvalid wraps every validation failure.
var ErrInvalid = errors.New("invalid config")

// Source types.
const (
	SourceDir      = "dir"
	SourceFileTail = "filetail"
	SourceSocket   = "socket"
	SourceS3SQS    = "s3sqs"
	SourceLookup   = "lookup"
)

// Config is the root of the config file.
type Config struct {
	Sources []Source      `yaml:"sources"`
	Stream  stream.Config `yaml:"stream"`
	State   State         `yaml:"state"`
	// Detectors, Alerts and Storage are the sections of the detect, alert
	// and store packages.
	Detectors yaml.Node `yaml:"detectors"`
	Alerts    yaml.Node `yaml:"alerts"`
	Storage   yaml.Node `yaml:"storage"`
	// Rules is the Sigma rules section (package sigma).
	Rules yaml.Node `yaml:"rules"`
	// Identity configures credential linking (package identity).
	Identity yaml.Node `yaml:"identity"`
	// Geo configures network context for addresses (package netinfo).
	Geo yaml.Node `yaml:"geo"`
	// Trail configures CloudTrail digest validation (package trail).
	Trail yaml.Node `yaml:"trail"`
	// Quarantine is where the sources' rejected raw records go (package
	// ingest/source).
	Quarantine yaml.Node `yaml:"quarantine"`
	// Silence and Canary configure the pipeline's watch over itself
	// (package watch).
	Silence yaml.Node `yaml:"silence"`
	Canary  yaml.Node `yaml:"canary"`
	// Files configures the JSON Lines file sinks.
	Files Files `yaml:"files"`
	// Console prints findings and progress for a person at a terminal.
	Console Console `yaml:"console"`
	HTTP    HTTP    `yaml:"http"`
	Logging Logging `yaml:"logging"`
	// ShutdownTimeout bounds a graceful stop after SIGTERM.
	ShutdownTimeout duration.Duration `yaml:"shutdown_timeout"`
	// RawRecords keeps each event's original record (schema.Event.Raw):
	// carried compressed on Kafka and stored in the events table's raw
	// column, so backtests and Sigma rules see every field. Default true;
	// false stores none (Sigma rules, when configured, still read it).
	RawRecords *bool `yaml:"raw_records"`
}

// Source is one entry of `sources:`. Exactly the section named by Type is set.
type Source struct {
	// Name identifies the source in metrics, logs and checkpoints.
	Name string `yaml:"name"`
	Type string `yaml:"type"`
	// Format is the wire format: "auto" (default), "cloudtrail", "vault",
	// or "jsonl" (already-normalized events).
	Format   string           `yaml:"format"`
	Dir      *dir.Config      `yaml:"dir"`
	FileTail *filetail.Config `yaml:"filetail"`
	Socket   *socket.Config   `yaml:"socket"`
	S3SQS    *s3sqs.Config    `yaml:"s3sqs"`
	Lookup   *lookup.Config   `yaml:"lookup"`
}

// State is where durable state lives and how often it is checkpointed.
type State struct {
	// Dir holds detector state, source checkpoints and spools.
	Dir string `yaml:"dir"`
	// CheckpointInterval and CheckpointEvents bound how much work a crash
	// replays: a checkpoint is taken after whichever comes first. Findings
	// do not wait for it (they go on with their batch), but stored events
	// do: the store gets one block per checkpoint, and the embedded store
	// pays about the same CPU for a block of 1,000 rows as for 5,000
	// (docs/PERFORMANCE.md, Storage), hence 3 s by default.
	CheckpointInterval duration.Duration `yaml:"checkpoint_interval"`
	CheckpointEvents   int               `yaml:"checkpoint_events"`
	// IdleDrain: after this long without new events the detectors'
	// event-time reorder buffer is released, so the last events of a quiet
	// stream still raise their findings without waiting for newer events.
	IdleDrain duration.Duration `yaml:"idle_drain"`
}

// Files are the JSON Lines file sinks; an empty path disables one.
type Files struct {
	// Findings gets every finding once (deduplicated by id across restarts).
	Findings string `yaml:"findings"`
	// Events gets every event handed to the detectors (at least once: a
	// restart may repeat the events after the last checkpoint).
	Events string `yaml:"events"`
}

// Console is output for a person watching `auditwatch run` in a terminal.
type Console struct {
	// Findings prints one readable line per finding on stdout.
	Findings bool `yaml:"findings"`
	// Progress prints a progress line (events read, rejected, findings) on
	// stderr at this interval; zero disables it.
	Progress duration.Duration `yaml:"progress"`
}

// HTTP serves /metrics, /healthz and /readyz.
type HTTP struct {
	// Listen is host:port; empty disables the server.
	Listen string `yaml:"listen"`
}

// Logging configures slog.
type Logging struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // json, text
}

// Load reads, strictly decodes, defaults and validates the root of the
// file at path; the sections held as yaml.Node are not decoded. Commands
// load their config through internal/configcheck.Load, which checks the
// root and every section and reports each problem as file:line: path.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(bytes.NewReader(b), path)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Parse strictly decodes r (named name in errors), fills defaults and validates.
func Parse(r io.Reader, name string) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config %s: %w", name, err)
	}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w: %w", name, ErrInvalid, err)
	}
	return &c, nil
}

// SetDefaults fills every unset field. It is the one place defaults live.
func (c *Config) SetDefaults() {
	if c.State.Dir == "" {
		c.State.Dir = "auditwatch-state"
	}
	for i := range c.Sources {
		s := &c.Sources[i]
		if s.Format == "" {
			s.Format = "auto"
		}
		if s.Dir != nil {
			s.Dir.SetDefaults()
		}
		if s.FileTail != nil {
			s.FileTail.SetDefaults()
		}
		if s.Socket != nil {
			if s.Socket.SpoolDir == "" && c.State.Dir != "" {
				s.Socket.SpoolDir = filepath.Join(c.State.Dir, "spool", s.Name)
			}
			s.Socket.SetDefaults()
		}
		if s.S3SQS != nil {
			s.S3SQS.SetDefaults()
		}
		if s.Lookup != nil {
			s.Lookup.SetDefaults()
		}
	}
	c.Stream.SetDefaults()
	if c.State.CheckpointInterval == 0 {
		c.State.CheckpointInterval = duration.Duration(3 * time.Second)
	}
	if c.State.CheckpointEvents == 0 {
		c.State.CheckpointEvents = 20000
	}
	if c.State.IdleDrain == 0 {
		c.State.IdleDrain = duration.Duration(5 * time.Second)
	}
	if c.Logging.Level == "" {
		c.Logging.Level = "info"
	}
	if c.Logging.Format == "" {
		c.Logging.Format = "json"
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = duration.Duration(DefaultShutdownTimeout)
	}
}

// DefaultShutdownTimeout is shutdown_timeout's default, also the deadline
// of the one-shot commands that read no config.
const DefaultShutdownTimeout = 15 * time.Second

// Validate reports every bad field, each prefixed with its path.
func (c *Config) Validate() error {
	var errs []error
	seen := map[string]int{}
	for i, s := range c.Sources {
		p := fmt.Sprintf("sources[%d]", i)
		if j, dup := seen[s.Name]; dup && s.Name != "" {
			errs = append(errs, fmt.Errorf("%s.name: %q already names sources[%d]", p, s.Name, j))
		}
		seen[s.Name] = i
		if err := s.Validate(); err != nil {
			errs = append(errs, Prefix(p, err))
		}
	}
	if err := c.Stream.Validate(); err != nil {
		errs = append(errs, Prefix("stream", err))
	}
	if c.State.CheckpointInterval <= 0 {
		errs = append(errs, errors.New("state.checkpoint_interval: must be positive"))
	}
	if c.State.CheckpointEvents <= 0 {
		errs = append(errs, errors.New("state.checkpoint_events: must be positive"))
	}
	if c.State.IdleDrain < 0 {
		errs = append(errs, errors.New("state.idle_drain: must not be negative"))
	}
	if c.HTTP.Listen != "" {
		if _, _, err := net.SplitHostPort(c.HTTP.Listen); err != nil {
			errs = append(errs, fmt.Errorf("http.listen: want host:port, got %q", c.HTTP.Listen))
		}
	}
	if _, err := c.Logging.SlogLevel(); err != nil {
		errs = append(errs, fmt.Errorf("logging.level: %w", err))
	}
	if c.Logging.Format != "json" && c.Logging.Format != "text" {
		errs = append(errs, fmt.Errorf("logging.format: want json or text, got %q", c.Logging.Format))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, errors.New("shutdown_timeout: must be positive"))
	}
	if c.Console.Progress < 0 {
		errs = append(errs, errors.New("console.progress: must not be negative"))
	}
	return errors.Join(errs...)
}

// Validate reports every bad field of one source.
func (s Source) Validate() error {
	var errs []error
	if s.Name == "" {
		errs = append(errs, errors.New("name: required"))
	} else if strings.ContainsAny(s.Name, "/\x00") {
		errs = append(errs, fmt.Errorf("name: must not contain '/' or NUL, got %q", s.Name))
	}
	switch s.Format {
	case "auto", "cloudtrail", "vault", "jsonl":
	default:
		errs = append(errs, fmt.Errorf("format: want auto, cloudtrail, vault or jsonl, got %q", s.Format))
	}
	type section struct {
		name string
		set  bool
		v    interface{ Validate() error }
	}
	secs := []section{
		{SourceDir, s.Dir != nil, s.Dir},
		{SourceFileTail, s.FileTail != nil, s.FileTail},
		{SourceSocket, s.Socket != nil, s.Socket},
		{SourceS3SQS, s.S3SQS != nil, s.S3SQS},
		{SourceLookup, s.Lookup != nil, s.Lookup},
	}
	known := false
	for _, sec := range secs {
		if sec.name == s.Type {
			known = true
			if !sec.set {
				errs = append(errs, fmt.Errorf("%s: section required for type %s", sec.name, s.Type))
				continue
			}
			if err := sec.v.Validate(); err != nil {
				errs = append(errs, Prefix(sec.name, err))
			}
		} else if sec.set {
			errs = append(errs, fmt.Errorf("%s: section not allowed for type %q", sec.name, s.Type))
		}
	}
	if !known {
		errs = append(errs, fmt.Errorf("type: want dir, filetail, socket, s3sqs or lookup, got %q", s.Type))
	}
	return errors.Join(errs...)
}

// SlogLevel parses Level.
func (l Logging) SlogLevel() (slog.Level, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(l.Level)); err != nil {
		return 0, fmt.Errorf("want debug, info, warn or error, got %q", l.Level)
	}
	return lv, nil
}

// Logger builds the process logger writing to w. Every line goes through
// internal/redact: the pipeline's own secrets never reach the log.
func (l Logging) Logger(w io.Writer) *slog.Logger {
	lv, _ := l.SlogLevel()
	opts := &slog.HandlerOptions{Level: lv}
	if l.Format == "text" {
		return slog.New(redact.Handler(slog.NewTextHandler(w, opts)))
	}
	return slog.New(redact.Handler(slog.NewJSONHandler(w, opts)))
}

// DecodeSection strictly decodes a section held as a yaml.Node into v.
// An absent section leaves v untouched.
func DecodeSection(n yaml.Node, name string, v any) error {
	if n.Kind == 0 {
		return nil
	}
	b, err := yaml.Marshal(&n)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// Prefix puts path in front of every error joined in err.
func Prefix(path string, err error) error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var errs []error
		for _, e := range j.Unwrap() {
			errs = append(errs, Prefix(path, e))
		}
		return errors.Join(errs...)
	}
	return fmt.Errorf("%s.%w", path, err)
}

// KeepRawRecords reports raw_records (default true).
func (c *Config) KeepRawRecords() bool { return c.RawRecords == nil || *c.RawRecords }
