package identity

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"time"

	"go.yaml.in/yaml/v3"

	"auditwatch/config"
	"auditwatch/config/duration"
	"auditwatch/internal/secret"
)

// Config configures credential linking (the `identity:` section).
type Config struct {
	// Disabled turns linking off (it is on by default: it needs nothing
	// configured when Vault's AWS mounts log access keys in clear).
	Disabled bool `yaml:"disabled"`
	// AuditHash, when Address is set, lets auditwatch match access keys
	// that Vault's audit log HMACs (the default) by asking Vault's
	// sys/audit-hash endpoint for the HMAC of each key first seen in
	// CloudTrail.
	AuditHash AuditHashConfig `yaml:"audit_hash"`
	// LeaseTTL is how long an issued key is expected to live when nothing
	// revokes it earlier (the audit log does not record a lease's TTL:
	// set it to the AWS mount's default_lease_ttl). Default 1h.
	LeaseTTL duration.Duration `yaml:"lease_ttl"`
	// RoleLeaseTTL overrides LeaseTTL per Vault role ("aws/payments" or
	// "payments").
	RoleLeaseTTL map[string]duration.Duration `yaml:"role_lease_ttl"`
	// Grace is the clock skew and revocation delay allowed before a use
	// after a lease's end is reported. Default 5m.
	Grace duration.Duration `yaml:"grace"`
	// Learn is how long the networks a Vault identity's keys are used from
	// are learned before a use from a new network is reported (from the
	// identity's first linked use). Default 24h.
	Learn duration.Duration `yaml:"learn"`
	// IPv4Prefix and IPv6Prefix size the networks learned. Defaults 24, 64.
	IPv4Prefix int `yaml:"ipv4_prefix"`
	IPv6Prefix int `yaml:"ipv6_prefix"`
	// TrustedNetworks never raise credential_exfiltration (company VPN,
	// cloud NAT ranges).
	TrustedNetworks []string `yaml:"trusted_networks"`
	// MaxLinks bounds the links kept (oldest issued first dropped; a
	// dropped link's key is then judged as any other key). Default 1,000,000.
	MaxLinks int `yaml:"max_links"`
}

// AuditHashConfig is the Vault endpoint used to HMAC access key ids.
type AuditHashConfig struct {
	// Address of Vault's API, e.g. https://vault.internal:8200.
	Address string `yaml:"address"`
	// Device is the path of the audit device whose log auditwatch reads
	// (its salt makes the HMACs), e.g. "file".
	Device string `yaml:"device"`
	// Namespace, for Vault Enterprise, if the device lives in one.
	Namespace string `yaml:"namespace"`
	// Token with only `update` on sys/audit-hash/<device>
	// (deploy/vault/audit-hash-policy.hcl).
	Token secret.Secret `yaml:"token"`
	// Rate limits the calls per second (default 5); Burst (default 10).
	Rate  float64 `yaml:"rate"`
	Burst int     `yaml:"burst"`
	// Timeout of one call (default 2s).
	Timeout duration.Duration `yaml:"timeout"`
	// CacheSize bounds the remembered key → HMAC answers (default 100,000).
	CacheSize int `yaml:"cache_size"`
}

// SetDefaults fills unset fields with their defaults.
func (c *Config) SetDefaults() {
	if c.LeaseTTL == 0 {
		c.LeaseTTL = duration.Duration(time.Hour)
	}
	if c.Grace == 0 {
		c.Grace = duration.Duration(5 * time.Minute)
	}
	if c.Learn == 0 {
		c.Learn = duration.Duration(24 * time.Hour)
	}
	if c.IPv4Prefix == 0 {
		c.IPv4Prefix = 24
	}
	if c.IPv6Prefix == 0 {
		c.IPv6Prefix = 64
	}
	if c.MaxLinks == 0 {
		c.MaxLinks = 1_000_000
	}
	a := &c.AuditHash
	if a.Rate == 0 {
		a.Rate = 5
	}
	if a.Burst == 0 {
		a.Burst = 10
	}
	if a.Timeout == 0 {
		a.Timeout = duration.Duration(2 * time.Second)
	}
	if a.CacheSize == 0 {
		a.CacheSize = 100_000
	}
}

// Validate reports every problem, each with its field's path.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.LeaseTTL < 0 {
		bad("lease_ttl", "must be positive")
	}
	for r, d := range c.RoleLeaseTTL {
		if d <= 0 {
			bad("role_lease_ttl."+r, "must be positive")
		}
	}
	if c.Grace < 0 {
		bad("grace", "must not be negative")
	}
	if c.Learn < 0 {
		bad("learn", "must not be negative")
	}
	if c.IPv4Prefix < 8 || c.IPv4Prefix > 32 {
		bad("ipv4_prefix", "must be 8-32, got %d", c.IPv4Prefix)
	}
	if c.IPv6Prefix < 16 || c.IPv6Prefix > 128 {
		bad("ipv6_prefix", "must be 16-128, got %d", c.IPv6Prefix)
	}
	if c.MaxLinks < 0 {
		bad("max_links", "must not be negative")
	}
	if _, err := c.trustedNetworks(); err != nil {
		errs = append(errs, err)
	}
	a := c.AuditHash
	if a.Address != "" {
		u, err := url.Parse(a.Address)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("audit_hash.address", "want http(s)://host:port")
		}
		if a.Device == "" {
			bad("audit_hash.device", "required with audit_hash.address (the audit device's path, e.g. file)")
		}
		if a.Token.IsZero() {
			bad("audit_hash.token", "required with audit_hash.address ({env: VAR} or {file: PATH})")
		} else if err := a.Token.Validate(); err != nil {
			bad("audit_hash.token", "%v", err)
		}
	}
	if a.Rate < 0 {
		bad("audit_hash.rate", "must not be negative")
	}
	if a.Timeout < 0 {
		bad("audit_hash.timeout", "must not be negative")
	}
	return errors.Join(errs...)
}

// trustedNetworks parses TrustedNetworks (CIDRs or addresses).
func (c Config) trustedNetworks() ([]netip.Prefix, error) {
	var out []netip.Prefix
	var errs []error
	for i, s := range c.TrustedNetworks {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			if a, err2 := netip.ParseAddr(s); err2 == nil {
				p, err = netip.PrefixFrom(a, a.BitLen()), nil
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("trusted_networks[%d]: not a CIDR or address: %q", i, s))
			continue
		}
		out = append(out, p.Masked())
	}
	return out, errors.Join(errs...)
}

// leaseTTL is the expected lifetime of a key issued by mount/role.
func (c *Config) leaseTTL(mount, role string) time.Duration {
	if d, ok := c.RoleLeaseTTL[mount+role]; ok {
		return d.D()
	}
	if d, ok := c.RoleLeaseTTL[role]; ok {
		return d.D()
	}
	return c.LeaseTTL.D()
}

// FromNode decodes the `identity:` section strictly and sets defaults; a
// nil or empty node gives the defaults. It does not validate.
func FromNode(n *yaml.Node) (Config, error) {
	var c Config
	if n != nil && n.Kind != 0 {
		if err := config.DecodeSection(*n, "identity", &c); err != nil {
			return c, err
		}
	}
	c.SetDefaults()
	return c, nil
}
