package detect

import "time"

// IncidentsConfig configures the correlation of findings into incidents
// (package incident; the detect section holds it because it runs with the
// detectors, on their partition, before findings are handed on).
type IncidentsConfig struct {
	// Enabled: findings carry an incident_id (default true).
	Enabled *bool `yaml:"enabled"`
	// Window: a finding joins an incident whose latest finding is at most
	// this much earlier (event time).
	Window Duration `yaml:"window"`
	// MaxFanout: distinct principals a shared address or secret may join
	// into one incident (a NAT address or a popular secret must not chain
	// unrelated activity).
	MaxFanout int `yaml:"max_fanout"`
	// MaxOpen bounds the open incidents per partition.
	MaxOpen int `yaml:"max_open"`
}

func (c *IncidentsConfig) defaults() {
	if c.Enabled == nil {
		c.Enabled = boolp(true)
	}
	if c.Window == 0 {
		c.Window = Duration(30 * time.Minute)
	}
	if c.MaxFanout == 0 {
		c.MaxFanout = 3
	}
	if c.MaxOpen == 0 {
		c.MaxOpen = 10_000
	}
}

func (c *IncidentsConfig) validate(bad func(field, format string, args ...any)) {
	nonNegative(bad, "incidents.window", c.Window)
	atLeast(bad, "incidents.max_fanout", c.MaxFanout, 1)
	atLeast(bad, "incidents.max_open", c.MaxOpen, 1)
}

// On reports whether correlation is enabled.
func (c *IncidentsConfig) On() bool { return on(c.Enabled) }
