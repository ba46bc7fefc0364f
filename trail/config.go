package trail

import (
	"errors"
	"fmt"
	"time"

	"go.yaml.in/yaml/v3"

	"auditwatch/config"
	"auditwatch/config/duration"

	"auditwatch/internal/awscfg"
)

// Config is the `trail:` section: CloudTrail digest validation of what the
// S3+SQS and directory sources read.
type Config struct {
	// Enabled turns live validation on (default true when the section is
	// present and a source reads CloudTrail objects).
	Enabled *bool `yaml:"enabled"`
	// AWS is where ListPublicKeys is called (default: the aws block of the
	// first S3+SQS source).
	AWS awscfg.Config `yaml:"aws"`
	// PublicKeysFile holds keys offline (PEM or list-public-keys JSON)
	// instead of calling ListPublicKeys.
	PublicKeysFile string `yaml:"public_keys_file"`
	// ListedGrace is how long a log file a digest lists may stay unread,
	// and a digest named as previous may stay unseen, before it is missing.
	ListedGrace duration.Duration `yaml:"listed_grace"`
	// UnlistedAfter is how long a log file read may stay in no digest.
	UnlistedAfter duration.Duration `yaml:"unlisted_after"`
	// GapAfter is the longest time without a digest while logs arrive.
	GapAfter duration.Duration `yaml:"gap_after"`
	// DeliverySlack is added to GapAfter for the digest's own delivery.
	DeliverySlack duration.Duration `yaml:"delivery_slack"`
	// ExplainWindow is how far before a starting digest a StartLogging,
	// CreateTrail or UpdateTrail call explains it.
	ExplainWindow duration.Duration `yaml:"explain_window"`
	// CheckInterval is how often deadlines are checked live.
	CheckInterval duration.Duration `yaml:"check_interval"`
	// MaxTracked bounds the log files, listings and digests held.
	MaxTracked int `yaml:"max_tracked"`
}

// SetDefaults fills unset fields.
func (c *Config) SetDefaults() {
	if c.Enabled == nil {
		t := true
		c.Enabled = &t
	}
	if c.ListedGrace == 0 {
		c.ListedGrace = duration.Duration(30 * time.Minute)
	}
	if c.UnlistedAfter == 0 {
		c.UnlistedAfter = duration.Duration(2 * time.Hour)
	}
	if c.GapAfter == 0 {
		c.GapAfter = duration.Duration(2 * time.Hour)
	}
	if c.DeliverySlack == 0 {
		c.DeliverySlack = duration.Duration(30 * time.Minute)
	}
	if c.ExplainWindow == 0 {
		c.ExplainWindow = duration.Duration(time.Hour)
	}
	if c.CheckInterval == 0 {
		c.CheckInterval = duration.Duration(time.Minute)
	}
	if c.MaxTracked == 0 {
		c.MaxTracked = 500_000
	}
}

// Validate reports every bad field.
func (c Config) Validate() error {
	var errs []error
	for _, d := range []struct {
		name string
		v    duration.Duration
	}{{"listed_grace", c.ListedGrace}, {"unlisted_after", c.UnlistedAfter}, {"gap_after", c.GapAfter},
		{"delivery_slack", c.DeliverySlack}, {"explain_window", c.ExplainWindow}, {"check_interval", c.CheckInterval}} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s: must be positive", d.name))
		}
	}
	if c.MaxTracked <= 0 {
		errs = append(errs, errors.New("max_tracked: must be positive"))
	}
	if c.AWS.Region != "" {
		if err := c.AWS.Validate(); err != nil {
			errs = append(errs, config.Prefix("aws", err))
		}
	}
	return errors.Join(errs...)
}

// DecodeConfig decodes, defaults and validates the `trail:` section (an
// empty node gives the defaults).
func DecodeConfig(n *yaml.Node) (Config, error) {
	var c Config
	if n != nil && n.Kind != 0 {
		if err := n.Decode(&c); err != nil {
			return c, fmt.Errorf("trail: %w", err)
		}
	}
	c.SetDefaults()
	return c, c.Validate()
}
