package detect

import (
	"fmt"
	"net/netip"
	"path"
	"strings"
	"time"

	"auditwatch/schema"
)

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

// defaults fills every unset field of the unexpected_ip section.
func (u *UnexpectedIPConfig) defaults() {
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
}

// validate reports every bad field through bad (YAML path under detectors.).
func (u *UnexpectedIPConfig) validate(bad func(field, format string, args ...any)) {
	atLeast(bad, "unexpected_ip.max_networks", u.MaxNetworks, 1)
	atLeast(bad, "unexpected_ip.max_principals", u.MaxPrincipals, 16)
	nonNegative(bad, "unexpected_ip.learning_period", u.LearningPeriod)
	nonNegative(bad, "unexpected_ip.forget_after", u.ForgetAfter)
	severityOK(bad, "unexpected_ip.severity", u.Severity)
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
}
