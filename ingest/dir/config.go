package dir

import (
	"errors"
	"time"

	"auditwatch/config/duration"
)

// Config is a dir source's section of the config.
type Config struct {
	// Path is the folder watched for dropped files (recursive).
	Path string `yaml:"path"`
	// Pattern is a filepath.Match pattern for file names; empty takes every
	// file except hidden ones.
	Pattern string `yaml:"pattern"`
	// PollInterval is how often the folder is listed for new files.
	PollInterval duration.Duration `yaml:"poll_interval"`
	// SettleTime is how long a file's size and mtime must stay unchanged
	// before it is read, so a file still being copied in is not read half.
	SettleTime duration.Duration `yaml:"settle_time"`
	// Once reads the files present at start, then stops (backfill).
	Once bool `yaml:"once"`
	// Parallel bounds how many files are read at once (default 4; 1
	// reads strictly one after another). Files are read one after another
	// in name order, except that a file that turns out bad (unreadable, or
	// 1,000 rejected records outnumbering its good ones) lets the next
	// start beside it, so a slow bad file (a million invalid records) does
	// not hold the good files behind it. A file starts only within
	// Parallel positions of the oldest file still being read.
	Parallel int `yaml:"parallel"`
}

// SetDefaults fills unset fields.
func (c *Config) SetDefaults() {
	if c.PollInterval == 0 {
		c.PollInterval = duration.Duration(2 * time.Second)
	}
	if c.SettleTime == 0 {
		c.SettleTime = duration.Duration(time.Second)
	}
	if c.Parallel == 0 {
		c.Parallel = 4
	}
}

// Validate reports every bad field.
func (c Config) Validate() error {
	var errs []error
	if c.Path == "" {
		errs = append(errs, errors.New("path: required"))
	}
	if c.PollInterval < 0 {
		errs = append(errs, errors.New("poll_interval: must not be negative"))
	}
	if c.SettleTime < 0 {
		errs = append(errs, errors.New("settle_time: must not be negative"))
	}
	if c.Parallel < 0 || c.Parallel > 64 {
		errs = append(errs, errors.New("parallel: must be between 1 and 64"))
	}
	return errors.Join(errs...)
}
