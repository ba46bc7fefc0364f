package detect

import (
	"fmt"
	"strings"

	"auditwatch/schema"
)

// enumeration raises a low-severity finding when one principal lists, or
// reads the metadata of, at least threshold distinct paths within the
// window: reconnaissance of what secrets exist. Lists and metadata reads
// are not secret access (first_time_access ignores them); this is where
// they count. One finding per burst, updated when the count doubles.
type enumeration struct {
	e       *Engine
	cfg     *SecretEnumerationConfig
	t       *table[enumState]
	h       hasher
	actions *globMemo
}

type enumState struct {
	Seen []seenRes `json:"s,omitempty"`
	B    burst     `json:"b"`
}

func newEnumeration(e *Engine) *enumeration {
	cfg := &e.cfg.SecretEnumeration
	return &enumeration{e: e, cfg: cfg, h: e.newHasher(), actions: newGlobMemo(cfg.Actions),
		t: newTable(schema.DetectorSecretEnumeration, cfg.MaxPrincipals, e.cfg.MaxSpill, e.st, codec[enumState](jsonCodec[enumState]{}), e.log, e.m).
			expire(max(cfg.Window, cfg.Cooldown).D(), func(v *enumState) int64 {
				last := v.B.Last
				for _, s := range v.Seen {
					last = max(last, s.T)
				}
				return last
			})}
}

func (d *enumeration) tables() []tableStats { return []tableStats{d.t} }

// enumerates reports whether ev lists or reads metadata, and what.
func (d *enumeration) enumerates(ev *schema.Event) (string, bool) {
	switch ev.Source {
	case schema.SourceVault:
		switch ev.Action {
		case "vault:list":
			return strings.TrimSuffix(ev.Resource, "/"), true
		case "vault:read":
			if _, typ, rest := d.e.scope.vaultMount(ev); typ == "kv" && strings.HasPrefix(rest, "metadata/") {
				return ev.Resource, true
			}
		}
	case schema.SourceCloudTrail:
		if ev.Resource != "" && d.actions.match(ev.Action) {
			return CanonicalResource(ev), true
		}
	}
	return "", false
}

func (d *enumeration) process(ev *schema.Event, c *evalCtx, out []schema.Finding) []schema.Finding {
	if !c.hasPrincipal || ServiceInvoked(ev) {
		return out
	}
	what, ok := d.enumerates(ev)
	if !ok {
		return out
	}
	t := ev.Time.UnixNano()
	win := d.cfg.Window.D().Nanoseconds()
	n, _ := d.t.get(c.principalKey(ev), true)
	d.t.touch(n)
	s := &n.v
	k := d.h.sum("enum", what)
	kept := s.Seen[:0]
	found := false
	for _, x := range s.Seen {
		if t-x.T > win+d.e.maxLate {
			continue
		}
		if x.K == k {
			found, x.T = true, max(x.T, t)
		}
		kept = append(kept, x)
	}
	s.Seen = kept
	if !found {
		if len(s.Seen) >= d.cfg.MaxTracked {
			s.Seen = append(s.Seen[:0], s.Seen[1:]...)
		}
		s.Seen = append(s.Seen, seenRes{K: k, T: t})
	}
	distinct, first := windowDistinct(s.Seen, t, win)
	if c.history || found || distinct < d.cfg.Threshold {
		return out
	}
	max := d.e.cfg.MaxEvidence
	b := &s.B
	if b.open(t, d.cfg.Cooldown.D()) {
		b.Count++
		b.extend(t)
		b.addID(ev.ID, max)
		b.addItem(what, max)
		if b.Count < 2*b.Reported {
			return out
		}
		b.Rev++
	} else {
		*b = burst{Key: schema.MakeID(schema.DetectorSecretEnumeration, ev.Principal, ev.ID), Count: distinct, First: min(first, t), Last: t}
		b.addID(ev.ID, max)
		b.addItem(what, max)
	}
	b.Reported = b.Count
	f := d.e.finding(schema.DetectorSecretEnumeration, d.cfg.Severity, ev, c)
	b.fill(&f, schema.DetectorSecretEnumeration, ev.ID)
	f.Summary = fmt.Sprintf("%s listed or read the metadata of %d distinct paths within %s", nameOf(ev), b.Count, d.cfg.Window.D())
	f.Reason = fmt.Sprintf("%d distinct paths listed or described within %s reached the threshold %d (latest %s); lists and metadata reads show what secrets exist",
		distinct, d.cfg.Window.D(), d.cfg.Threshold, clip(what))
	f.Attributes["in_window"] = fmt.Sprint(distinct)
	return append(out, f)
}
