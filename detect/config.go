package detect

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"

	"auditwatch/config/duration"
	"auditwatch/schema"

	"go.yaml.in/yaml/v3"
)

// Duration is the configuration's one duration form (Go syntax, or whole
// days: "90s", "15m", "36h", "7d"); see package config/duration.
type Duration = duration.Duration

// Config is the `detectors:` section of the auditwatch configuration.
// Defaults lives in Defaults; zero values are filled there only.
type Config struct {
	// AllowedLateness: events up to this much older than the newest event
	// seen are reordered and handled as if in order; older ones are still
	// processed, immediately, and their findings marked late.
	AllowedLateness Duration `yaml:"allowed_lateness"`
	// MaxBuffered bounds the reorder buffer (events); over it the oldest is
	// released early (counted).
	MaxBuffered int `yaml:"max_buffered"`
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
}

func boolp(b bool) *bool { return &b }

func on(b *bool) bool { return b == nil || *b }

// Defaults fills every unset field. It is the only place defaults live.
func (c *Config) Defaults() {
	if c.AllowedLateness == 0 {
		// CloudTrail delivers most events within 5 minutes, some in 15.
		c.AllowedLateness = Duration(15 * time.Minute)
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
}

// Validate reports every bad field, each named by its YAML path, and
// prepares parsed forms (CIDRs). Call after Defaults.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("detectors.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.AllowedLateness < 0 {
		bad("allowed_lateness", "must not be negative")
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
	c.Defaults()
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
