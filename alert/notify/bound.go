package notify

import (
	"maps"
	"slices"
	"unicode/utf8"

	"auditwatch/internal/escape"
	"auditwatch/internal/redact"
	"auditwatch/schema"
)

// Ellipsis marks a value cut by Truncate.
const Ellipsis = "…"

// Truncate cuts s to at most max bytes on a rune boundary, ending it with
// Ellipsis when it was cut. max <= 0 returns s unchanged.
func Truncate(s string, max int) string {
	if max <= 0 || len(s) <= max {
		return s
	}
	cut := max - len(Ellipsis)
	if cut < 0 {
		cut = 0
	}
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + Ellipsis
}

// BoundFinding returns a copy of f whose attacker-influenced strings are cut
// to maxField bytes, whose evidence list holds at most maxIDs ids and whose
// attributes at most maxAttrs entries. The input is not modified.
func BoundFinding(f schema.Finding, maxField, maxIDs, maxAttrs int) schema.Finding {
	f.Principal = Truncate(f.Principal, maxField)
	f.PrincipalName = Truncate(f.PrincipalName, maxField)
	f.Resource = Truncate(f.Resource, maxField)
	f.SourceIP = Truncate(f.SourceIP, maxField)
	f.Account = Truncate(f.Account, maxField)
	f.Summary = Truncate(f.Summary, maxField)
	f.Reason = Truncate(f.Reason, maxField)
	f.DedupeKey = Truncate(f.DedupeKey, maxField)
	f.Source = Truncate(f.Source, maxField)
	f.Detector = Truncate(f.Detector, maxField)
	f.ID = Truncate(f.ID, maxField)
	if maxIDs > 0 && len(f.EventIDs) > maxIDs {
		f.EventIDs = f.EventIDs[:maxIDs]
	}
	if len(f.EventIDs) > 0 {
		ids := make([]string, len(f.EventIDs))
		for i, id := range f.EventIDs {
			ids[i] = Truncate(id, maxField)
		}
		f.EventIDs = ids
	}
	if f.Attributes != nil {
		attrs := make(map[string]string, len(f.Attributes))
		n := 0
		for _, k := range sortedKeys(f.Attributes) {
			if maxAttrs > 0 && n >= maxAttrs {
				break
			}
			attrs[Truncate(k, maxField)] = Truncate(f.Attributes[k], maxField)
			n++
		}
		f.Attributes = attrs
	}
	return f
}

// BoundEvent returns a copy of ev with every string cut to maxField bytes.
func BoundEvent(ev schema.Event, maxField int) schema.Event {
	for _, p := range []*string{&ev.Source, &ev.ID, &ev.Principal, &ev.PrincipalName, &ev.PrincipalType,
		&ev.Session, &ev.Account, &ev.AccessKey, &ev.TokenHMAC, &ev.AuthMethod, &ev.Action, &ev.Resource,
		&ev.Mount, &ev.MountType, &ev.Namespace, &ev.Region, &ev.SourceIP, &ev.SourceIPRaw, &ev.UserAgent,
		&ev.Outcome, &ev.Error, &ev.FailureKind} {
		*p = Truncate(*p, maxField)
	}
	if len(ev.Policies) > 0 {
		ps := make([]string, 0, len(ev.Policies))
		for i, p := range ev.Policies {
			if i >= 64 {
				break
			}
			ps = append(ps, Truncate(p, maxField))
		}
		ev.Policies = ps
	}
	return ev
}

// SortedAttributeKeys returns the keys of m in order (stable payloads).
func SortedAttributeKeys(m map[string]string) []string { return sortedKeys(m) }

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }

// SanitizeLine makes s safe for one line of a log or error message
// (internal/escape, log context): control characters become their Unicode
// "control picture" (␀, ␍, ␊ …), C1, zero-width and bidi controls and
// invalid UTF-8 become U+FFFD, the pipeline's own secrets and URL
// credentials are masked (internal/redact), and the result is cut to max
// bytes. Dead letters and the router's logs carry errors through it.
func SanitizeLine(s string, max int) string {
	return Truncate(escape.String(escape.Log, redact.String(s)), max)
}
