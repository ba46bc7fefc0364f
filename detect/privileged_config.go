package detect

import (
	"fmt"
	"path"
	"strings"
	"time"

	"auditwatch/schema"
)

// MaintenanceWindow silences privileged_use for matching principals.
type MaintenanceWindow struct {
	Start time.Time `yaml:"start"`
	End   time.Time `yaml:"end"`
	// Principals are globs; empty = everybody.
	Principals []string `yaml:"principals"`
	Reason     string   `yaml:"reason"`
}

// PrivilegedUseConfig configures privileged_use.
type PrivilegedUseConfig struct {
	Enabled   *bool           `yaml:"enabled"`
	Severity  schema.Severity `yaml:"severity"`
	VaultRoot *bool           `yaml:"vault_root"`
	AWSRoot   *bool           `yaml:"aws_root"`
	// TamperActions are "<action>" or "<action> <path glob>" (Vault) that
	// disable or change auditing.
	TamperActions []string `yaml:"tamper_actions"`
	// TamperSeverity applies to audit tampering.
	TamperSeverity schema.Severity     `yaml:"tamper_severity"`
	Cooldown       Duration            `yaml:"cooldown"`
	Maintenance    []MaintenanceWindow `yaml:"maintenance_windows"`
	MaxKeys        int                 `yaml:"max_keys"`
}

// DefaultTamperActions are the audit-tampering actions.
func DefaultTamperActions() []string {
	return []string{
		"cloudtrail:StopLogging", "cloudtrail:DeleteTrail", "cloudtrail:UpdateTrail",
		"cloudtrail:PutEventSelectors", "cloudtrail:PutInsightSelectors",
		"vault:delete sys/audit/*", "vault:update sys/audit/*",
	}
}

// defaults fills every unset field of the privileged_use section.
func (p *PrivilegedUseConfig) defaults() {
	if p.Enabled == nil {
		p.Enabled = boolp(true)
	}
	if p.Severity == "" {
		p.Severity = schema.SeverityHigh
	}
	if p.VaultRoot == nil {
		p.VaultRoot = boolp(true)
	}
	if p.AWSRoot == nil {
		p.AWSRoot = boolp(true)
	}
	if p.TamperActions == nil {
		p.TamperActions = DefaultTamperActions()
	}
	if p.TamperSeverity == "" {
		p.TamperSeverity = schema.SeverityCritical
	}
	if p.Cooldown == 0 {
		p.Cooldown = Duration(30 * time.Minute)
	}
	if p.MaxKeys == 0 {
		p.MaxKeys = 100_000
	}
}

// validate reports every bad field through bad (YAML path under detectors.).
func (p *PrivilegedUseConfig) validate(bad func(field, format string, args ...any)) {
	atLeast(bad, "privileged_use.max_keys", p.MaxKeys, 16)
	nonNegative(bad, "privileged_use.cooldown", p.Cooldown)
	severityOK(bad, "privileged_use.severity", p.Severity)
	severityOK(bad, "privileged_use.tamper_severity", p.TamperSeverity)
	for i, t := range p.TamperActions {
		fields := strings.Fields(t)
		if len(fields) == 0 || len(fields) > 2 || !strings.Contains(fields[0], ":") {
			bad(fmt.Sprintf("privileged_use.tamper_actions[%d]", i), "want \"service:Action\" or \"vault:op path-glob\", got %q", t)
		}
	}
	for i, w := range p.Maintenance {
		if w.Start.IsZero() || w.End.IsZero() {
			bad(fmt.Sprintf("privileged_use.maintenance_windows[%d]", i), "needs start and end")
		} else if !w.End.After(w.Start) {
			bad(fmt.Sprintf("privileged_use.maintenance_windows[%d].end", i), "must be after start")
		}
		for j, g := range w.Principals {
			if _, err := path.Match(g, ""); err != nil {
				bad(fmt.Sprintf("privileged_use.maintenance_windows[%d].principals[%d]", i, j), "bad pattern %q", g)
			}
		}
	}
}
