package lookup

import (
	"errors"
	"fmt"
	"time"

	"auditwatch/config/duration"
	"auditwatch/internal/awscfg"
)

// Window is how far back CloudTrail LookupEvents can see.
const Window = 90 * 24 * time.Hour

// MaxRate is CloudTrail's LookupEvents limit per account and region.
const MaxRate = 2.0

// Config is a LookupEvents poller's section of the config.
type Config struct {
	AWS awscfg.Config `yaml:"aws"`
	// Account labels the account polled (metrics and the checkpoint key).
	Account string `yaml:"account"`
	// Rate is requests per second, at most 2 (CloudTrail's limit).
	Rate float64 `yaml:"rate"`
	// PollInterval is the pause between polls once caught up.
	PollInterval duration.Duration `yaml:"poll_interval"`
	// Lookback is where a first run starts, at most 90 days back.
	Lookback duration.Duration `yaml:"lookback"`
	// Delay holds back the newest events: CloudTrail delivers events up to
	// about 15 minutes late, so a poll reads up to now-Delay.
	Delay duration.Duration `yaml:"delay"`
	// EventSource restricts the lookup to one service's events (e.g.
	// secretsmanager.amazonaws.com); empty reads all management events.
	EventSource string `yaml:"event_source"`
	// BatchSize caps events per batch.
	BatchSize int `yaml:"batch_size"`
}

// SetDefaults fills unset fields.
func (c *Config) SetDefaults() {
	if c.Rate == 0 {
		c.Rate = MaxRate
	}
	if c.PollInterval == 0 {
		c.PollInterval = duration.Duration(time.Minute)
	}
	if c.Lookback == 0 {
		c.Lookback = duration.Duration(24 * time.Hour)
	}
	if c.Delay == 0 {
		c.Delay = duration.Duration(15 * time.Minute)
	}
	if c.BatchSize == 0 {
		c.BatchSize = 512
	}
}

// Validate reports every bad field.
func (c Config) Validate() error {
	var errs []error
	if err := c.AWS.Validate(); err != nil {
		errs = append(errs, prefix("aws", err))
	}
	if c.Rate <= 0 || c.Rate > MaxRate {
		errs = append(errs, fmt.Errorf("rate: must be within (0, %g] requests/s", MaxRate))
	}
	if c.PollInterval <= 0 {
		errs = append(errs, errors.New("poll_interval: must be positive"))
	}
	if c.Lookback.D() <= 0 || c.Lookback.D() > Window {
		errs = append(errs, errors.New("lookback: must be within (0, 90 days]"))
	}
	if c.Delay < 0 {
		errs = append(errs, errors.New("delay: must not be negative"))
	}
	if c.BatchSize <= 0 {
		errs = append(errs, errors.New("batch_size: must be positive"))
	}
	return errors.Join(errs...)
}

func prefix(p string, err error) error {
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			errs = append(errs, fmt.Errorf("%s.%w", p, e))
		}
		return errors.Join(errs...)
	}
	return fmt.Errorf("%s.%w", p, err)
}
