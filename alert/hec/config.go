package hec

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"auditwatch/config/duration"
	"auditwatch/internal/secret"
)

// Config of one Splunk HTTP Event Collector output.
type Config struct {
	// URL is the collector's base URL (https://splunk.example:8088); the
	// output posts to /services/collector/event under it.
	URL   string        `yaml:"url"`
	Token secret.Secret `yaml:"token"`
	Index string        `yaml:"index"`
	// Source and SourceType default to "auditwatch" and
	// "auditwatch:finding" / "auditwatch:event".
	Source          string `yaml:"source"`
	SourceType      string `yaml:"sourcetype"`
	EventSourceType string `yaml:"event_sourcetype"`
	Host            string `yaml:"host"`
	// BatchSize and MaxBatchBytes bound one request of raw events.
	BatchSize     int `yaml:"batch_size"`
	MaxBatchBytes int `yaml:"max_batch_bytes"`
	// Ack turns on indexer acknowledgement: a request counts as delivered
	// only once /services/collector/ack reports its ackId indexed.
	Ack         bool              `yaml:"ack"`
	AckTimeout  duration.Duration `yaml:"ack_timeout"`
	AckInterval duration.Duration `yaml:"ack_interval"`
	// Channel is the X-Splunk-Request-Channel (a GUID); generated when empty.
	Channel string `yaml:"channel"`
	// CAFile verifies the collector's certificate (default: system roots).
	CAFile  string            `yaml:"ca_file"`
	Timeout duration.Duration `yaml:"timeout"`
}

// SetDefaults fills zero fields.
func (c *Config) SetDefaults() {
	if c.Source == "" {
		c.Source = "auditwatch"
	}
	if c.SourceType == "" {
		c.SourceType = "auditwatch:finding"
	}
	if c.EventSourceType == "" {
		c.EventSourceType = "auditwatch:event"
	}
	if c.BatchSize == 0 {
		c.BatchSize = 100
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = 1 << 20
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = duration.Duration(60 * time.Second)
	}
	if c.AckInterval == 0 {
		c.AckInterval = duration.Duration(time.Second)
	}
	if c.Timeout == 0 {
		c.Timeout = duration.Duration(30 * time.Second)
	}
}

// Validate reports every bad field, each prefixed by path.
func (c Config) Validate(path string) error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", path, field, fmt.Sprintf(format, args...)))
	}
	if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		bad("url", "must be an http(s) URL, got %q", c.URL)
	}
	if c.Token.IsZero() {
		bad("token", "required ({env: NAME} or {file: PATH})")
	} else if err := c.Token.Validate(); err != nil {
		bad("token", "%v", err)
	}
	if c.BatchSize < 1 || c.BatchSize > 10000 {
		bad("batch_size", "must be within 1..10000, got %d", c.BatchSize)
	}
	if c.MaxBatchBytes < 1024 {
		bad("max_batch_bytes", "must be at least 1024, got %d", c.MaxBatchBytes)
	}
	if c.AckTimeout <= 0 {
		bad("ack_timeout", "must be positive, got %s", c.AckTimeout)
	}
	if c.AckInterval <= 0 {
		bad("ack_interval", "must be positive, got %s", c.AckInterval)
	}
	if c.Timeout <= 0 {
		bad("timeout", "must be positive, got %s", c.Timeout)
	}
	return errors.Join(errs...)
}
