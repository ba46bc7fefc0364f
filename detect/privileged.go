package detect

import (
	"fmt"
	"strings"

	"auditwatch/schema"
)

// privileged raises a finding for Vault root-token use, AWS root-account
// activity and audit tampering, outside declared maintenance windows. It
// has no learning period (only replay history is silent). Uses of one kind
// by one principal within the cool-down are one incident: the first use
// opens it; an update follows when the count doubles, when a new source
// address appears, and for every tampering call.
type privileged struct {
	e      *Engine
	cfg    *PrivilegedUseConfig
	tamper []tamperRule
	t      *table[privState]
	h      hasher
}

type tamperRule struct {
	action string
	path   string // Vault path glob; empty = any
}

type privState struct {
	B burst `json:"b"`
}

func newPrivileged(e *Engine) *privileged {
	cfg := &e.cfg.PrivilegedUse
	d := &privileged{e: e, cfg: cfg, h: e.newHasher(),
		t: newTable(schema.DetectorPrivilegedUse, cfg.MaxKeys, e.cfg.MaxSpill, e.st, codec[privState](jsonCodec[privState]{}), e.log, e.m).
			expire(cfg.Cooldown.D(), func(v *privState) int64 { return v.B.Last })}
	for _, s := range cfg.TamperActions {
		f := strings.Fields(s)
		r := tamperRule{action: f[0]}
		if len(f) > 1 {
			r.path = f[1]
		}
		d.tamper = append(d.tamper, r)
	}
	return d
}

func (d *privileged) tables() []tableStats { return []tableStats{d.t} }

func (d *privileged) kind(ev *schema.Event) string {
	for _, r := range d.tamper {
		if r.action == ev.Action && (r.path == "" || matchGlob(r.path, strings.TrimPrefix(ev.Resource, "/"))) {
			if auditDeviceTest(ev) {
				return ""
			}
			return "audit_tampering"
		}
	}
	if on(d.cfg.VaultRoot) && ev.Source == schema.SourceVault && contains(ev.Policies, "root") {
		return "vault_root_token"
	}
	if on(d.cfg.AWSRoot) && ev.Source == schema.SourceCloudTrail && ev.PrincipalType == "Root" {
		return "aws_root"
	}
	return ""
}

func (d *privileged) inMaintenance(ev *schema.Event) bool {
	for _, w := range d.cfg.Maintenance {
		if ev.Time.Before(w.Start) || !ev.Time.Before(w.End) {
			continue
		}
		if len(w.Principals) == 0 || globAny(w.Principals, ev.Principal) || globAny(w.Principals, ev.PrincipalName) {
			return true
		}
	}
	return false
}

func (d *privileged) process(ev *schema.Event, c *evalCtx, out []schema.Finding) []schema.Finding {
	kind := d.kind(ev)
	if kind == "" || c.history {
		return out
	}
	if d.inMaintenance(ev) {
		d.e.stats.Suppressed++
		return out
	}
	who := ev.Principal
	if who == "" {
		who = "token:" + ev.TokenHMAC
	}
	t := ev.Time.UnixNano()
	max := d.e.cfg.MaxEvidence
	n, _ := d.t.get(d.h.sum(kind, who), true)
	d.t.touch(n)
	b := &n.v.B
	ip := ev.SourceIP
	if ip == "" {
		ip = clip(ev.SourceIPRaw)
	}
	reason := ""
	if b.open(t, d.cfg.Cooldown.D()) {
		b.Count++
		b.extend(t)
		b.addID(ev.ID, max)
		newIP := b.addItem(ip, max)
		switch {
		case kind == "audit_tampering":
			reason = "another audit-tampering call"
		case newIP:
			reason = "used from another address: " + ip
		case b.Count >= 2*b.Reported:
			reason = fmt.Sprintf("%d uses so far", b.Count)
		default:
			return out
		}
		b.Rev++
		b.Reported = b.Count
	} else {
		*b = burst{Key: schema.MakeID(schema.DetectorPrivilegedUse, kind, who, ev.ID), Count: 1, Reported: 1, First: t, Last: t}
		b.addID(ev.ID, max)
		b.addItem(ip, max)
	}
	sev := d.cfg.Severity
	if kind == "audit_tampering" {
		sev = d.cfg.TamperSeverity
	}
	f := d.e.finding(schema.DetectorPrivilegedUse, sev, ev, c)
	b.fill(&f, schema.DetectorPrivilegedUse, ev.ID)
	switch kind {
	case "audit_tampering":
		f.Summary = fmt.Sprintf("%s changed audit logging: %s", nameOf(ev), actionOf(ev))
		f.Reason = "audit tampering is always alerted outside a declared maintenance window"
	case "vault_root_token":
		f.Summary = fmt.Sprintf("Vault root token used from %s: %s", ip, actionOf(ev))
		f.Reason = "root-token use is always alerted outside a declared maintenance window"
	case "aws_root":
		f.Summary = fmt.Sprintf("AWS root account of %s used from %s: %s", clip(ev.Account), ip, actionOf(ev))
		f.Reason = "root-account activity is always alerted outside a declared maintenance window"
	}
	if reason != "" {
		f.Reason += "; " + reason
	}
	f.Attributes["kind"] = kind
	return append(out, f)
}

// auditDeviceTest reports whether ev is the test entry Vault and OpenBao
// write to a new audit device when it is enabled: a lone request to
// sys/audit/<path> with no client token, no remote address, no identity
// and no response (so no status and no error). Any API call that enables,
// changes or disables an audit device carries a token and an address, so
// it still pages, whatever the device's path.
func auditDeviceTest(ev *schema.Event) bool {
	return ev.Source == schema.SourceVault && ev.Action == "vault:update" &&
		strings.HasPrefix(strings.TrimPrefix(ev.Resource, "/"), "sys/audit/") &&
		ev.TokenHMAC == "" && ev.SourceIPRaw == "" && ev.SourceIP == "" && ev.Principal == "" &&
		len(ev.Policies) == 0 && ev.HTTPStatus == 0 && ev.Error == "" && !ev.Failed()
}
