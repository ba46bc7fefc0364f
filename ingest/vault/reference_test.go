package vault

// The parser as first written, straightforward fastjson lookups, kept as
// the reference the optimized Parser is checked against.

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"

	"github.com/valyala/fastjson"

	"auditwatch/ingest/ipaddr"
	"auditwatch/schema"
)

// str returns the string at keys, "" when absent or not a string.
func refStr(v *fastjson.Value, keys ...string) string {
	return string(v.GetStringBytes(keys...))
}

// Parse normalizes one entry. now is used as the event time when the entry
// has none (Vault 0.1 wrote no time).
func refParse(v *fastjson.Value, now func() time.Time) (Entry, error) {
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

	ev.ID = refStr(req, "id")
	en.HasID = ev.ID != ""
	if !en.HasID {
		// request and response entries share the request object: hash it
		// so both halves of a pair get the same deterministic id
		h := sha256.Sum256(req.MarshalTo(nil))
		ev.ID = "vault-" + hex.EncodeToString(h[:12])
	}

	path := refStr(req, "path")
	op := refStr(req, "operation")
	ev.Resource = path
	ev.Mount = refStr(req, "mount_point")
	ev.MountType = refStr(req, "mount_type")
	if ev.MountType == "" {
		ev.MountType = refStr(v, "response", "mount_type")
	}
	if ev.Mount == "" && path != "" {
		ev.Mount = mountOf(path)
	}
	if ns := refStr(req, "namespace", "path"); ns != "" {
		ev.Namespace = strings.TrimSuffix(ns, "/")
	} else {
		ev.Namespace = refStr(req, "namespace", "id")
	}
	ev.SourceIPRaw = refStr(req, "remote_address")
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
	ev.TokenHMAC = refStr(req, "client_token")
	ev.TokenAccessor = refStr(req, "client_token_accessor")
	if ev.TokenAccessor == "" {
		if a := v.Get("auth"); a != nil {
			ev.TokenAccessor = refStr(a, "accessor")
		}
	}

	if en.KMIP {
		parseKMIP(v, req, ev)
		return en, nil
	}

	if op == "" {
		op = "unknown"
	}
	ev.Action = "vault:" + op
	ev.ReadOnly = op == "read" || op == "list"
	ev.Auth = refIsLogin(path)

	// identity
	auth := v.Get("auth")
	refSetIdentity(ev, auth, req)
	if ev.Auth {
		ev.AuthMethod = ev.MountType
		if ev.AuthMethod == "" || ev.AuthMethod == "ns_token" {
			ev.AuthMethod = loginMethod(path)
		}
		if ra := v.Get("response", "auth"); ra != nil && ra.Type() == fastjson.TypeObject && refHasIdentity(ra) {
			refSetIdentity(ev, ra, nil)
			if tok := refStr(ra, "client_token"); tok != "" {
				ev.TokenHMAC = tok
			}
		} else if ev.PrincipalType == schema.PrincipalTypeAnonymous {
			// a failed (or not yet answered) login: keep the user it
			// claimed
			ev.PrincipalName = loginUser(path)
		}
	}

	// outcome
	errText := refStr(v, "error")
	ev.IssuedKey = refStr(v, "response", "data", "access_key")
	ev.LeaseID = refStr(v, "response", "secret", "lease_id")
	if ev.LeaseID == "" && IsBodyRevoke(path) {
		ev.LeaseID = refStr(v, "request", "data", "lease_id")
	}
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
		ev.FailureKind = refFailureKind(ev, errText, dataErr, auth)
	} else {
		ev.Outcome = schema.OutcomeSuccess
	}
	return en, nil
}

func refHasIdentity(a *fastjson.Value) bool {
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
func refSetIdentity(ev *schema.Event, a, req *fastjson.Value) {
	if !refHasIdentity(a) {
		ev.Principal = ""
		ev.PrincipalName = ""
		ev.PrincipalType = schema.PrincipalTypeAnonymous
		ev.Policies = nil
		return
	}
	entity := refStr(a, "entity_id")
	display := refStr(a, "display_name")
	accessor := refStr(a, "accessor")
	if accessor == "" && req != nil {
		accessor = refStr(req, "client_token_accessor")
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
	ev.PrincipalName = refStr(a, "metadata", "username")
	if ev.PrincipalName == "" {
		ev.PrincipalName = refStr(a, "metadata", "role_name")
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

func refFailureKind(ev *schema.Event, errText, dataErr string, auth *fastjson.Value) string {
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
		if !refHasIdentity(auth) && len(auth.GetStringBytes("entity_id")) == 0 {
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

// refIsLogin is isLogin as first written.
func refIsLogin(path string) bool {
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
