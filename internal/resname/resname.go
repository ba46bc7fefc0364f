// Package resname owns how a secret is named: the one canonical name of a
// resource however a log or a person writes it. Detectors key their state
// by Key; the store keeps Name beside the raw resource and runbook queries
// match every name Candidates derives from what a person typed. It imports
// only schema.
package resname

import (
	"strings"

	"auditwatch/schema"
)

// Key names a resource the same way however the log names it, keeping the
// account and region of a Secrets Manager secret (detector state):
//
//   - Secrets Manager: a secret referenced by name, by partial ARN or by
//     full ARN (name plus "-" and AWS's 6-character random suffix) becomes
//     "arn:aws:secretsmanager:<region>:<account>:secret:<name>". A full ARN
//     is recognised by its suffix; a secret whose own name ends in
//     "-XXXXXX" and is referenced by partial ARN is therefore ambiguous (AWS
//     documents the same ambiguity) and loses that ending.
//   - Vault KV v2: secret/data/x, secret/metadata/x and secret/metadata/x/
//     (LIST), and the delete/undelete/destroy/subkeys variants, become
//     "<namespace>/<mount>x"; other Vault paths lose a trailing slash.
//   - Anything else is returned as logged.
func Key(ev *schema.Event) string {
	switch ev.Source {
	case schema.SourceCloudTrail:
		return keyAWS(ev)
	case schema.SourceVault:
		return vaultPath(ev)
	}
	return ev.Resource
}

// Name is the name a person uses for the resource, stored beside the raw
// one (events.resource_name): the Vault logical path
// ("secret/payments/db" for secret/data/payments/db and
// secret/metadata/payments/db), the Secrets Manager secret name (from an
// ARN, without the random suffix), the KMS key id (from a key ARN) or
// alias ("alias/x", from an alias ARN); anything else as logged.
func Name(ev *schema.Event) string {
	switch ev.Source {
	case schema.SourceVault:
		return vaultPath(ev)
	case schema.SourceCloudTrail:
		if n, ok := arnName(ev.Resource); ok {
			return n
		}
	}
	return ev.Resource
}

// MaxCandidates bounds Candidates.
const MaxCandidates = 4

// Candidates returns the names (as Name stores them) that s, typed by a
// person, can mean: s itself; a Vault path without its KV v2 "data/" or
// "metadata/" (…) segment; the secret name, key id or alias inside an ARN,
// with and without what looks like Secrets Manager's random suffix. At
// most MaxCandidates, s first.
func Candidates(s string) []string {
	s = strings.TrimSpace(s)
	out := []string{s}
	add := func(x string) {
		if x == "" || len(out) >= MaxCandidates {
			return
		}
		for _, o := range out {
			if o == x {
				return
			}
		}
		out = append(out, x)
	}
	if strings.HasPrefix(s, "arn:") {
		if n, ok := arnName(s); ok {
			add(n)
			if i := strings.Index(s, ":secret:"); i >= 0 {
				add(s[i+len(":secret:"):]) // a partial ARN of a name that ends like a suffix
			}
		}
		return out
	}
	p := strings.Trim(s, "/")
	add(p)
	parts := strings.Split(p, "/")
	for j := 1; j < len(parts) && j < 4; j++ {
		for _, pre := range kv2Prefixes {
			if parts[j]+"/" == pre {
				add(strings.Join(append(append([]string{}, parts[:j]...), parts[j+1:]...), "/"))
			}
		}
	}
	return out
}

// arnName returns the name inside a Secrets Manager or KMS ARN.
func arnName(r string) (string, bool) {
	if !strings.HasPrefix(r, "arn:") {
		return "", false
	}
	f := strings.SplitN(r, ":", 6)
	if len(f) < 6 {
		return "", false
	}
	switch f[2] {
	case "secretsmanager":
		if n, ok := strings.CutPrefix(f[5], "secret:"); ok && n != "" {
			return StripSecretSuffix(n), true
		}
	case "kms":
		if id, ok := strings.CutPrefix(f[5], "key/"); ok && id != "" {
			return id, true
		}
		if strings.HasPrefix(f[5], "alias/") {
			return f[5], true
		}
	}
	return "", false
}

func keyAWS(ev *schema.Event) string {
	r := ev.Resource
	if !strings.HasPrefix(ev.Action, "secretsmanager:") {
		return r
	}
	if r == "" {
		// BatchGetSecretValue by filter and ListSecrets name no secret.
		return ""
	}
	const marker = ":secret:"
	if strings.HasPrefix(r, "arn:") {
		i := strings.Index(r, marker)
		if i < 0 {
			return r
		}
		name := StripSecretSuffix(r[i+len(marker):])
		return r[:i+len(marker)] + name
	}
	partition := "aws"
	return "arn:" + partition + ":secretsmanager:" + ev.Region + ":" + ev.Account + marker + r
}

// StripSecretSuffix removes "-" plus 6 alphanumerics that Secrets Manager
// appends to a secret's name in its full ARN.
func StripSecretSuffix(name string) string {
	if len(name) < 8 || name[len(name)-7] != '-' {
		return name
	}
	for i := len(name) - 6; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return name
		}
	}
	return name[:len(name)-7]
}

var kv2Prefixes = []string{"data/", "metadata/", "delete/", "undelete/", "destroy/", "subkeys/"}

// vaultPath is the logical path of a Vault request: the KV v2 API segment
// removed, no trailing slash, prefixed by a non-root namespace.
func vaultPath(ev *schema.Event) string {
	p := strings.TrimPrefix(ev.Resource, "/")
	mount := ev.Mount
	if mount != "" && !strings.HasSuffix(mount, "/") {
		mount += "/"
	}
	if mount == "" || !strings.HasPrefix(p, mount) {
		if i := strings.IndexByte(p, '/'); i >= 0 {
			mount = p[:i+1]
		} else {
			mount = ""
		}
	}
	rest := p[len(mount):]
	if ev.MountType == "kv" || ev.MountType == "" {
		for _, pre := range kv2Prefixes {
			if strings.HasPrefix(rest, pre) {
				rest = rest[len(pre):]
				break
			}
			if rest+"/" == pre {
				rest = ""
				break
			}
		}
	}
	rest = strings.TrimSuffix(rest, "/")
	out := mount + rest
	if ns := strings.Trim(ev.Namespace, "/"); ns != "" && ns != "root" {
		out = ns + "/" + out
	}
	return out
}
