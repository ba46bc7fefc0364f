package detect

import (
	"fmt"
	"path"
	"time"

	"auditwatch/schema"
)

// ScopeRule selects events whose resource counts as a secret access.
type ScopeRule struct {
	// Source: "cloudtrail", "vault" or empty for both.
	Source string `yaml:"source"`
	// Actions are globs over Event.Action ("secretsmanager:Get*", "vault:read").
	Actions []string `yaml:"actions"`
	// MountTypes restricts Vault rules to mounts of these types (kv).
	MountTypes []string `yaml:"mount_types"`
	// Resources are globs over the canonical resource; empty = any.
	Resources []string `yaml:"resources"`
	// Exclude turns the rule into an exclusion (checked first).
	Exclude bool `yaml:"exclude"`
}

// FirstTimeAccessConfig configures first_time_access.
type FirstTimeAccessConfig struct {
	Enabled        *bool           `yaml:"enabled"`
	Severity       schema.Severity `yaml:"severity"`
	LearningPeriod Duration        `yaml:"learning_period"`
	// ForgetAfter: a pair unseen this long counts as new again.
	ForgetAfter Duration `yaml:"forget_after"`
	// GroupWindow: new pairs of one principal within it update one finding.
	GroupWindow Duration `yaml:"group_window"`
	// IncludeDenied counts denied attempts on a new resource.
	IncludeDenied *bool `yaml:"include_denied"`
	// MaxPairs bounds the in-memory pair table.
	MaxPairs int         `yaml:"max_pairs"`
	Scope    []ScopeRule `yaml:"scope"`
}

// DefaultScope is the resource scope used when none is configured: secret
// reads and writes, KMS decrypts, SSM parameter reads and Vault KV reads and
// lists. Describe*/List* on AWS are metadata and do not count.
func DefaultScope() []ScopeRule {
	return []ScopeRule{
		{Source: schema.SourceCloudTrail, Actions: []string{
			"secretsmanager:GetSecretValue", "secretsmanager:BatchGetSecretValue",
			"secretsmanager:PutSecretValue", "secretsmanager:UpdateSecret",
			"kms:Decrypt", "ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath",
		}},
		{Source: schema.SourceVault, Actions: []string{"vault:read", "vault:list"}, MountTypes: []string{"kv"}},
	}
}

// defaults fills every unset field of the first_time_access section.
func (f *FirstTimeAccessConfig) defaults() {
	if f.Enabled == nil {
		f.Enabled = boolp(true)
	}
	if f.Severity == "" {
		f.Severity = schema.SeverityMedium
	}
	if f.LearningPeriod == 0 {
		f.LearningPeriod = Duration(7 * 24 * time.Hour)
	}
	if f.ForgetAfter == 0 {
		f.ForgetAfter = Duration(90 * 24 * time.Hour)
	}
	if f.GroupWindow == 0 {
		f.GroupWindow = Duration(10 * time.Minute)
	}
	if f.IncludeDenied == nil {
		f.IncludeDenied = boolp(true)
	}
	if f.MaxPairs == 0 {
		f.MaxPairs = 2_000_000
	}
	if f.Scope == nil {
		f.Scope = DefaultScope()
	}
}

// validate reports every bad field through bad (YAML path under detectors.).
func (f *FirstTimeAccessConfig) validate(bad func(field, format string, args ...any)) {
	atLeast(bad, "first_time_access.max_pairs", f.MaxPairs, 16)
	nonNegative(bad, "first_time_access.learning_period", f.LearningPeriod)
	nonNegative(bad, "first_time_access.forget_after", f.ForgetAfter)
	nonNegative(bad, "first_time_access.group_window", f.GroupWindow)
	severityOK(bad, "first_time_access.severity", f.Severity)
	for i, r := range f.Scope {
		if r.Source != "" && r.Source != schema.SourceCloudTrail && r.Source != schema.SourceVault {
			bad(fmt.Sprintf("first_time_access.scope[%d].source", i), "must be cloudtrail, vault or empty, got %q", r.Source)
		}
		if len(r.Actions) == 0 && len(r.Resources) == 0 {
			bad(fmt.Sprintf("first_time_access.scope[%d]", i), "needs actions or resources")
		}
		for j, g := range r.Actions {
			if _, err := path.Match(g, ""); err != nil {
				bad(fmt.Sprintf("first_time_access.scope[%d].actions[%d]", i, j), "bad pattern %q", g)
			}
		}
		for j, g := range r.Resources {
			if _, err := path.Match(g, ""); err != nil {
				bad(fmt.Sprintf("first_time_access.scope[%d].resources[%d]", i, j), "bad pattern %q", g)
			}
		}
	}
}
