package alert

import (
	"time"

	"auditwatch/schema"
)

// silenced returns the first unexpired silence matching f. Silenced
// findings are counted, never queued, never dead-lettered.
func (c *Config) silenced(f schema.Finding, now time.Time) (SilenceConfig, bool) {
	for _, s := range c.Silences {
		if now.Before(s.Until) && s.Match.matches(f) {
			return s, true
		}
	}
	return SilenceConfig{}, false
}

// Silenced reports whether a silence of the config mutes f at time at
// (a backtest asks at the finding's own time).
func (c *Config) Silenced(f schema.Finding, at time.Time) bool {
	_, ok := c.silenced(f, at)
	return ok
}
