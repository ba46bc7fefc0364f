package detect

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"auditwatch/config/duration"
	"auditwatch/schema"

	"go.yaml.in/yaml/v3"
)

// Duration is the configuration's one duration form (Go syntax, or whole
// days: "90s", "15m", "36h", "7d"); see package config/duration.
type Duration = duration.Duration

// ByteSize is a size in bytes that YAML writes as "512MiB", "1GiB",
// "64MB" or a plain number of bytes.
type ByteSize int64

// UnmarshalYAML accepts a number of bytes or a number with a unit (KiB,
// MiB, GiB, KB, MB, GB).
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: size: %w", n.Line, err)
	}
	v, err := ParseByteSize(s)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*b = ByteSize(v)
	return nil
}

// MarshalYAML writes the size in bytes.
func (b ByteSize) MarshalYAML() (any, error) { return int64(b), nil }

// ParseByteSize parses "512MiB", "1GiB", "64MB" or a number of bytes.
func ParseByteSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}

// Config is the `detectors:` section of the auditwatch configuration.
// Defaults live in SetDefaults; zero values are filled there only.
type Config struct {
	// AllowedLateness is the lateness of a source not named in Lateness:
	// how far behind its source's watermark (the newest event time seen
	// from that source) an event may arrive and still be on time. Every
	// event is decided when it arrives; lateness only bounds how long
	// window state is kept for late events, and an event later than it is
	// still processed and its findings are marked late.
	AllowedLateness Duration `yaml:"allowed_lateness"`
	// Lateness per event source (schema.Event.Source): CloudTrail delivers
	// up to ~15 minutes late, a Vault file tail within milliseconds.
	Lateness map[string]Duration `yaml:"lateness"`
	// MaxAhead: an event dated more than this after the wall clock (a
	// clock jump, a forged time) is processed and flagged
	// (time_skew=ahead) but never moves its source's watermark.
	MaxAhead Duration `yaml:"max_ahead"`
	// MaxBehind: an event more than this behind its source's watermark is
	// processed and flagged (late, time_skew=behind).
	MaxBehind Duration `yaml:"max_behind"`
	// MemoryBudget bounds the bytes of detector state held in memory (all
	// tables and their unsaved spill); beyond it the least valuable
	// entries are evicted to the store. Accepts 512MiB, 1GiB or bytes.
	MemoryBudget ByteSize `yaml:"memory_budget"`
	// MaxBuffered is accepted for older configurations and unused: there
	// is no reorder buffer, events are decided on arrival.
	MaxBuffered int `yaml:"max_buffered"`
	// Now is the wall clock for max_ahead (tests set it); nil: time.Now.
	Now func() time.Time `yaml:"-"`
	// MaxPrincipals bounds the in-memory principal table (first-seen times).
	MaxPrincipals int `yaml:"max_principals"`
	// MaxSpill bounds evicted-but-unsaved entries kept until the next
	// checkpoint; beyond it the oldest are dropped (counted).
	MaxSpill int `yaml:"max_spill"`
	// LearnUntil: events before it are history: they build baselines and
	// raise nothing. A principal seen in the history counts as learned from
	// LearnUntil on. Usually set by `replay --learn-until`.
	LearnUntil time.Time `yaml:"learn_until"`
	// MaxEvidence bounds event ids carried by one finding.
	MaxEvidence int `yaml:"max_evidence"`

	UnexpectedIP      UnexpectedIPConfig      `yaml:"unexpected_ip"`
	FirstTimeAccess   FirstTimeAccessConfig   `yaml:"first_time_access"`
	AuthFailureSpike  AuthFailureSpikeConfig  `yaml:"auth_failure_spike"`
	PrivilegedUse     PrivilegedUseConfig     `yaml:"privileged_use"`
	AccessVolumeSpike AccessVolumeSpikeConfig `yaml:"access_volume_spike"`
	SecretEnumeration SecretEnumerationConfig `yaml:"secret_enumeration"`
	Incidents         IncidentsConfig         `yaml:"incidents"`
	NewLocation       NewLocationConfig       `yaml:"new_location"`
	Honeytoken        HoneytokenConfig        `yaml:"honeytoken"`
}

func boolp(b bool) *bool { return &b }

func on(b *bool) bool { return b == nil || *b }

// SetDefaults fills every unset field. It is the only place defaults live.
func (c *Config) SetDefaults() {
	if c.AllowedLateness == 0 {
		// CloudTrail delivers most events within 5 minutes, some in 15.
		c.AllowedLateness = Duration(15 * time.Minute)
	}
	if c.Lateness == nil {
		c.Lateness = map[string]Duration{
			schema.SourceCloudTrail: Duration(15 * time.Minute),
			schema.SourceVault:      Duration(5 * time.Second),
		}
	}
	if c.MaxAhead == 0 {
		c.MaxAhead = Duration(time.Hour)
	}
	if c.MaxBehind == 0 {
		c.MaxBehind = Duration(24 * time.Hour)
	}
	if c.MemoryBudget == 0 {
		c.MemoryBudget = 512 << 20
	}
	if c.MaxBuffered == 0 {
		c.MaxBuffered = 200_000
	}
	if c.MaxPrincipals == 0 {
		c.MaxPrincipals = 200_000
	}
	if c.MaxSpill == 0 {
		c.MaxSpill = 1_000_000
	}
	if c.MaxEvidence == 0 {
		c.MaxEvidence = 20
	}
	c.UnexpectedIP.defaults()
	c.FirstTimeAccess.defaults()
	c.AuthFailureSpike.defaults()
	c.PrivilegedUse.defaults()
	c.AccessVolumeSpike.defaults()
	c.SecretEnumeration.defaults()
	c.Incidents.defaults()
	c.NewLocation.defaults()
	c.Honeytoken.defaults()
}

// StateBudget is the bytes detector state (every table and its unsaved
// spill) may hold in memory: two fifths of MemoryBudget, the rest being
// the Go heap's own headroom (garbage between collections), stacks and
// the store's buffers. An engine alone holds all of it; engines of one
// process (one per stream partition) share it through a Pool.
func (c Config) StateBudget() int64 { return int64(c.MemoryBudget) * 2 / 5 }

// GoMemoryLimit is the soft limit for the Go runtime (debug.SetMemoryLimit)
// of a process running one engine: 70% of MemoryBudget, so the collector
// works harder before the process passes the budget (the rest is for the
// store's memory-mapped pages, stacks and the runtime itself).
func (c Config) GoMemoryLimit() int64 { return int64(c.MemoryBudget) * 70 / 100 }

// Validate reports every bad field, each named by its YAML path, and
// prepares parsed forms (CIDRs). Call after SetDefaults.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("detectors.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.AllowedLateness < 0 {
		bad("allowed_lateness", "must not be negative")
	}
	for src, d := range c.Lateness {
		if d < 0 {
			bad("lateness."+src, "must not be negative")
		}
	}
	if c.MaxAhead < 0 {
		bad("max_ahead", "must not be negative")
	}
	if c.MaxBehind < 0 {
		bad("max_behind", "must not be negative")
	}
	if c.MemoryBudget < 1<<20 {
		bad("memory_budget", "must be at least 1MiB, got %d bytes", int64(c.MemoryBudget))
	}
	for _, x := range []struct {
		name string
		v    int
		min  int
	}{
		{"max_buffered", c.MaxBuffered, 1}, {"max_principals", c.MaxPrincipals, 16},
		{"max_spill", c.MaxSpill, 1}, {"max_evidence", c.MaxEvidence, 1},
	} {
		if x.v < x.min {
			bad(x.name, "must be at least %d, got %d", x.min, x.v)
		}
	}
	c.UnexpectedIP.validate(bad)
	c.FirstTimeAccess.validate(bad)
	c.AuthFailureSpike.validate(bad)
	c.PrivilegedUse.validate(bad)
	c.AccessVolumeSpike.validate(bad)
	c.SecretEnumeration.validate(bad)
	c.Incidents.validate(bad)
	c.NewLocation.validate(bad)
	c.Honeytoken.validate(bad)
	return errors.Join(errs...)
}

// DecodeConfig strictly decodes the `detectors:` section of the root
// configuration (an unknown key is an error naming its line), fills the
// defaults and validates. A nil or empty node gives the defaults.
func DecodeConfig(n *yaml.Node) (Config, error) {
	var c Config
	if n != nil && n.Kind != 0 {
		// yaml.Node.Decode cannot reject unknown keys: re-encode the node
		// and decode it strictly.
		b, err := yaml.Marshal(n)
		if err != nil {
			return c, fmt.Errorf("detectors: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
			return c, fmt.Errorf("detectors: %w", err)
		}
	}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		return c, err
	}
	return c, nil
}

// atLeast reports field when v < lo.
func atLeast(bad func(field, format string, args ...any), field string, v, lo int) {
	if v < lo {
		bad(field, "must be at least %d, got %d", lo, v)
	}
}

// nonNegative reports field when d < 0.
func nonNegative(bad func(field, format string, args ...any), field string, d Duration) {
	if d < 0 {
		bad(field, "must not be negative")
	}
}

// severityOK reports field when v is not a severity.
func severityOK(bad func(field, format string, args ...any), field string, v schema.Severity) {
	if _, err := schema.ParseSeverity(string(v)); err != nil {
		bad(field, "%v", err)
	}
}
