package filetail

import (
	"errors"
	"time"

	"auditwatch/config/duration"
)

// Config is a file-tail source's section of the config.
type Config struct {
	// Path is the audit device's file (Vault's file_path).
	Path string `yaml:"path"`
	// PollInterval is how often the file is checked for growth, rotation
	// and truncation.
	PollInterval duration.Duration `yaml:"poll_interval"`
	// IdleFlush is how long the file must stay idle before request
	// entries still waiting for their response are emitted alone.
	IdleFlush duration.Duration `yaml:"idle_flush"`
	// FingerprintBytes is how many leading bytes identify a file together
	// with its inode.
	FingerprintBytes int `yaml:"fingerprint_bytes"`
	// StartAt is where a file without a checkpoint starts: "beginning" or "end".
	StartAt string `yaml:"start_at"`
	// BatchSize caps events per batch.
	BatchSize int `yaml:"batch_size"`
}

// SetDefaults fills unset fields.
func (c *Config) SetDefaults() {
	if c.PollInterval == 0 {
		c.PollInterval = duration.Duration(250 * time.Millisecond)
	}
	if c.IdleFlush == 0 {
		c.IdleFlush = duration.Duration(2 * time.Second)
	}
	if c.FingerprintBytes == 0 {
		c.FingerprintBytes = 256
	}
	if c.StartAt == "" {
		c.StartAt = "beginning"
	}
	if c.BatchSize == 0 {
		c.BatchSize = 512
	}
}

// Validate reports every bad field.
func (c Config) Validate() error {
	var errs []error
	if c.Path == "" {
		errs = append(errs, errors.New("path: required"))
	}
	if c.PollInterval <= 0 {
		errs = append(errs, errors.New("poll_interval: must be positive"))
	}
	if c.IdleFlush < 0 {
		errs = append(errs, errors.New("idle_flush: must not be negative"))
	}
	if c.FingerprintBytes < 16 || c.FingerprintBytes > 4096 {
		errs = append(errs, errors.New("fingerprint_bytes: must be within 16..4096"))
	}
	if c.StartAt != "beginning" && c.StartAt != "end" {
		errs = append(errs, errors.New(`start_at: must be "beginning" or "end"`))
	}
	if c.BatchSize <= 0 {
		errs = append(errs, errors.New("batch_size: must be positive"))
	}
	return errors.Join(errs...)
}
