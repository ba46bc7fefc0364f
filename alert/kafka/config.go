package kafka

import (
	"errors"
	"fmt"
	"net"
	"time"

	"auditwatch/config/duration"
)

// Config of one Kafka output.
type Config struct {
	Brokers []string `yaml:"brokers"`
	// Topic receives findings (keyed by dedupe key, so the updates of one
	// incident stay ordered in one partition).
	Topic string `yaml:"topic"`
	// EventsTopic receives raw events (keyed by event id); required for
	// the output to be an event output.
	EventsTopic  string            `yaml:"events_topic"`
	WriteTimeout duration.Duration `yaml:"write_timeout"`
	BatchTimeout duration.Duration `yaml:"batch_timeout"`
}

// SetDefaults fills zero fields.
func (c *Config) SetDefaults() {
	if c.WriteTimeout == 0 {
		c.WriteTimeout = duration.Duration(10 * time.Second)
	}
	if c.BatchTimeout == 0 {
		c.BatchTimeout = duration.Duration(10 * time.Millisecond)
	}
}

// Validate reports every bad field, each prefixed by path.
func (c Config) Validate(path string) error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, fmt.Errorf("%s.brokers: required", path))
	}
	for i, b := range c.Brokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			errs = append(errs, fmt.Errorf("%s.brokers[%d]: want host:port, got %q", path, i, b))
		}
	}
	if c.Topic == "" {
		errs = append(errs, fmt.Errorf("%s.topic: required", path))
	}
	if c.WriteTimeout <= 0 {
		errs = append(errs, fmt.Errorf("%s.write_timeout: must be positive, got %s", path, c.WriteTimeout))
	}
	if c.BatchTimeout <= 0 {
		errs = append(errs, fmt.Errorf("%s.batch_timeout: must be positive, got %s", path, c.BatchTimeout))
	}
	return errors.Join(errs...)
}
