package detect

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path"
	"strconv"
	"strings"
	"time"

	"auditwatch/schema"

	"go.yaml.in/yaml/v3"
)

// Duration is a time.Duration that YAML writes as "90s", "15m", "36h" or
// "7d" (days).
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// UnmarshalYAML accepts Go duration syntax plus a "d" (24h) suffix.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: duration: %w", n.Line, err)
	}
	v, err := ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the Go duration form.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// ParseDuration parses Go duration syntax, or an integer followed by "d".
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if strings.HasSuffix(s, "d") {
		n, err := strconv.Atoi(strings.TrimSuffix(s, "d"))
		if err != nil {
			return 0, fmt.Errorf("bad duration %q", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("bad duration %q", s)
	}
	return v, nil
}

// ByteSize is a size in bytes that YAML writes as "512MiB", "1GiB",
// "64MB" or a plain number of bytes.
type ByteSize int64

// UnmarshalYAML accepts a number of bytes or a number with a unit (KiB,
// MiB, GiB, KB, MB, GB).
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: size: %w", n.Line, err)
	}
	v, err := ParseByteSize(s)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*b = ByteSize(v)
	return nil
}

// MarshalYAML writes the size in bytes.
func (b ByteSize) MarshalYAML() (any, error) { return int64(b), nil }

// ParseByteSize parses "512MiB", "1GiB", "64MB" or a number of bytes.
func ParseByteSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}

// Config is the `detectors:` section of the auditwatch configuration.
// Defaults lives in Defaults; zero values are filled there only.
type Config struct {
	// AllowedLateness is the lateness of a source not named in Lateness:
	// how far behind its source's watermark (the newest event time seen
	// from that source) an event may arrive and still be on time. Every
	// event is decided when it arrives; lateness only bounds how long
	// window state is kept for late events, and an event later than it is
	// still processed and its findings are marked late.
	AllowedLateness Duration `yaml:"allowed_lateness"`
	// Lateness per event source (schema.Event.Source): CloudTrail delivers
	// up to ~15 minutes late, a Vault file tail within milliseconds.
	Lateness map[string]Duration `yaml:"lateness"`
	// MaxAhead: an event dated more than this after the wall clock (a
	// clock jump, a forged time) is processed and flagged
	// (time_skew=ahead) but never moves its source's watermark.
	MaxAhead Duration `yaml:"max_ahead"`
	// MaxBehind: an event more than this behind its source's watermark is
	// processed and flagged (late, time_skew=behind).
	MaxBehind Duration `yaml:"max_behind"`
	// MemoryBudget bounds the bytes of detector state held in memory (all
	// tables and their unsaved spill); beyond it the least valuable
	// entries are evicted to the store. Accepts 512MiB, 1GiB or bytes.
	MemoryBudget ByteSize `yaml:"memory_budget"`
	// MaxBuffered is accepted for older configurations and unused: there
	// is no reorder buffer, events are decided on arrival.
	MaxBuffered int `yaml:"max_buffered"`
	// Now is the wall clock for max_ahead (tests set it); nil: time.Now.
	Now func() time.Time `yaml:"-"`
	// MaxPrincipals bounds the in-memory principal table (first-seen times).
	MaxPrincipals int `yaml:"max_principals"`
	// MaxSpill bounds evicted-but-unsaved entries kept until the next
	// checkpoint; beyond it the oldest are dropped (counted).
	MaxSpill int `yaml:"max_spill"`
	// LearnUntil: events before it are history: they build baselines and
	// raise nothing. A principal seen in the history counts as learned from
	// LearnUntil on. Usually set by `replay --learn-until`.
	LearnUntil time.Time `yaml:"learn_until"`
	// MaxEvidence bounds event ids carried by one finding.
	MaxEvidence int `yaml:"max_evidence"`

	UnexpectedIP      UnexpectedIPConfig      `yaml:"unexpected_ip"`
	FirstTimeAccess   FirstTimeAccessConfig   `yaml:"first_time_access"`
	AuthFailureSpike  AuthFailureSpikeConfig  `yaml:"auth_failure_spike"`
	PrivilegedUse     PrivilegedUseConfig     `yaml:"privileged_use"`
	AccessVolumeSpike AccessVolumeSpikeConfig `yaml:"access_volume_spike"`
}

// AllowEntry allows CIDRs for the principals it matches.
type AllowEntry struct {
	// Principal is an exact principal, or a glob (path.Match) such as
	// "arn:aws:iam::123456789012:role/ci-*". Empty with Policy set: any
	// principal holding that Vault policy.
	Principal string `yaml:"principal"`
	// Policy matches a Vault token policy.
	Policy string   `yaml:"policy"`
	CIDRs  []string `yaml:"cidrs"`
	// Expires ends the entry (event time); zero = never.
	Expires time.Time `yaml:"expires"`
	Comment string    `yaml:"comment"`

	prefixes []netip.Prefix
}

// TrustedRange is a global allowed range, optionally expiring.
type TrustedRange struct {
	CIDR    string    `yaml:"cidr"`
	Expires time.Time `yaml:"expires"`
	Comment string    `yaml:"comment"`

	prefix netip.Prefix
}

// UnexpectedIPConfig configures unexpected_ip.
type UnexpectedIPConfig struct {
	Enabled  *bool           `yaml:"enabled"`
	Severity schema.Severity `yaml:"severity"`
	// LearningPeriod per principal from its first event (event time).
	LearningPeriod Duration `yaml:"learning_period"`
	// IPv4Prefix / IPv6Prefix: the learned network of an address.
	IPv4Prefix int `yaml:"ipv4_prefix"`
	IPv6Prefix int `yaml:"ipv6_prefix"`
	// ForgetAfter: a learned network unused this long is forgotten.
	ForgetAfter Duration `yaml:"forget_after"`
	// MaxNetworks per principal (least recently used beyond it is dropped).
	MaxNetworks int `yaml:"max_networks"`
	// MaxPrincipals bounds the in-memory table.
	MaxPrincipals int `yaml:"max_principals"`
	// Trusted ranges are allowed for everybody.
	Trusted []TrustedRange `yaml:"trusted"`
	Allow   []AllowEntry   `yaml:"allow"`
}

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
	// > Factor x the key's learned rate per window (EWMA).
	MinCount  int     `yaml:"min_count"`
	Factor    float64 `yaml:"factor"`
	EWMAAlpha float64 `yaml:"ewma_alpha"`
	// Cooldown: a burst ends after this long without failures.
	Cooldown Duration `yaml:"cooldown"`
	// FailureKinds that count (schema.Failure*); failed Auth events always count.
	FailureKinds []string `yaml:"failure_kinds"`
	MaxKeys      int      `yaml:"max_keys"`
}

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

// AccessVolumeSpikeConfig configures access_volume_spike.
type AccessVolumeSpikeConfig struct {
	Enabled        *bool           `yaml:"enabled"`
	Severity       schema.Severity `yaml:"severity"`
	LearningPeriod Duration        `yaml:"learning_period"`
	Window         Duration        `yaml:"window"`
	// Floor: never alert below this many distinct secrets in Window.
	Floor int `yaml:"floor"`
	// Factor x the principal's baseline (EWMA of distinct secrets per window).
	Factor    float64 `yaml:"factor"`
	EWMAAlpha float64 `yaml:"ewma_alpha"`
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

func boolp(b bool) *bool { return &b }

func on(b *bool) bool { return b == nil || *b }

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

// DefaultTamperActions are the audit-tampering actions.
func DefaultTamperActions() []string {
	return []string{
		"cloudtrail:StopLogging", "cloudtrail:DeleteTrail", "cloudtrail:UpdateTrail",
		"cloudtrail:PutEventSelectors", "cloudtrail:PutInsightSelectors",
		"vault:delete sys/audit/*", "vault:update sys/audit/*",
	}
}

// Defaults fills every unset field. It is the only place defaults live.
func (c *Config) Defaults() {
	if c.AllowedLateness == 0 {
		// CloudTrail delivers most events within 5 minutes, some in 15.
		c.AllowedLateness = Duration(15 * time.Minute)
	}
	if c.Lateness == nil {
		c.Lateness = map[string]Duration{
			schema.SourceCloudTrail: Duration(15 * time.Minute),
			schema.SourceVault:      Duration(5 * time.Second),
		}
	}
	if c.MaxAhead == 0 {
		c.MaxAhead = Duration(time.Hour)
	}
	if c.MaxBehind == 0 {
		c.MaxBehind = Duration(24 * time.Hour)
	}
	if c.MemoryBudget == 0 {
		c.MemoryBudget = 512 << 20
	}
	if c.MaxBuffered == 0 {
		c.MaxBuffered = 200_000
	}
	if c.MaxPrincipals == 0 {
		c.MaxPrincipals = 200_000
	}
	if c.MaxSpill == 0 {
		c.MaxSpill = 1_000_000
	}
	if c.MaxEvidence == 0 {
		c.MaxEvidence = 20
	}
	u := &c.UnexpectedIP
	if u.Enabled == nil {
		u.Enabled = boolp(true)
	}
	if u.Severity == "" {
		u.Severity = schema.SeverityMedium
	}
	if u.LearningPeriod == 0 {
		u.LearningPeriod = Duration(7 * 24 * time.Hour)
	}
	if u.IPv4Prefix == 0 {
		u.IPv4Prefix = 24
	}
	if u.IPv6Prefix == 0 {
		u.IPv6Prefix = 64
	}
	if u.ForgetAfter == 0 {
		u.ForgetAfter = Duration(90 * 24 * time.Hour)
	}
	if u.MaxNetworks == 0 {
		u.MaxNetworks = 64
	}
	if u.MaxPrincipals == 0 {
		u.MaxPrincipals = 200_000
	}
	f := &c.FirstTimeAccess
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
	a := &c.AuthFailureSpike
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
	if a.EWMAAlpha == 0 {
		a.EWMAAlpha = 0.1
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
	p := &c.PrivilegedUse
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
	v := &c.AccessVolumeSpike
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
	if v.EWMAAlpha == 0 {
		v.EWMAAlpha = 0.05
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

// Validate reports every bad field, each named by its YAML path, and
// prepares parsed forms (CIDRs). Call after Defaults.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("detectors.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.AllowedLateness < 0 {
		bad("allowed_lateness", "must not be negative")
	}
	for src, d := range c.Lateness {
		if d < 0 {
			bad("lateness."+src, "must not be negative")
		}
	}
	if c.MaxAhead < 0 {
		bad("max_ahead", "must not be negative")
	}
	if c.MaxBehind < 0 {
		bad("max_behind", "must not be negative")
	}
	if c.MemoryBudget < 1<<20 {
		bad("memory_budget", "must be at least 1MiB, got %d bytes", int64(c.MemoryBudget))
	}
	for _, x := range []struct {
		name string
		v    int
		min  int
	}{
		{"max_buffered", c.MaxBuffered, 1}, {"max_principals", c.MaxPrincipals, 16},
		{"max_spill", c.MaxSpill, 1}, {"max_evidence", c.MaxEvidence, 1},
		{"unexpected_ip.max_networks", c.UnexpectedIP.MaxNetworks, 1},
		{"unexpected_ip.max_principals", c.UnexpectedIP.MaxPrincipals, 16},
		{"first_time_access.max_pairs", c.FirstTimeAccess.MaxPairs, 16},
		{"auth_failure_spike.threshold", c.AuthFailureSpike.Threshold, 1},
		{"auth_failure_spike.min_count", c.AuthFailureSpike.MinCount, 1},
		{"auth_failure_spike.max_keys", c.AuthFailureSpike.MaxKeys, 16},
		{"privileged_use.max_keys", c.PrivilegedUse.MaxKeys, 16},
		{"access_volume_spike.floor", c.AccessVolumeSpike.Floor, 1},
		{"access_volume_spike.max_tracked", c.AccessVolumeSpike.MaxTracked, 1},
		{"access_volume_spike.bulk_weight", c.AccessVolumeSpike.BulkWeight, 1},
		{"access_volume_spike.learning_floor", c.AccessVolumeSpike.LearningFloor, 1},
		{"access_volume_spike.max_principals", c.AccessVolumeSpike.MaxPrincipals, 16},
	} {
		if x.v < x.min {
			bad(x.name, "must be at least %d, got %d", x.min, x.v)
		}
	}
	for _, x := range []struct {
		name string
		v    Duration
	}{
		{"unexpected_ip.learning_period", c.UnexpectedIP.LearningPeriod},
		{"unexpected_ip.forget_after", c.UnexpectedIP.ForgetAfter},
		{"first_time_access.learning_period", c.FirstTimeAccess.LearningPeriod},
		{"first_time_access.forget_after", c.FirstTimeAccess.ForgetAfter},
		{"first_time_access.group_window", c.FirstTimeAccess.GroupWindow},
		{"auth_failure_spike.window", c.AuthFailureSpike.Window},
		{"auth_failure_spike.cooldown", c.AuthFailureSpike.Cooldown},
		{"privileged_use.cooldown", c.PrivilegedUse.Cooldown},
		{"access_volume_spike.learning_period", c.AccessVolumeSpike.LearningPeriod},
		{"access_volume_spike.window", c.AccessVolumeSpike.Window},
		{"access_volume_spike.cooldown", c.AccessVolumeSpike.Cooldown},
	} {
		if x.v < 0 {
			bad(x.name, "must not be negative")
		}
	}
	for _, x := range []struct {
		name string
		v    schema.Severity
	}{
		{"unexpected_ip.severity", c.UnexpectedIP.Severity},
		{"first_time_access.severity", c.FirstTimeAccess.Severity},
		{"auth_failure_spike.severity", c.AuthFailureSpike.Severity},
		{"privileged_use.severity", c.PrivilegedUse.Severity},
		{"privileged_use.tamper_severity", c.PrivilegedUse.TamperSeverity},
		{"access_volume_spike.severity", c.AccessVolumeSpike.Severity},
	} {
		if _, err := schema.ParseSeverity(string(x.v)); err != nil {
			bad(x.name, "%v", err)
		}
	}
	u := &c.UnexpectedIP
	if u.IPv4Prefix < 1 || u.IPv4Prefix > 32 {
		bad("unexpected_ip.ipv4_prefix", "must be 1..32, got %d", u.IPv4Prefix)
	}
	if u.IPv6Prefix < 1 || u.IPv6Prefix > 128 {
		bad("unexpected_ip.ipv6_prefix", "must be 1..128, got %d", u.IPv6Prefix)
	}
	for i := range u.Trusted {
		t := &u.Trusted[i]
		p, err := netip.ParsePrefix(strings.TrimSpace(t.CIDR))
		if err != nil {
			bad(fmt.Sprintf("unexpected_ip.trusted[%d].cidr", i), "%q is not a CIDR", t.CIDR)
			continue
		}
		t.prefix = p.Masked()
	}
	for i := range u.Allow {
		a := &u.Allow[i]
		a.prefixes = a.prefixes[:0]
		if a.Principal == "" && a.Policy == "" {
			bad(fmt.Sprintf("unexpected_ip.allow[%d]", i), "needs principal or policy")
		}
		if a.Principal != "" {
			if _, err := path.Match(a.Principal, ""); err != nil {
				bad(fmt.Sprintf("unexpected_ip.allow[%d].principal", i), "bad pattern %q", a.Principal)
			}
		}
		if len(a.CIDRs) == 0 {
			bad(fmt.Sprintf("unexpected_ip.allow[%d].cidrs", i), "must list at least one CIDR")
		}
		for j, s := range a.CIDRs {
			p, err := netip.ParsePrefix(strings.TrimSpace(s))
			if err != nil {
				bad(fmt.Sprintf("unexpected_ip.allow[%d].cidrs[%d]", i, j), "%q is not a CIDR", s)
				continue
			}
			a.prefixes = append(a.prefixes, p.Masked())
		}
	}
	for i, r := range c.FirstTimeAccess.Scope {
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
	a := &c.AuthFailureSpike
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
	if a.EWMAAlpha <= 0 || a.EWMAAlpha > 1 {
		bad("auth_failure_spike.ewma_alpha", "must be in (0,1], got %g", a.EWMAAlpha)
	}
	known := map[string]bool{schema.FailureInvalidCredentials: true, schema.FailureInvalidToken: true,
		schema.FailurePermissionDenied: true, schema.FailureLockedOut: true, schema.FailureThrottled: true,
		schema.FailureNotFound: true, schema.FailureOther: true}
	for i, k := range a.FailureKinds {
		if !known[k] {
			bad(fmt.Sprintf("auth_failure_spike.failure_kinds[%d]", i), "unknown failure kind %q", k)
		}
	}
	p := &c.PrivilegedUse
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
	v := &c.AccessVolumeSpike
	if v.Window <= 0 {
		bad("access_volume_spike.window", "must be positive")
	}
	if v.Factor < 1 {
		bad("access_volume_spike.factor", "must be at least 1, got %g", v.Factor)
	}
	if v.EWMAAlpha <= 0 || v.EWMAAlpha > 1 {
		bad("access_volume_spike.ewma_alpha", "must be in (0,1], got %g", v.EWMAAlpha)
	}
	for i, g := range v.BulkActions {
		if _, err := path.Match(g, ""); err != nil {
			bad(fmt.Sprintf("access_volume_spike.bulk_actions[%d]", i), "bad pattern %q", g)
		}
	}
	if v.MinBaseline < 0 {
		bad("access_volume_spike.min_baseline", "must not be negative")
	}
	return errors.Join(errs...)
}

// DecodeConfig strictly decodes the `detectors:` section of the root
// configuration (an unknown key is an error naming its line), fills the
// defaults and validates. A nil or empty node gives the defaults.
func DecodeConfig(n *yaml.Node) (Config, error) {
	var c Config
	if n != nil && n.Kind != 0 {
		// yaml.Node.Decode cannot reject unknown keys: re-encode the node
		// and decode it strictly.
		b, err := yaml.Marshal(n)
		if err != nil {
			return c, fmt.Errorf("detectors: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
			return c, fmt.Errorf("detectors: %w", err)
		}
	}
	c.Defaults()
	if err := c.Validate(); err != nil {
		return c, err
	}
	return c, nil
}
