package detect

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"

	"auditwatch/schema"
)

// unexpectedIP raises a finding when a principal, past its learning
// period, uses a network that is neither allowlisted (globally, for the
// principal, a matching principal pattern or one of its Vault policies) nor
// among the networks it was seen using. Calls made by AWS on a principal's
// behalf and events without a client address never count.
type unexpectedIP struct {
	e   *Engine
	cfg *UnexpectedIPConfig
	t   *table[ipState]
	h   hasher
}

type ipState struct {
	Nets []learnedNet `json:"n"`
}

type learnedNet struct {
	P    netip.Prefix `json:"p"`
	Last int64        `json:"l"`
}

func newUnexpectedIP(e *Engine) *unexpectedIP {
	cfg := &e.cfg.UnexpectedIP
	return &unexpectedIP{e: e, cfg: cfg, h: e.newHasher(),
		t: newTable(schema.DetectorUnexpectedIP, cfg.MaxPrincipals, e.cfg.MaxSpill, e.st, codec[ipState](jsonCodec[ipState]{}), e.log, e.m).
			expire(cfg.ForgetAfter.D(), func(v *ipState) int64 {
				var last int64
				for _, n := range v.Nets {
					last = max(last, n.Last)
				}
				return last
			})}
}

func (d *unexpectedIP) tables() []tableStats { return []tableStats{d.t} }

func (d *unexpectedIP) process(ev *schema.Event, c *evalCtx, out []schema.Finding) []schema.Finding {
	if ev.SourceIsService || ServiceInvoked(ev) || ev.SourceIP == "" || !c.hasPrincipal {
		return out
	}
	addr, err := netip.ParseAddr(ev.SourceIP)
	if err != nil {
		return out
	}
	addr = addr.Unmap().WithZone("")
	bits := d.cfg.IPv4Prefix
	if addr.Is6() {
		bits = d.cfg.IPv6Prefix
	}
	pfx, err := addr.Prefix(bits)
	if err != nil {
		return out
	}
	t := ev.Time.UnixNano()
	forget := d.cfg.ForgetAfter.D().Nanoseconds()
	n, _ := d.t.get(c.principalKey(ev), true)
	s := &n.v
	for i := range s.Nets {
		ln := &s.Nets[i]
		if ln.P != pfx {
			continue
		}
		if t-ln.Last <= forget {
			if t > ln.Last {
				// Refresh at most once a minute: fewer dirty writes.
				if t-ln.Last > int64(time.Minute) {
					d.t.touch(n)
				}
				ln.Last = t
			}
			return out
		}
		// Forgotten: drop it and treat the network as new.
		s.Nets = append(s.Nets[:i], s.Nets[i+1:]...)
		break
	}
	learning := c.history || !c.learned(ev.Time, d.cfg.LearningPeriod.D())
	if !learning && d.allowed(ev, addr) {
		return out
	}
	known := len(s.Nets)
	var seen []string
	for i := 0; i < len(s.Nets) && i < 5; i++ {
		seen = append(seen, s.Nets[len(s.Nets)-1-i].P.String())
	}
	if len(s.Nets) > 5 {
		seen = append(seen, "…")
	}
	// Learned either way: a network is reported once, not on every call.
	d.add(s, learnedNet{P: pfx, Last: t})
	d.t.touch(n)
	if learning {
		return out
	}
	f := d.e.finding(schema.DetectorUnexpectedIP, d.cfg.Severity, ev, c)
	f.DedupeKey = schema.MakeID(schema.DetectorUnexpectedIP, ev.Principal, pfx.String())
	f.ID = schema.MakeID(schema.DetectorUnexpectedIP, ev.Principal, pfx.String(), ev.ID)
	f.Summary = fmt.Sprintf("%s used %s from %s%s, a network it has not used before", nameOf(ev), actionOf(ev), ev.SourceIP, ev.Where())
	f.Reason = fmt.Sprintf("%s%s (network %s) is outside the %d networks seen for this principal in %s of history since %s: %s; no allowlist covers it",
		ev.SourceIP, ev.Where(), pfx, known, historySpan(c.first, ev.Time), c.first.Format(time.RFC3339), strings.Join(seen, ", "))
	if known == 0 {
		f.Reason = fmt.Sprintf("%s%s (network %s): the principal, seen for %s since %s, had no network on record; no allowlist covers it",
			ev.SourceIP, ev.Where(), pfx, historySpan(c.first, ev.Time), c.first.Format(time.RFC3339))
	}
	f.Attributes["network"] = pfx.String()
	f.Attributes["learned_networks"] = fmt.Sprint(known)
	return append(out, f)
}

func (d *unexpectedIP) add(s *ipState, ln learnedNet) {
	if len(s.Nets) >= d.cfg.MaxNetworks {
		oldest := 0
		for i := range s.Nets {
			if s.Nets[i].Last < s.Nets[oldest].Last {
				oldest = i
			}
		}
		s.Nets = append(s.Nets[:oldest], s.Nets[oldest+1:]...)
	}
	s.Nets = append(s.Nets, ln)
}

func (d *unexpectedIP) allowed(ev *schema.Event, addr netip.Addr) bool {
	for i := range d.cfg.Trusted {
		tr := &d.cfg.Trusted[i]
		if (tr.Expires.IsZero() || ev.Time.Before(tr.Expires)) && tr.prefix.Contains(addr) {
			return true
		}
	}
	for i := range d.cfg.Allow {
		a := &d.cfg.Allow[i]
		if !a.Expires.IsZero() && !ev.Time.Before(a.Expires) {
			continue
		}
		if a.Principal != "" && !matchGlob(a.Principal, ev.Principal) && !matchGlob(a.Principal, ev.PrincipalName) {
			continue
		}
		if a.Policy != "" && !contains(ev.Policies, a.Policy) {
			continue
		}
		for _, p := range a.prefixes {
			if p.Contains(addr) {
				return true
			}
		}
	}
	return false
}

// maxText bounds each log-supplied string a finding's text or a state
// entry repeats (resource paths and user names are attacker-controlled).
const maxText = 256

// clip shortens s to maxText bytes at a rune boundary, marking the cut.
func clip(s string) string {
	if len(s) <= maxText {
		return s
	}
	i := maxText
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

func nameOf(ev *schema.Event) string {
	if ev.PrincipalName != "" && ev.PrincipalName != ev.Principal {
		return fmt.Sprintf("%s (%s)", clip(ev.PrincipalName), clip(ev.Principal))
	}
	return clip(ev.Principal)
}

func actionOf(ev *schema.Event) string {
	if ev.Resource != "" {
		return clip(ev.Action) + " on " + clip(ev.Resource)
	}
	return clip(ev.Action)
}

// historySpan says how long a principal has been seen, for reasons.
func historySpan(first, now time.Time) string {
	d := now.Sub(first)
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%d days", int(d/(24*time.Hour)))
	case d >= 2*time.Hour:
		return fmt.Sprintf("%d hours", int(d/time.Hour))
	}
	return d.Round(time.Minute).String()
}
