package detect

import (
	"fmt"
	"path"
	"time"

	"auditwatch/schema"
)

// SecretEnumerationConfig configures secret_enumeration: one principal
// listing many distinct paths or reading many secrets' metadata in a short
// window (reconnaissance; lists and metadata reads are not access).
type SecretEnumerationConfig struct {
	Enabled  *bool           `yaml:"enabled"`
	Severity schema.Severity `yaml:"severity"`
	Window   Duration        `yaml:"window"`
	// Threshold: distinct listed paths or metadata reads in Window that alert.
	Threshold int      `yaml:"threshold"`
	Cooldown  Duration `yaml:"cooldown"`
	// Actions: CloudTrail metadata reads that count (Vault lists and KV
	// metadata reads always count).
	Actions       []string `yaml:"actions"`
	MaxTracked    int      `yaml:"max_tracked"`
	MaxPrincipals int      `yaml:"max_principals"`
}

func (c *SecretEnumerationConfig) defaults() {
	if c.Enabled == nil {
		c.Enabled = boolp(true)
	}
	if c.Severity == "" {
		c.Severity = schema.SeverityLow
	}
	if c.Window == 0 {
		c.Window = Duration(10 * time.Minute)
	}
	if c.Threshold == 0 {
		c.Threshold = 40
	}
	if c.Cooldown == 0 {
		c.Cooldown = Duration(30 * time.Minute)
	}
	if c.Actions == nil {
		c.Actions = []string{"secretsmanager:DescribeSecret", "secretsmanager:ListSecretVersionIds", "secretsmanager:GetResourcePolicy", "ssm:DescribeParameters"}
	}
	if c.MaxTracked == 0 {
		c.MaxTracked = 512
	}
	if c.MaxPrincipals == 0 {
		c.MaxPrincipals = 200_000
	}
}

func (c *SecretEnumerationConfig) validate(bad func(field, format string, args ...any)) {
	severityOK(bad, "secret_enumeration.severity", c.Severity)
	nonNegative(bad, "secret_enumeration.window", c.Window)
	nonNegative(bad, "secret_enumeration.cooldown", c.Cooldown)
	atLeast(bad, "secret_enumeration.threshold", c.Threshold, 2)
	atLeast(bad, "secret_enumeration.max_tracked", c.MaxTracked, c.Threshold)
	atLeast(bad, "secret_enumeration.max_principals", c.MaxPrincipals, 16)
	if c.Window <= 0 {
		bad("secret_enumeration.window", "must be positive")
	}
	for i, g := range c.Actions {
		if _, err := path.Match(g, ""); err != nil {
			bad(fmt.Sprintf("secret_enumeration.actions[%d]", i), "bad pattern %q", g)
		}
	}
}
