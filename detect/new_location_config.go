package detect

import (
	"fmt"
	"strings"
	"time"

	"auditwatch/schema"
)

// NewLocationConfig configures new_location: the first use of a country
// or an autonomous system by a principal, from the network context the
// geo: section adds to events (nothing is raised without it).
type NewLocationConfig struct {
	Enabled  *bool           `yaml:"enabled"`
	Severity schema.Severity `yaml:"severity"`
	// LearningPeriod per principal from its first event (event time).
	LearningPeriod Duration `yaml:"learning_period"`
	// Countries: a new country is reported (default true); ASNs: a new AS
	// within a known country is reported too (default true).
	Countries *bool `yaml:"countries"`
	ASNs      *bool `yaml:"asns"`
	// AllowCountries and AllowASNs never count as new: the company's own
	// countries, its VPN and cloud NAT providers' AS numbers.
	AllowCountries []string `yaml:"allow_countries"`
	AllowASNs      []int    `yaml:"allow_asns"`
	// ForgetAfter: a country or AS unused this long is forgotten.
	ForgetAfter Duration `yaml:"forget_after"`
	// MaxPerPrincipal bounds the countries and AS numbers remembered per
	// principal; MaxPrincipals the in-memory table.
	MaxPerPrincipal int `yaml:"max_per_principal"`
	MaxPrincipals   int `yaml:"max_principals"`

	allowCC  map[string]bool
	allowASN map[int]bool
}

func (n *NewLocationConfig) defaults() {
	if n.Enabled == nil {
		n.Enabled = boolp(true)
	}
	if n.Severity == "" {
		n.Severity = schema.SeverityMedium
	}
	if n.LearningPeriod == 0 {
		n.LearningPeriod = Duration(7 * 24 * time.Hour)
	}
	if n.Countries == nil {
		n.Countries = boolp(true)
	}
	if n.ASNs == nil {
		n.ASNs = boolp(true)
	}
	if n.ForgetAfter == 0 {
		n.ForgetAfter = Duration(90 * 24 * time.Hour)
	}
	if n.MaxPerPrincipal == 0 {
		n.MaxPerPrincipal = 32
	}
	if n.MaxPrincipals == 0 {
		n.MaxPrincipals = 200_000
	}
}

func (n *NewLocationConfig) validate(bad func(field, format string, args ...any)) {
	atLeast(bad, "new_location.max_per_principal", n.MaxPerPrincipal, 1)
	atLeast(bad, "new_location.max_principals", n.MaxPrincipals, 16)
	nonNegative(bad, "new_location.learning_period", n.LearningPeriod)
	nonNegative(bad, "new_location.forget_after", n.ForgetAfter)
	severityOK(bad, "new_location.severity", n.Severity)
	n.allowCC = map[string]bool{}
	for i, c := range n.AllowCountries {
		cc := strings.ToUpper(strings.TrimSpace(c))
		if len(cc) != 2 || cc[0] < 'A' || cc[0] > 'Z' || cc[1] < 'A' || cc[1] > 'Z' {
			bad(fmt.Sprintf("new_location.allow_countries[%d]", i), "%q is not a two-letter ISO 3166 code", c)
			continue
		}
		n.allowCC[cc] = true
	}
	n.allowASN = map[int]bool{}
	for i, a := range n.AllowASNs {
		if a <= 0 || a > 1<<32-1 {
			bad(fmt.Sprintf("new_location.allow_asns[%d]", i), "%d is not an AS number", a)
			continue
		}
		n.allowASN[a] = true
	}
}
