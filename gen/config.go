package gen

import (
	"errors"
	"fmt"
	"time"
)

// Config configures a Generator. The zero value of a field means its
// default (see Defaults); Validate reports every bad field.
type Config struct {
	// Seed makes the output deterministic: the same Config gives the same bytes.
	Seed int64 `yaml:"seed"`
	// Start is the event time of the first record.
	Start time.Time `yaml:"start"`
	// Duration is the event-time span of the whole output.
	Duration time.Duration `yaml:"duration"`
	// Events is the number of client requests (normalized events) to
	// generate, anomalies included. A Vault request is two lines (request
	// and response entry); a CloudTrail request is one record.
	Events int `yaml:"events"`
	// Rate, when > 0, paces Run in wall time at this many events per second.
	Rate float64 `yaml:"rate"`
	// CloudTrailShare is the share of the population (and so of the
	// traffic) that lives in AWS; the rest uses Vault. 1 = CloudTrail only,
	// 0 = Vault only. Negative means the default (0.5).
	CloudTrailShare float64 `yaml:"cloudtrail_share"`

	// Machines and Humans size the fixed population of principals.
	Machines int `yaml:"machines"`
	Humans   int `yaml:"humans"`
	// Accounts is the number of AWS accounts the AWS principals spread over.
	Accounts int `yaml:"accounts"`
	// SecretsPerAccount is the size of each account's Secrets Manager catalog.
	SecretsPerAccount int `yaml:"secrets_per_account"`
	// VaultSecrets is the number of KV v2 secrets in the Vault.
	VaultSecrets int `yaml:"vault_secrets"`

	// Anomalies turns injection of labelled anomalies on.
	Anomalies bool `yaml:"anomalies"`
	// AnomalyCount is the number of anomalies injected, spread evenly over
	// the detectors (and over both sources when both are present).
	AnomalyCount int `yaml:"anomaly_count"`
	// NoRollouts leaves out the unlabelled secret rollouts planned between
	// the anomalies (a write, then first reads by two principals).
	NoRollouts bool `yaml:"no_rollouts"`
	// LearningFraction is the leading share of the time span in which
	// every principal shows its full routine and no anomaly happens.
	LearningFraction float64 `yaml:"learning_fraction"`
	// AnomalySpacing is the minimum event time between the starts of two
	// anomalies; 0 spreads them evenly over the time after learning.
	AnomalySpacing time.Duration `yaml:"anomaly_spacing"`
	// FailureGap is the minimum event time between two failures of normal
	// traffic for one principal or one source IP, so that normal traffic
	// never looks like an auth-failure spike.
	FailureGap time.Duration `yaml:"failure_gap"`
	// BruteForceAttempts is the number of failed logins of a brute force
	// anomaly; DeniedBurst the number of denied calls of a denied-call
	// burst; BulkReads the number of distinct secrets of a bulk read.
	BruteForceAttempts int `yaml:"brute_force_attempts"`
	DeniedBurst        int `yaml:"denied_burst"`
	BulkReads          int `yaml:"bulk_reads"`
}

// DefaultStart is the default event time of the first record. It is fixed
// (not "now") so that output is reproducible.
var DefaultStart = time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)

// Defaults returns cfg with every zero field set to its default. Anomalies
// is a bool and keeps its value.
func (c Config) Defaults() Config {
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Start.IsZero() {
		c.Start = DefaultStart
	}
	c.Start = c.Start.UTC()
	if c.Events == 0 {
		c.Events = 100_000
	}
	if c.Duration == 0 {
		if c.Rate > 0 {
			c.Duration = time.Duration(float64(c.Events) / c.Rate * float64(time.Second))
		} else {
			c.Duration = 24 * time.Hour
		}
	}
	if c.CloudTrailShare < 0 {
		c.CloudTrailShare = 0.5
	}
	if c.Machines == 0 {
		c.Machines = 50
	}
	if c.Humans == 0 {
		c.Humans = 20
	}
	if c.Accounts == 0 {
		c.Accounts = 3
	}
	if c.SecretsPerAccount == 0 {
		c.SecretsPerAccount = 120
	}
	if c.VaultSecrets == 0 {
		c.VaultSecrets = 120
	}
	if c.AnomalyCount == 0 {
		c.AnomalyCount = 20
	}
	if c.LearningFraction == 0 {
		c.LearningFraction = 0.2
	}
	if c.FailureGap == 0 {
		c.FailureGap = 15 * time.Minute
	}
	if c.BruteForceAttempts == 0 {
		c.BruteForceAttempts = 40
	}
	if c.DeniedBurst == 0 {
		c.DeniedBurst = 12
	}
	if c.BulkReads == 0 {
		c.BulkReads = 30
	}
	return c
}

// ErrInvalidConfig is wrapped by every error Validate returns.
var ErrInvalidConfig = errors.New("invalid generator config")

// Validate reports every bad field of a defaulted Config, naming it by its
// yaml path under "generate.".
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: generate.%s: %s", ErrInvalidConfig, field, fmt.Sprintf(format, args...)))
	}
	if c.Events < 1 {
		bad("events", "must be at least 1, got %d", c.Events)
	}
	if c.Duration <= 0 {
		bad("duration", "must be positive, got %s", c.Duration)
	}
	if c.Rate < 0 {
		bad("rate", "must not be negative, got %g", c.Rate)
	}
	if c.CloudTrailShare > 1 {
		bad("cloudtrail_share", "must be between 0 and 1, got %g", c.CloudTrailShare)
	}
	if c.Machines < 0 || c.Machines > 100_000 {
		bad("machines", "must be between 0 and 100000, got %d", c.Machines)
	}
	if c.Humans < 0 || c.Humans > 100_000 {
		bad("humans", "must be between 0 and 100000, got %d", c.Humans)
	}
	if c.Machines+c.Humans < 2 {
		bad("machines", "machines + humans must be at least 2, got %d", c.Machines+c.Humans)
	}
	if c.Accounts < 1 || c.Accounts > 100 {
		bad("accounts", "must be between 1 and 100, got %d", c.Accounts)
	}
	if c.SecretsPerAccount < 20 {
		bad("secrets_per_account", "must be at least 20, got %d", c.SecretsPerAccount)
	}
	if c.VaultSecrets < 20 {
		bad("vault_secrets", "must be at least 20, got %d", c.VaultSecrets)
	}
	if c.AnomalyCount < 0 {
		bad("anomaly_count", "must not be negative, got %d", c.AnomalyCount)
	}
	if c.LearningFraction <= 0 || c.LearningFraction >= 0.9 {
		bad("learning_fraction", "must be in (0, 0.9), got %g", c.LearningFraction)
	}
	if c.AnomalySpacing < 0 {
		bad("anomaly_spacing", "must not be negative, got %s", c.AnomalySpacing)
	}
	if c.FailureGap < 0 {
		bad("failure_gap", "must not be negative, got %s", c.FailureGap)
	}
	if c.BruteForceAttempts < 2 || c.BruteForceAttempts > 10_000 {
		bad("brute_force_attempts", "must be between 2 and 10000, got %d", c.BruteForceAttempts)
	}
	if c.DeniedBurst < 2 || c.DeniedBurst > 10_000 {
		bad("denied_burst", "must be between 2 and 10000, got %d", c.DeniedBurst)
	}
	if c.BulkReads < 5 {
		bad("bulk_reads", "must be at least 5, got %d", c.BulkReads)
	}
	if c.BulkReads > c.SecretsPerAccount/2 || c.BulkReads > c.VaultSecrets/2 {
		bad("bulk_reads", "must be at most half of secrets_per_account and vault_secrets, got %d", c.BulkReads)
	}
	return errors.Join(errs...)
}
