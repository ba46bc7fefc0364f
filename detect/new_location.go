package detect

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"auditwatch/schema"
)

// newLocation raises a finding when a principal, past its learning
// period, acts from a country it was never seen in, or from an autonomous
// system it never used (within a country it has used). It needs the
// network context the geo: section adds to events (Country, ASN); calls an
// AWS service made on a principal's behalf and addresses without a place
// (private, loopback) never count.
type newLocation struct {
	e   *Engine
	cfg *NewLocationConfig
	t   *table[locState]
}

type locState struct {
	Countries []seenAt `json:"c,omitempty"`
	ASNs      []seenAt `json:"a,omitempty"`
}

// seenAt is a country code or an AS number (as text) and its last use.
type seenAt struct {
	K    string `json:"k"`
	Last int64  `json:"l"`
}

func newNewLocation(e *Engine) *newLocation {
	cfg := &e.cfg.NewLocation
	return &newLocation{e: e, cfg: cfg,
		t: newTable(schema.DetectorNewLocation, cfg.MaxPrincipals, e.cfg.MaxSpill, e.st, codec[locState](jsonCodec[locState]{}), e.log, e.m).
			expire(cfg.ForgetAfter.D(), func(v *locState) int64 {
				var last int64
				for _, s := range v.Countries {
					last = max(last, s.Last)
				}
				for _, s := range v.ASNs {
					last = max(last, s.Last)
				}
				return last
			})}
}

func (d *newLocation) tables() []tableStats { return []tableStats{d.t} }

// remember marks k used at t in list; new reports whether it was unknown
// (or forgotten). The list keeps the most recent max entries.
func (d *newLocation) remember(list *[]seenAt, k string, t int64) (isNew, changed bool) {
	forget := d.cfg.ForgetAfter.D().Nanoseconds()
	for i := range *list {
		s := &(*list)[i]
		if s.K != k {
			continue
		}
		stale := t-s.Last > forget
		if t > s.Last {
			changed = t-s.Last > int64(time.Minute)
			s.Last = t
		}
		return stale, changed || stale
	}
	if len(*list) >= d.cfg.MaxPerPrincipal {
		oldest := 0
		for i, s := range *list {
			if s.Last < (*list)[oldest].Last {
				oldest = i
			}
		}
		*list = append((*list)[:oldest], (*list)[oldest+1:]...)
	}
	*list = append(*list, seenAt{K: k, Last: t})
	return true, true
}

func (d *newLocation) process(ev *schema.Event, c *evalCtx, out []schema.Finding) []schema.Finding {
	if (ev.Country == "" && ev.ASN == 0) || ev.SourceIsService || ServiceInvoked(ev) || !c.hasPrincipal {
		return out
	}
	t := ev.Time.UnixNano()
	n, _ := d.t.get(c.principalKey(ev), true)
	s := &n.v
	priorC, priorA := len(s.Countries), len(s.ASNs)
	var newC, newA, dirty bool
	if ev.Country != "" {
		var ch bool
		newC, ch = d.remember(&s.Countries, ev.Country, t)
		dirty = dirty || ch
	}
	asn := ""
	if ev.ASN != 0 {
		asn = strconv.Itoa(ev.ASN)
		var ch bool
		newA, ch = d.remember(&s.ASNs, asn, t)
		dirty = dirty || ch
	}
	if dirty {
		d.t.touch(n)
	}
	if c.history || !c.learned(ev.Time, d.cfg.LearningPeriod.D()) {
		return out
	}
	if d.cfg.allowASN[ev.ASN] || d.cfg.allowCC[ev.Country] {
		return out // the company's own egress (VPN, cloud NAT) and countries
	}
	var what, key string
	switch {
	case newC && on(d.cfg.Countries) && priorC > 0:
		what, key = "country "+ev.Country, "country:"+ev.Country
	case newA && !newC && on(d.cfg.ASNs) && priorA > 0:
		what, key = "AS"+asn, "asn:"+asn
		if ev.ASOrg != "" {
			what += " " + clip(ev.ASOrg)
		}
	default:
		return out
	}
	var known []string
	list := s.Countries
	if strings.HasPrefix(key, "asn:") {
		list = s.ASNs
	}
	for _, k := range list {
		if k.K == ev.Country || k.K == asn {
			continue
		}
		if len(known) == 5 {
			known = append(known, "…")
			break
		}
		if strings.HasPrefix(key, "asn:") {
			known = append(known, "AS"+k.K)
		} else {
			known = append(known, k.K)
		}
	}
	f := d.e.finding(schema.DetectorNewLocation, d.cfg.Severity, ev, c)
	f.DedupeKey = schema.MakeID(schema.DetectorNewLocation, ev.Principal, key)
	f.ID = schema.MakeID(schema.DetectorNewLocation, ev.Principal, key, ev.ID)
	f.Summary = fmt.Sprintf("%s used %s from %s%s: first use of %s", nameOf(ev), actionOf(ev), ev.SourceIP, ev.Where(), what)
	f.Reason = fmt.Sprintf("%s is not among the places this principal was seen in since %s (%s), and no allowlist covers it",
		what, c.first.UTC().Format(time.RFC3339), strings.Join(known, ", "))
	return append(out, f)
}
