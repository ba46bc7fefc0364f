package detect

import (
	"fmt"
	"path"
	"strings"

	"auditwatch/internal/resname"
	"auditwatch/schema"
)

// DetectorHoneytoken is the name of the honeytoken detector.
const DetectorHoneytoken = schema.DetectorHoneytoken

// HoneytokenConfig declares decoy secrets nobody legitimate ever touches:
// any access, list or failed attempt on one is a critical finding at
// once, with no learning period and the full request context.
type HoneytokenConfig struct {
	Enabled  *bool           `yaml:"enabled"`
	Severity schema.Severity `yaml:"severity"`
	// VaultPaths are Vault/OpenBao paths (globs allowed: *, and a
	// trailing /* for everything below); a KV v2 path matches however it
	// is addressed (data/, metadata/, delete/…).
	VaultPaths []string `yaml:"vault_paths"`
	// SecretsManager are secret names or ARNs.
	SecretsManager []string `yaml:"secrets_manager"`
	// KMSKeys are key ids, key ARNs or aliases (alias/name).
	KMSKeys []string `yaml:"kms_keys"`
	// AccessKeyIDs are IAM access key ids planted as bait (in code
	// repositories, CI variables): any call signed with one matches.
	AccessKeyIDs []string `yaml:"access_key_ids"`
}

func (h *HoneytokenConfig) defaults() {
	if h.Enabled == nil {
		h.Enabled = boolp(true)
	}
	if h.Severity == "" {
		h.Severity = schema.SeverityCritical
	}
}

func (h *HoneytokenConfig) validate(bad func(field, format string, args ...any)) {
	severityOK(bad, "honeytoken.severity", h.Severity)
	for i, p := range h.VaultPaths {
		if _, err := path.Match(strings.TrimPrefix(p, "/"), ""); err != nil || strings.TrimSpace(p) == "" {
			bad(fmt.Sprintf("honeytoken.vault_paths[%d]", i), "not a path or glob: %q", p)
		}
	}
	for i, k := range h.AccessKeyIDs {
		if len(k) < 16 || len(k) > 128 || strings.ContainsAny(k, " /*") {
			bad(fmt.Sprintf("honeytoken.access_key_ids[%d]", i), "not an access key id: %q", k)
		}
	}
	for _, l := range []struct {
		name string
		v    []string
	}{{"secrets_manager", h.SecretsManager}, {"kms_keys", h.KMSKeys}} {
		for i, s := range l.v {
			if strings.TrimSpace(s) == "" {
				bad(fmt.Sprintf("honeytoken.%s[%d]", l.name, i), "empty")
			}
		}
	}
}

// any reports whether a decoy is declared.
func (h *HoneytokenConfig) any() bool {
	return len(h.VaultPaths)+len(h.SecretsManager)+len(h.KMSKeys)+len(h.AccessKeyIDs) > 0
}

// honeytoken matches events against the declared decoys. It keeps no
// state: every matching event is its own finding (its id is the
// finding's), decided on arrival.
type honeytoken struct {
	e     *Engine
	cfg   *HoneytokenConfig
	vault []string          // canonical Vault paths or globs
	aws   map[string]string // canonical Secrets Manager name / KMS key id or alias -> as declared
	keys  map[string]bool
}

func newHoneytoken(e *Engine) *honeytoken {
	cfg := &e.cfg.Honeytoken
	d := &honeytoken{e: e, cfg: cfg, aws: map[string]string{}, keys: map[string]bool{}}
	for _, p := range cfg.VaultPaths {
		d.vault = append(d.vault, resname.Name(&schema.Event{Source: schema.SourceVault, Resource: p}))
	}
	for _, s := range cfg.SecretsManager {
		d.aws["secretsmanager|"+resname.Name(&schema.Event{Source: schema.SourceCloudTrail, Resource: s})] = s
	}
	for _, k := range cfg.KMSKeys {
		d.aws["kms|"+resname.Name(&schema.Event{Source: schema.SourceCloudTrail, Resource: k})] = k
	}
	for _, k := range cfg.AccessKeyIDs {
		d.keys[k] = true
	}
	return d
}

func (d *honeytoken) tables() []tableStats { return nil }

// match returns the decoy an event touches and how.
func (d *honeytoken) match(ev *schema.Event) (decoy, how string) {
	if ev.AccessKey != "" && d.keys[ev.AccessKey] {
		return ev.AccessKey, "access_key_id"
	}
	switch ev.Source {
	case schema.SourceVault:
		if len(d.vault) == 0 || ev.Resource == "" {
			return "", ""
		}
		name := resname.Name(ev)
		for i, p := range d.vault {
			if p == name || globPath(p, name) {
				return d.cfg.VaultPaths[i], "vault_path"
			}
		}
	case schema.SourceCloudTrail:
		if len(d.aws) == 0 || ev.Resource == "" {
			return "", ""
		}
		svc, _, _ := strings.Cut(ev.Action, ":")
		if svc != "secretsmanager" && svc != "kms" {
			return "", ""
		}
		if decl, ok := d.aws[svc+"|"+resname.Name(ev)]; ok {
			return decl, svc
		}
	}
	return "", ""
}

// globPath matches a path glob; a trailing "/*" also matches everything
// below the prefix.
func globPath(glob, name string) bool {
	if ok, _ := path.Match(glob, name); ok {
		return true
	}
	if pre, ok := strings.CutSuffix(glob, "/*"); ok {
		return strings.HasPrefix(name, pre+"/")
	}
	return false
}

func (d *honeytoken) process(ev *schema.Event, c *evalCtx, out []schema.Finding) []schema.Finding {
	decoy, how := d.match(ev)
	if decoy == "" {
		return out
	}
	// No learning and no history exemption: a decoy is never touched
	// legitimately, so even a replayed touch is reported.
	f := d.e.finding(DetectorHoneytoken, d.cfg.Severity, ev, c)
	f.ID = schema.MakeID(DetectorHoneytoken, decoy, ev.ID)
	f.DedupeKey = f.ID
	verb := "touched"
	if ev.Outcome == schema.OutcomeFailure {
		verb = "tried to touch"
	}
	f.Summary = fmt.Sprintf("%s %s honeytoken %s: %s", nameOf(ev), verb, clip(decoy), actionOf(ev))
	f.Reason = "decoy declared in detectors.honeytoken: nothing legitimate uses it, so any access, list or attempt is an intrusion signal"
	a := f.Attributes
	a["honeytoken"] = clip(decoy)
	a["matched_as"] = how
	for k, v := range map[string]string{
		"resource": ev.Resource, "outcome": ev.Outcome, "error": ev.Error, "failure_kind": ev.FailureKind,
		"user_agent": ev.UserAgent, "access_key": ev.AccessKey, "token_hmac": ev.TokenHMAC, "session": ev.Session,
		"mount": ev.Mount, "namespace": ev.Namespace, "region": ev.Region,
		"policies": strings.Join(ev.Policies, ","), "source_ip_raw": ev.SourceIPRaw,
	} {
		if v != "" {
			a[k] = clip(v)
		}
	}
	return append(out, f)
}
