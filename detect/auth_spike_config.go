package detect

import (
	"fmt"
	"time"

	"auditwatch/schema"
)

// AuthFailureSpikeConfig configures auth_failure_spike.
type AuthFailureSpikeConfig struct {
	Enabled  *bool           `yaml:"enabled"`
	Severity schema.Severity `yaml:"severity"`
	// Keys: "principal", "ip" or both.
	Keys   []string `yaml:"keys"`
	Window Duration `yaml:"window"`
	// Threshold: failures in Window that always alert.
	Threshold int `yaml:"threshold"`
	// MinCount and Factor: alert when failures in Window >= MinCount and
	// > Factor x the key's baseline (median failures per window over its
	// past windows, the current one excluded) and > MADFactor median
	// absolute deviations above it. A key with no past failures has a
	// baseline of zero.
	MinCount  int     `yaml:"min_count"`
	Factor    float64 `yaml:"factor"`
	MADFactor float64 `yaml:"mad_factor"`
	// Cooldown: a burst ends after this long without failures.
	Cooldown Duration `yaml:"cooldown"`
	// FailureKinds that count (schema.Failure*); failed Auth events always count.
	FailureKinds []string `yaml:"failure_kinds"`
	MaxKeys      int      `yaml:"max_keys"`
}

// defaults fills every unset field of the auth_failure_spike section.
func (a *AuthFailureSpikeConfig) defaults() {
	if a.Enabled == nil {
		a.Enabled = boolp(true)
	}
	if a.Severity == "" {
		a.Severity = schema.SeverityHigh
	}
	if a.Keys == nil {
		a.Keys = []string{"principal", "ip"}
	}
	if a.Window == 0 {
		a.Window = Duration(time.Minute)
	}
	if a.Threshold == 0 {
		a.Threshold = 20
	}
	if a.MinCount == 0 {
		a.MinCount = 5
	}
	if a.Factor == 0 {
		a.Factor = 10
	}
	if a.MADFactor == 0 {
		a.MADFactor = 6
	}
	if a.Cooldown == 0 {
		a.Cooldown = Duration(10 * time.Minute)
	}
	if a.FailureKinds == nil {
		a.FailureKinds = []string{schema.FailureInvalidCredentials, schema.FailureInvalidToken,
			schema.FailurePermissionDenied, schema.FailureLockedOut}
	}
	if a.MaxKeys == 0 {
		a.MaxKeys = 500_000
	}
}

// validate reports every bad field through bad (YAML path under detectors.).
func (a *AuthFailureSpikeConfig) validate(bad func(field, format string, args ...any)) {
	atLeast(bad, "auth_failure_spike.threshold", a.Threshold, 1)
	atLeast(bad, "auth_failure_spike.min_count", a.MinCount, 1)
	atLeast(bad, "auth_failure_spike.max_keys", a.MaxKeys, 16)
	nonNegative(bad, "auth_failure_spike.window", a.Window)
	nonNegative(bad, "auth_failure_spike.cooldown", a.Cooldown)
	severityOK(bad, "auth_failure_spike.severity", a.Severity)
	if len(a.Keys) == 0 {
		bad("auth_failure_spike.keys", "must list principal, ip or both")
	}
	for i, k := range a.Keys {
		if k != "principal" && k != "ip" {
			bad(fmt.Sprintf("auth_failure_spike.keys[%d]", i), "must be principal or ip, got %q", k)
		}
	}
	if a.Window <= 0 {
		bad("auth_failure_spike.window", "must be positive")
	}
	if a.Factor < 1 {
		bad("auth_failure_spike.factor", "must be at least 1, got %g", a.Factor)
	}
	if a.MADFactor < 0 {
		bad("auth_failure_spike.mad_factor", "must not be negative, got %g", a.MADFactor)
	}
	known := map[string]bool{schema.FailureInvalidCredentials: true, schema.FailureInvalidToken: true,
		schema.FailurePermissionDenied: true, schema.FailureLockedOut: true, schema.FailureThrottled: true,
		schema.FailureNotFound: true, schema.FailureOther: true}
	for i, k := range a.FailureKinds {
		if !known[k] {
			bad(fmt.Sprintf("auth_failure_spike.failure_kinds[%d]", i), "unknown failure kind %q", k)
		}
	}
}
