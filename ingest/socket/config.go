package socket

import (
	"errors"
	"net"
	"time"

	"auditwatch/config/duration"
)

// Config is a socket source's section of the config.
type Config struct {
	// Listen is the TCP address Vault's socket audit device connects to.
	Listen string `yaml:"listen"`
	// SpoolDir holds the on-disk spool between the listener and the parser.
	SpoolDir string `yaml:"spool_dir"`
	// SpoolMaxBytes bounds the spool; when full, new data is refused
	// (counted, logged, and reported as an error) rather than blocking Vault.
	SpoolMaxBytes int64 `yaml:"spool_max_bytes"`
	// SegmentBytes is the size at which a spool segment file is closed.
	SegmentBytes int64 `yaml:"segment_bytes"`
	// MaxConns caps concurrent connections.
	MaxConns int `yaml:"max_conns"`
	// IdleFlush is how long the spool must stay idle before request
	// entries still waiting for their response are emitted alone.
	IdleFlush duration.Duration `yaml:"idle_flush"`
	// BatchSize caps events per batch.
	BatchSize int `yaml:"batch_size"`
}

// SetDefaults fills unset fields.
func (c *Config) SetDefaults() {
	if c.SpoolMaxBytes == 0 {
		c.SpoolMaxBytes = 1 << 30
	}
	if c.SegmentBytes == 0 {
		c.SegmentBytes = 16 << 20
	}
	if c.MaxConns == 0 {
		c.MaxConns = 64
	}
	if c.IdleFlush == 0 {
		c.IdleFlush = duration.Duration(2 * time.Second)
	}
	if c.BatchSize == 0 {
		c.BatchSize = 512
	}
}

// Validate reports every bad field.
func (c Config) Validate() error {
	var errs []error
	if c.Listen == "" {
		errs = append(errs, errors.New("listen: required"))
	} else if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, errors.New("listen: want host:port: "+err.Error()))
	}
	if c.SpoolDir == "" {
		errs = append(errs, errors.New("spool_dir: required"))
	}
	if c.SpoolMaxBytes <= 0 {
		errs = append(errs, errors.New("spool_max_bytes: must be positive"))
	}
	if c.SegmentBytes <= 0 || c.SegmentBytes > c.SpoolMaxBytes {
		errs = append(errs, errors.New("segment_bytes: must be positive and at most spool_max_bytes"))
	}
	if c.MaxConns <= 0 {
		errs = append(errs, errors.New("max_conns: must be positive"))
	}
	if c.IdleFlush < 0 {
		errs = append(errs, errors.New("idle_flush: must not be negative"))
	}
	if c.BatchSize <= 0 {
		errs = append(errs, errors.New("batch_size: must be positive"))
	}
	return errors.Join(errs...)
}
