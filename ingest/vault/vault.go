// Package vault owns the normalization of HashiCorp Vault and OpenBao
// audit-device entries (file, socket and syslog devices, every version
// from 0.1 on, KMIP entries included) into schema.Event, and the pairing of
// a request entry with its response entry into one event per client
// request.
package vault

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"time"

	"github.com/valyala/fastjson"

	"auditwatch/ingest/ipaddr"
	"auditwatch/schema"
)

// Errors for entries that are not Vault audit entries.
var (
	ErrNotEntry = errors.New("not a Vault audit entry")
	ErrBadTime  = errors.New("bad time")
)

// Entry types.
const (
	TypeRequest      = "request"
	TypeResponse     = "response"
	TypeKMIPRequest  = "kmip-request"
	TypeKMIPResponse = "kmip-response"
)

// IsEntry reports whether v looks like a Vault audit entry: an object
// with a known "type" and a "request" object.
func IsEntry(v *fastjson.Value) bool {
	switch string(v.GetStringBytes("type")) {
	case TypeRequest, TypeResponse, TypeKMIPRequest, TypeKMIPResponse:
		return v.Get("request") != nil
	}
	return false
}

// Entry is one parsed audit entry.
type Entry struct {
	Event    schema.Event
	Response bool // a response (or kmip-response) entry
	KMIP     bool
	// HasID is false when the entry carries no request.id (Vault 0.x,
	// KMIP, operation "help"); Event.ID is then a content hash.
	HasID bool
}

// str returns the string at keys, "" when absent or not a string.
func str(v *fastjson.Value, keys ...string) string {
	return string(v.GetStringBytes(keys...))
}

// Parse normalizes one entry. now is used as the event time when the entry
// has none (Vault 0.1 wrote no time).
func Parse(v *fastjson.Value, now func() time.Time) (Entry, error) {
	var en Entry
	typ := string(v.GetStringBytes("type"))
	switch typ {
	case TypeRequest:
	case TypeResponse:
		en.Response = true
	case TypeKMIPRequest:
		en.KMIP = true
	case TypeKMIPResponse:
		en.KMIP, en.Response = true, true
	default:
		return en, ErrNotEntry
	}
	req := v.Get("request")
	if req == nil || req.Type() != fastjson.TypeObject {
		return en, ErrNotEntry
	}
	ev := &en.Event
	ev.Source = schema.SourceVault

	if tb := v.GetStringBytes("time"); len(tb) > 0 {
		t, err := time.Parse(time.RFC3339Nano, string(tb))
		if err != nil {
			return en, ErrBadTime
		}
		ev.Time = t.UTC()
	} else {
		ev.Time = now().UTC()
	}

	ev.ID = str(req, "id")
	en.HasID = ev.ID != ""
	if !en.HasID {
		// request and response entries share the request object: hash it
		// so both halves of a pair get the same deterministic id
		h := sha256.Sum256(req.MarshalTo(nil))
		ev.ID = "vault-" + hex.EncodeToString(h[:12])
	}

	path := str(req, "path")
	op := str(req, "operation")
	ev.Resource = path
	ev.Mount = str(req, "mount_point")
	ev.MountType = str(req, "mount_type")
	if ev.MountType == "" {
		ev.MountType = str(v, "response", "mount_type")
	}
	if ev.Mount == "" && path != "" {
		ev.Mount = mountOf(path)
	}
	if ns := str(req, "namespace", "path"); ns != "" {
		ev.Namespace = strings.TrimSuffix(ns, "/")
	} else {
		ev.Namespace = str(req, "namespace", "id")
	}
	ev.SourceIPRaw = str(req, "remote_address")
	ev.SourceIP, _ = ipaddr.Canonical(ev.SourceIPRaw)
	if ua := req.Get("headers", "user-agent"); ua != nil {
		if ua.Type() == fastjson.TypeArray {
			if a, _ := ua.Array(); len(a) > 0 {
				ev.UserAgent = string(a[0].GetStringBytes())
			}
		} else {
			ev.UserAgent = string(ua.GetStringBytes())
		}
	}
	ev.TokenHMAC = str(req, "client_token")

	if en.KMIP {
		parseKMIP(v, req, ev)
		return en, nil
	}

	if op == "" {
		op = "unknown"
	}
	ev.Action = "vault:" + op
	ev.ReadOnly = op == "read" || op == "list"
	ev.Auth = isLogin(path)

	// identity
	auth := v.Get("auth")
	setIdentity(ev, auth, req)
	if ev.Auth {
		ev.AuthMethod = ev.MountType
		if ev.AuthMethod == "" || ev.AuthMethod == "ns_token" {
			ev.AuthMethod = loginMethod(path)
		}
		if ra := v.Get("response", "auth"); ra != nil && ra.Type() == fastjson.TypeObject && hasIdentity(ra) {
			setIdentity(ev, ra, nil)
			if tok := str(ra, "client_token"); tok != "" {
				ev.TokenHMAC = tok
			}
		} else if ev.PrincipalType == schema.PrincipalTypeAnonymous {
			// a failed (or not yet answered) login: keep the user it
			// claimed
			ev.PrincipalName = loginUser(path)
		}
	}

	// outcome
	errText := str(v, "error")
	dataErr := ""
	if de := v.Get("response", "data", "error"); de != nil {
		if de.Type() == fastjson.TypeString {
			dataErr = string(de.GetStringBytes())
		} else if de.Type() != fastjson.TypeNull {
			dataErr = string(de.MarshalTo(nil))
		}
	}
	if errText != "" || dataErr != "" {
		ev.Outcome = schema.OutcomeFailure
		if errText != "" {
			ev.Error = CleanError(errText)
		} else {
			ev.Error = dataErr
		}
		ev.FailureKind = failureKind(ev, errText, dataErr, auth)
	} else {
		ev.Outcome = schema.OutcomeSuccess
	}
	return en, nil
}

func hasIdentity(a *fastjson.Value) bool {
	if a == nil {
		return false
	}
	if len(a.GetStringBytes("entity_id")) > 0 || len(a.GetStringBytes("display_name")) > 0 ||
		len(a.GetStringBytes("accessor")) > 0 || len(a.GetStringBytes("client_token")) > 0 {
		return true
	}
	if p := a.GetArray("policies"); len(p) > 0 {
		return true
	}
	return false
}

// setIdentity fills the principal fields from an auth block.
func setIdentity(ev *schema.Event, a, req *fastjson.Value) {
	if !hasIdentity(a) {
		ev.Principal = ""
		ev.PrincipalName = ""
		ev.PrincipalType = schema.PrincipalTypeAnonymous
		ev.Policies = nil
		return
	}
	entity := str(a, "entity_id")
	display := str(a, "display_name")
	accessor := str(a, "accessor")
	if accessor == "" && req != nil {
		accessor = str(req, "client_token_accessor")
	}
	switch {
	case entity != "":
		ev.Principal = entity
		ev.PrincipalType = "entity"
	case display != "":
		ev.Principal = display
		ev.PrincipalType = "token"
	case accessor != "":
		ev.Principal = accessor
		ev.PrincipalType = "token"
	default:
		ev.Principal = ""
		ev.PrincipalType = "token"
	}
	ev.PrincipalName = str(a, "metadata", "username")
	if ev.PrincipalName == "" {
		ev.PrincipalName = str(a, "metadata", "role_name")
	}
	if ev.PrincipalName == "" {
		ev.PrincipalName = display
	}
	pol := a.GetArray("policies")
	if len(pol) == 0 {
		pol = a.GetArray("token_policies")
	}
	ev.Policies = ev.Policies[:0]
	for _, p := range pol {
		if s := p.GetStringBytes(); s != nil {
			ev.Policies = append(ev.Policies, string(s))
		}
	}
	if len(ev.Policies) == 0 {
		ev.Policies = nil
	}
}

// isLogin reports whether path is an authentication attempt:
// auth/<mount...>/login[/<user>] or an OIDC/JWT callback.
func isLogin(path string) bool {
	if !strings.HasPrefix(path, "auth/") {
		return false
	}
	rest := path[len("auth/"):]
	segs := strings.Split(rest, "/")
	for i := 1; i < len(segs); i++ {
		if segs[i] == "login" {
			return true
		}
		if segs[i] == "callback" && i >= 2 && segs[i-1] == "oidc" {
			return true
		}
	}
	return false
}

// loginMethod is the mount name of a login path (auth/<name>/login...).
func loginMethod(path string) string {
	rest := strings.TrimPrefix(path, "auth/")
	if i := strings.IndexByte(rest, '/'); i > 0 {
		return rest[:i]
	}
	return rest
}

// loginUser is the user a login path names (auth/userpass/login/<user>,
// also ldap, okta, radius), or "".
func loginUser(path string) string {
	i := strings.Index(path, "/login/")
	if i < 0 {
		return ""
	}
	return path[i+len("/login/"):]
}

// mountOf guesses the mount of a path when the entry does not say (Vault
// before 1.13): the first segment, or auth/<name>/ for auth paths.
func mountOf(path string) string {
	if strings.HasPrefix(path, "auth/") {
		rest := path[len("auth/"):]
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			return "auth/" + rest[:i+1]
		}
		return path
	}
	if i := strings.IndexByte(path, '/'); i >= 0 {
		return path[:i+1]
	}
	return path
}

// CleanError turns Vault's multierror text ("1 error occurred:\n\t*
// permission denied\n\n") into its messages joined by "; ".
func CleanError(s string) string {
	if !strings.Contains(s, "error") || !strings.Contains(s, "occurred:") {
		return strings.TrimSpace(s)
	}
	_, rest, ok := strings.Cut(s, "occurred:")
	if !ok {
		return strings.TrimSpace(s)
	}
	var msgs []string
	for _, l := range strings.Split(rest, "\n") {
		l = strings.TrimSpace(l)
		l = strings.TrimSpace(strings.TrimPrefix(l, "*"))
		if l != "" {
			msgs = append(msgs, l)
		}
	}
	if len(msgs) == 0 {
		return strings.TrimSpace(s)
	}
	return strings.Join(msgs, "; ")
}

func failureKind(ev *schema.Event, errText, dataErr string, auth *fastjson.Value) string {
	e := strings.ToLower(errText)
	switch {
	case strings.Contains(e, "locked"):
		return schema.FailureLockedOut
	case strings.Contains(e, "rate limit") || strings.Contains(e, "too many requests"):
		return schema.FailureThrottled
	}
	if ev.Auth {
		switch {
		case errText == "" && dataErr != "":
			// OpenBao: unknown user, only response.data.error set
			return schema.FailureInvalidCredentials
		case strings.Contains(e, "invalid credentials") || strings.Contains(e, "invalid username or password") ||
			strings.Contains(e, "invalid role") || strings.Contains(e, "invalid secret") || strings.Contains(e, "mfa"):
			return schema.FailureInvalidCredentials
		case strings.Contains(e, "permission denied"):
			// a login path is open to everyone: a refusal there is the
			// user lockout
			return schema.FailureLockedOut
		}
		return schema.FailureInvalidCredentials
	}
	switch {
	case strings.Contains(e, "invalid token") || strings.Contains(e, "bad token") || strings.Contains(e, "token not found"):
		return schema.FailureInvalidToken
	case strings.Contains(e, "permission denied"):
		if !hasIdentity(auth) && len(auth.GetStringBytes("entity_id")) == 0 {
			return schema.FailureInvalidToken
		}
		return schema.FailurePermissionDenied
	case strings.Contains(e, "no handler for route") || strings.Contains(e, "unsupported path") || strings.Contains(e, "not found"):
		return schema.FailureNotFound
	case e == "" && dataErr != "":
		return schema.FailureOther
	}
	return schema.FailureOther
}
