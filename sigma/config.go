package sigma

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"go.yaml.in/yaml/v3"

	"auditwatch/config/duration"
)

// Config is the root config's rules: section.
type Config struct {
	// Paths are rule files and folders (recursive), relative to the
	// working directory. Empty: no Sigma rules.
	Paths []string `yaml:"paths"`
	// Placeholders give the values of %name% placeholders (expand).
	Placeholders map[string][]string `yaml:"placeholders"`
	// WatchInterval is how often rule files are checked for changes
	// (a changed set is reloaded as on SIGHUP). Default 5s.
	WatchInterval duration.Duration `yaml:"watch_interval"`
	// MaxGroups bounds the open correlation groups per partition
	// (default 100000; the least recently seen is evicted and counted).
	MaxGroups int `yaml:"max_groups"`
	// Cooldown: repeated matches of one single-event rule by one
	// principal within it join the first one's finding, raised again
	// (same dedupe key, higher revision and count) each time the count
	// doubles. Default 30m.
	Cooldown duration.Duration `yaml:"cooldown"`
	// EveryMatch raises one finding per match instead (no cool-down).
	EveryMatch bool `yaml:"every_match"`
}

// RepeatCooldown is the cool-down in effect (0: a finding per match).
func (c Config) RepeatCooldown() time.Duration {
	if c.EveryMatch {
		return 0
	}
	return c.Cooldown.D()
}

// SetDefaults fills unset fields.
func (c *Config) SetDefaults() {
	if c.WatchInterval == 0 {
		c.WatchInterval = duration.Duration(5 * time.Second)
	}
	if c.MaxGroups == 0 {
		c.MaxGroups = 100000
	}
	if c.Cooldown == 0 {
		c.Cooldown = duration.Duration(30 * time.Minute)
	}
}

// Validate reports every problem, loading the rules: an invalid rule is a
// config error naming its file and line.
func (c Config) Validate() error {
	var errs []error
	if c.WatchInterval < 0 {
		errs = append(errs, fmt.Errorf("watch_interval: must not be negative"))
	}
	if c.MaxGroups < 0 {
		errs = append(errs, fmt.Errorf("max_groups: must not be negative"))
	}
	if c.Cooldown < 0 {
		errs = append(errs, fmt.Errorf("cooldown: must not be negative"))
	}
	for i, p := range c.Paths {
		if _, err := os.Stat(p); err != nil {
			errs = append(errs, fmt.Errorf("paths[%d]: %w", i, err))
		}
	}
	if len(errs) == 0 && len(c.Paths) > 0 {
		if _, err := Load(c.Paths, c.Options()); err != nil {
			var le *LoadError
			if errors.As(err, &le) {
				for _, p := range le.Problems {
					errs = append(errs, fmt.Errorf("paths: %s", p.Error()))
				}
			} else {
				errs = append(errs, fmt.Errorf("paths: %w", err))
			}
		}
	}
	return errors.Join(errs...)
}

// Options are the compile options the config gives.
func (c Config) Options() Options { return Options{Placeholders: c.Placeholders} }

// Enabled reports whether any rules are configured.
func (c Config) Enabled() bool { return len(c.Paths) > 0 }

// DecodeConfig strictly decodes the rules: section (nil or empty:
// defaults), fills defaults and validates it.
func DecodeConfig(n *yaml.Node) (Config, error) {
	var c Config
	if n != nil && n.Kind != 0 {
		b, err := yaml.Marshal(n)
		if err != nil {
			return c, fmt.Errorf("rules: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
			return c, fmt.Errorf("rules: %w", err)
		}
	}
	c.SetDefaults()
	return c, c.Validate()
}
