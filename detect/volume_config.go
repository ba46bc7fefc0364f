package detect

import (
	"fmt"
	"path"
	"time"

	"auditwatch/schema"
)

// AccessVolumeSpikeConfig configures access_volume_spike.
type AccessVolumeSpikeConfig struct {
	Enabled        *bool           `yaml:"enabled"`
	Severity       schema.Severity `yaml:"severity"`
	LearningPeriod Duration        `yaml:"learning_period"`
	Window         Duration        `yaml:"window"`
	// Floor: never alert below this many distinct secrets in Window.
	Floor int `yaml:"floor"`
	// Factor x the principal's baseline: the median of the distinct
	// secrets it read in its past windows with reads (the window being
	// judged excluded), and MADFactor median absolute deviations above it.
	Factor    float64 `yaml:"factor"`
	MADFactor float64 `yaml:"mad_factor"`
	// MinHistory: past windows with reads needed before the baseline
	// judges; with fewer, only the floor does.
	MinHistory int `yaml:"min_history"`
	// MinBaseline keeps a near-zero baseline from alerting on a handful.
	MinBaseline float64  `yaml:"min_baseline"`
	Cooldown    Duration `yaml:"cooldown"`
	// BulkActions read many secrets in one call without naming them
	// (BatchGetSecretValue by filter): each call counts as BulkWeight
	// distinct secrets.
	BulkActions []string `yaml:"bulk_actions"`
	BulkWeight  int      `yaml:"bulk_weight"`
	// LearningFloor: a principal still in its learning period has no
	// baseline; it alerts only at this many distinct secrets.
	LearningFloor int `yaml:"learning_floor"`
	// MaxTracked bounds distinct secrets remembered per principal window.
	MaxTracked    int `yaml:"max_tracked"`
	MaxPrincipals int `yaml:"max_principals"`
}

// defaults fills every unset field of the access_volume_spike section.
func (v *AccessVolumeSpikeConfig) defaults() {
	if v.Enabled == nil {
		v.Enabled = boolp(true)
	}
	if v.Severity == "" {
		v.Severity = schema.SeverityHigh
	}
	if v.LearningPeriod == 0 {
		v.LearningPeriod = Duration(7 * 24 * time.Hour)
	}
	if v.Window == 0 {
		v.Window = Duration(5 * time.Minute)
	}
	if v.Floor == 0 {
		v.Floor = 10
	}
	if v.Factor == 0 {
		v.Factor = 3
	}
	if v.MADFactor == 0 {
		v.MADFactor = 6
	}
	if v.MinHistory == 0 {
		v.MinHistory = 4
	}
	if v.MinBaseline == 0 {
		v.MinBaseline = 1
	}
	if v.Cooldown == 0 {
		v.Cooldown = Duration(15 * time.Minute)
	}
	if v.BulkActions == nil {
		v.BulkActions = []string{"secretsmanager:BatchGetSecretValue", "ssm:GetParametersByPath"}
	}
	if v.BulkWeight == 0 {
		v.BulkWeight = 10
	}
	if v.LearningFloor == 0 {
		v.LearningFloor = 30
	}
	if v.MaxTracked == 0 {
		v.MaxTracked = 1024
	}
	if v.MaxPrincipals == 0 {
		v.MaxPrincipals = 200_000
	}
}

// validate reports every bad field through bad (YAML path under detectors.).
func (v *AccessVolumeSpikeConfig) validate(bad func(field, format string, args ...any)) {
	atLeast(bad, "access_volume_spike.floor", v.Floor, 1)
	atLeast(bad, "access_volume_spike.max_tracked", v.MaxTracked, 1)
	atLeast(bad, "access_volume_spike.bulk_weight", v.BulkWeight, 1)
	atLeast(bad, "access_volume_spike.learning_floor", v.LearningFloor, 1)
	atLeast(bad, "access_volume_spike.max_principals", v.MaxPrincipals, 16)
	nonNegative(bad, "access_volume_spike.learning_period", v.LearningPeriod)
	nonNegative(bad, "access_volume_spike.window", v.Window)
	nonNegative(bad, "access_volume_spike.cooldown", v.Cooldown)
	severityOK(bad, "access_volume_spike.severity", v.Severity)
	if v.Window <= 0 {
		bad("access_volume_spike.window", "must be positive")
	}
	if v.Factor < 1 {
		bad("access_volume_spike.factor", "must be at least 1, got %g", v.Factor)
	}
	if v.MADFactor < 0 {
		bad("access_volume_spike.mad_factor", "must not be negative, got %g", v.MADFactor)
	}
	atLeast(bad, "access_volume_spike.min_history", v.MinHistory, 1)
	for i, g := range v.BulkActions {
		if _, err := path.Match(g, ""); err != nil {
			bad(fmt.Sprintf("access_volume_spike.bulk_actions[%d]", i), "bad pattern %q", g)
		}
	}
	if v.MinBaseline < 0 {
		bad("access_volume_spike.min_baseline", "must not be negative")
	}
}
