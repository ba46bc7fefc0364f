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
	// Paths are globs over a Vault path inside its mount ("creds/*",
	// "data/*"); empty = any. A glob ending in "*" matches by prefix.
	Paths []string `yaml:"paths"`
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
	// RolloutGrace: a secret written (created, given a new value) less
	// than this long ago is being rolled out: its first readers are
	// learned, not alerted. 0 after defaults is not possible; a negative
	// value turns it off.
	RolloutGrace Duration `yaml:"rollout_grace"`
	// RolloutActions are the writes that start a rollout (Vault writes
	// count on kv mounts only).
	RolloutActions []string `yaml:"rollout_actions"`
	// MaxPairs bounds the in-memory pair table.
	MaxPairs int `yaml:"max_pairs"`
	// Scope: which events read secret material (default DefaultScope).
	Scope []ScopeRule `yaml:"scope"`
	// VaultMounts classifies Vault mounts by engine type (mount path ->
	// kv, aws, database, ...) for trails that do not log mount_type; the
	// logged mount_type wins. Default DefaultVaultMounts.
	VaultMounts map[string]string `yaml:"vault_mounts"`
}

// DefaultScope is the resource scope used when none is configured: reading
// secret material on any engine. CloudTrail: secret values, KMS decrypts
// and SSM parameters (writes, Describe* and List* are not reads of secret
// material). Vault: KV v1/v2 data reads (not metadata or subkeys), dynamic
// credentials (aws, database, ssh, pki, transit, totp and the other
// credential engines), cubbyhole reads, token creation and response
// wrapping. Lists are enumeration, not access (secret_enumeration).
func DefaultScope() []ScopeRule {
	vault := schema.SourceVault
	return []ScopeRule{
		{Source: schema.SourceCloudTrail, Actions: []string{
			"secretsmanager:GetSecretValue", "secretsmanager:BatchGetSecretValue",
			"kms:Decrypt", "ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath",
		}},
		{Source: vault, MountTypes: []string{"kv"}, Paths: []string{"metadata/*", "subkeys/*", "delete/*", "undelete/*", "destroy/*", "config", "config/*"}, Exclude: true},
		{Source: vault, Actions: []string{"vault:read"}, MountTypes: []string{"kv", "cubbyhole"}},
		{Source: vault, Actions: []string{"vault:read", "vault:update", "vault:create"}, MountTypes: []string{"aws"}, Paths: []string{"creds/*", "sts/*", "static-creds/*"}},
		{Source: vault, Actions: []string{"vault:read"}, MountTypes: []string{"database"}, Paths: []string{"creds/*", "static-creds/*"}},
		{Source: vault, Actions: []string{"vault:update", "vault:create"}, MountTypes: []string{"ssh"}, Paths: []string{"creds/*", "sign/*", "issue/*"}},
		{Source: vault, Actions: []string{"vault:update", "vault:create"}, MountTypes: []string{"pki"}, Paths: []string{"issue/*", "sign/*", "sign-verbatim*"}},
		{Source: vault, Actions: []string{"vault:update", "vault:create"}, MountTypes: []string{"transit"}, Paths: []string{"decrypt/*", "datakey/*"}},
		{Source: vault, Actions: []string{"vault:read"}, MountTypes: []string{"transit"}, Paths: []string{"export/*"}},
		{Source: vault, Actions: []string{"vault:read"}, MountTypes: []string{"totp"}, Paths: []string{"code/*"}},
		{Source: vault, Actions: []string{"vault:read", "vault:update", "vault:create"},
			MountTypes: []string{"azure", "gcp", "consul", "nomad", "rabbitmq", "kubernetes", "ldap", "openldap", "terraform", "alicloud", "mongodbatlas", "gcpkms"},
			Paths:      []string{"creds/*", "static-cred/*", "static-creds/*", "token/*", "key/*", "roleset/*", "static-account/*", "decrypt/*"}},
		{Source: vault, Actions: []string{"vault:update", "vault:create"}, MountTypes: []string{"token"}, Paths: []string{"create", "create/*", "create-orphan"}},
		{Source: vault, Actions: []string{"vault:update", "vault:create"}, MountTypes: []string{"system"}, Paths: []string{"wrapping/unwrap", "wrapping/wrap", "wrapping/rewrap"}},
	}
}

// DefaultVaultMounts are the default mount paths of Vault's engines, used
// when a trail does not log mount_type.
func DefaultVaultMounts() map[string]string {
	return map[string]string{
		"secret/": "kv", "kv/": "kv", "aws/": "aws", "database/": "database", "ssh/": "ssh", "pki/": "pki",
		"transit/": "transit", "totp/": "totp", "cubbyhole/": "cubbyhole", "auth/token/": "token", "sys/": "system",
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
	if f.VaultMounts == nil {
		f.VaultMounts = DefaultVaultMounts()
	}
	if f.RolloutGrace == 0 {
		f.RolloutGrace = Duration(10 * time.Minute)
	}
	if f.RolloutActions == nil {
		f.RolloutActions = []string{"secretsmanager:CreateSecret", "secretsmanager:PutSecretValue", "secretsmanager:UpdateSecret",
			"secretsmanager:RotateSecret", "ssm:PutParameter", "vault:create", "vault:update"}
	}
}

// validate reports every bad field through bad (YAML path under detectors.).
func (f *FirstTimeAccessConfig) validate(bad func(field, format string, args ...any)) {
	atLeast(bad, "first_time_access.max_pairs", f.MaxPairs, 16)
	nonNegative(bad, "first_time_access.learning_period", f.LearningPeriod)
	nonNegative(bad, "first_time_access.forget_after", f.ForgetAfter)
	nonNegative(bad, "first_time_access.group_window", f.GroupWindow)
	for j, g := range f.RolloutActions {
		if _, err := path.Match(g, ""); err != nil {
			bad(fmt.Sprintf("first_time_access.rollout_actions[%d]", j), "bad pattern %q", g)
		}
	}
	severityOK(bad, "first_time_access.severity", f.Severity)
	for i, r := range f.Scope {
		if r.Source != "" && r.Source != schema.SourceCloudTrail && r.Source != schema.SourceVault {
			bad(fmt.Sprintf("first_time_access.scope[%d].source", i), "must be cloudtrail, vault or empty, got %q", r.Source)
		}
		if len(r.Actions) == 0 && len(r.Resources) == 0 && len(r.Paths) == 0 {
			bad(fmt.Sprintf("first_time_access.scope[%d]", i), "needs actions or resources")
		}
		for j, g := range r.Actions {
			if _, err := path.Match(g, ""); err != nil {
				bad(fmt.Sprintf("first_time_access.scope[%d].actions[%d]", i, j), "bad pattern %q", g)
			}
		}
		for j, g := range r.Paths {
			if _, err := path.Match(g, ""); err != nil {
				bad(fmt.Sprintf("first_time_access.scope[%d].paths[%d]", i, j), "bad pattern %q", g)
			}
		}
		for j, g := range r.Resources {
			if _, err := path.Match(g, ""); err != nil {
				bad(fmt.Sprintf("first_time_access.scope[%d].resources[%d]", i, j), "bad pattern %q", g)
			}
		}
	}
}
