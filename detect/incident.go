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
