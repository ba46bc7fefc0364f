package detect

import (
	"slices"

	"auditwatch/schema"
)

// IncidentSubject is what one incident of a detector is about, independent
// of the order its events arrived in: the detector and its key (the
// principal, the principal and network, the failing principal or
// address, the kind of privileged use). Findings of one incident share a
// DedupeKey; that key is derived from the event that opened the incident,
// which depends on arrival order within the allowed lateness, while the
// subject does not. Used to compare runs over the same input delivered in
// different orders.
func IncidentSubject(f *schema.Finding) string {
	s := f.Detector + "|" + f.Principal
	switch f.Detector {
	case schema.DetectorUnexpectedIP:
		s += "|" + f.Attributes["network"]
	case schema.DetectorAuthFailureSpike:
		s += "|" + f.Attributes["key"] + "|" + f.SourceIP
	case schema.DetectorPrivilegedUse:
		s += "|" + f.Attributes["kind"]
	}
	return s
}

// Incidents returns the sorted distinct incident subjects of fs.
func Incidents(fs []schema.Finding) []string {
	out := make([]string, 0, len(fs))
	for i := range fs {
		out = append(out, IncidentSubject(&fs[i]))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// StatusAttr is the finding attribute a detector sets to StatusResolved
// on a revision that resolves its finding: the activity turned out to be
// explained (a first read that a secret's rollout write, arriving after
// it, explains). A resolved finding's incident does not alert further.
const (
	StatusAttr     = "status"
	StatusResolved = "resolved"
)

// Unresolved returns the findings of fs whose dedupe key's latest
// revision in fs is not resolved.
func Unresolved(fs []schema.Finding) []schema.Finding {
	last := map[string]int{}
	resolved := map[string]bool{}
	for i := range fs {
		k := fs[i].DedupeKey
		if r, ok := last[k]; !ok || fs[i].Revision >= r {
			last[k] = fs[i].Revision
			resolved[k] = fs[i].Attributes[StatusAttr] == StatusResolved
		}
	}
	var out []schema.Finding
	for i := range fs {
		if !resolved[fs[i].DedupeKey] {
			out = append(out, fs[i])
		}
	}
	return out
}
