package alert

import "auditwatch/schema"

// glob reports whether s matches pattern, where * matches any run of
// characters ('/' and ':' included, as ARNs and Vault paths need) and ?
// matches one character. Other characters match themselves. It runs in
// O(len(s)*len(pattern)) at worst, never exponentially.
func glob(pattern, s string) bool {
	p, n := 0, 0
	star, mark := -1, 0
	for n < len(s) {
		switch {
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == s[n]):
			p++
			n++
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, n
			p++
		case star >= 0:
			p = star + 1
			mark++
			n = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

func anyGlob(patterns []string, s string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if glob(p, s) {
			return true
		}
	}
	return false
}

func (m Match) matches(f schema.Finding) bool {
	if len(m.Detectors) > 0 {
		ok := false
		for _, d := range m.Detectors {
			if d == f.Detector {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if m.MinSeverity != "" && f.Severity.Rank() < schema.Severity(m.MinSeverity).Rank() {
		return false
	}
	principalOK := anyGlob(m.Principals, f.Principal) ||
		(len(m.Principals) > 0 && f.PrincipalName != "" && anyGlob(m.Principals, f.PrincipalName))
	return principalOK && anyGlob(m.Resources, f.Resource) && anyGlob(m.SourceIPs, f.SourceIP)
}
