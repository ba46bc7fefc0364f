// Package vault owns the normalization of HashiCorp Vault and OpenBao
// audit-device entries (file, socket and syslog devices, every version
// from 0.1 on, KMIP entries included) into schema.Event, and the pairing of
// a request entry with its response entry into one event per client
// request.
package vault

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"time"

	"github.com/valyala/fastjson"

	"auditwatch/ingest/intern"
	"auditwatch/ingest/ipaddr"
	"auditwatch/ingest/jsonx"
	"auditwatch/ingest/rfc3339"
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
	p := Parser{Now: now}
	return p.Parse(v)
}

// Parser normalizes entries one after another, reusing its scratch space
// and handing out repeated strings (mounts, paths, principals, addresses)
// from Strings. The zero value works (no interning, time.Now as clock).
// Not safe for concurrent use.
type Parser struct {
	// Strings, if set, shares strings that repeat across entries.
	Strings *intern.Table
	// Now is the clock for entries without a time.
	Now func() time.Time
	// MaxDepth, if set, is the nesting depth beyond which ParseLine
	// declines a record.
	MaxDepth int
	// d0 offsets the lexer's depth count (see ParseLine)
	d0      int
	scratch []byte
	// slots remember the last value of each field (see intern.Slot)
	slots [nSlots]intern.Slot
	// pol holds the policy names of the entry being parsed
	pol [][]byte
	// dataErr holds the JSON text of a response.data.error object
	dataErr []byte
	// lastRemote is the last remote_address seen, lastIP its canonical
	// form
	lastRemote, lastIP string
	// lastID is the last request id read
	lastID string
	// lastPolicies is the last policy list made
	lastPolicies []string
	// authMemo holds top-level auth blocks ParseLine read (see
	// lineAuthMemo)
	authMemo jsonx.Memo[authMemo]
	// ips remembers the canonical form of recent addresses
	ips ipaddr.Memo
}

// samePolicies reports whether pol names the policies of lastPolicies.
func (p *Parser) samePolicies(pol [][]byte) bool {
	if len(pol) != len(p.lastPolicies) {
		return false
	}
	for i, s := range pol {
		if string(s) != p.lastPolicies[i] {
			return false
		}
	}
	return true
}

// Fields with an intern.Slot.
const (
	slPath = iota
	slMount
	slMountType
	slRespMountType
	slNamespace
	slRemote
	slUA
	slToken
	slAction
	slPrincipal
	slPrincipalName
	slRespToken
	slError
	slAccessor
	slPolicy // slPolicy+i for the i-th policy name, up to 4
	nSlots   = slPolicy + 4
)

// s interns b through slot i.
func (p *Parser) s(i int, b []byte) string { return p.Strings.Cached(&p.slots[i], b) }

// bytesOf is the string content of v, nil when v is absent or not a
// string (as fastjson's GetStringBytes).
func bytesOf(v *fastjson.Value) []byte {
	if v == nil {
		return nil
	}
	return v.GetStringBytes()
}

// The *Of functions read the fields an entry's objects are normalized from
// in one pass over each object's keys (the first of duplicated keys wins);
// a value that is not an object has none of them.
type topFields struct{ typ, time, request, auth, response, err *fastjson.Value }

func topOf(v *fastjson.Value) (f topFields) {
	o := v.GetObject()
	if o == nil {
		return f
	}
	o.Visit(func(k []byte, e *fastjson.Value) {
		switch string(k) {
		case "type":
			setFirst(&f.typ, e)
		case "time":
			setFirst(&f.time, e)
		case "request":
			setFirst(&f.request, e)
		case "auth":
			setFirst(&f.auth, e)
		case "response":
			setFirst(&f.response, e)
		case "error":
			setFirst(&f.err, e)
		}
	})
	return f
}

type requestFields struct {
	id, path, operation, mountPoint, mountType, namespace, remoteAddress, headers, clientToken, clientTokenAccessor *fastjson.Value
	data                                                                                                            *fastjson.Value
}

func requestOf(v *fastjson.Value) (f requestFields) {
	o := v.GetObject()
	if o == nil {
		return f
	}
	o.Visit(func(k []byte, e *fastjson.Value) {
		switch string(k) {
		case "id":
			setFirst(&f.id, e)
		case "path":
			setFirst(&f.path, e)
		case "operation":
			setFirst(&f.operation, e)
		case "mount_point":
			setFirst(&f.mountPoint, e)
		case "mount_type":
			setFirst(&f.mountType, e)
		case "namespace":
			setFirst(&f.namespace, e)
		case "remote_address":
			setFirst(&f.remoteAddress, e)
		case "headers":
			setFirst(&f.headers, e)
		case "client_token":
			setFirst(&f.clientToken, e)
		case "client_token_accessor":
			setFirst(&f.clientTokenAccessor, e)
		case "data":
			setFirst(&f.data, e)
		}
	})
	return f
}

type responseFields struct{ mountType, auth, data, secret *fastjson.Value }

func responseOf(v *fastjson.Value) (f responseFields) {
	o := v.GetObject()
	if o == nil {
		return f
	}
	o.Visit(func(k []byte, e *fastjson.Value) {
		switch string(k) {
		case "mount_type":
			setFirst(&f.mountType, e)
		case "auth":
			setFirst(&f.auth, e)
		case "data":
			setFirst(&f.data, e)
		case "secret":
			setFirst(&f.secret, e)
		}
	})
	return f
}

// authFields are the parts of an auth block identities are made of.
type authFields struct {
	entityID, displayName, accessor, clientToken []byte
	policies, tokenPolicies                      []*fastjson.Value
	metadata                                     *fastjson.Value
}

func authOf(v *fastjson.Value) (f authFields) {
	o := v.GetObject()
	if o == nil {
		return f
	}
	var entity, display, accessor, token, pol, tpol *fastjson.Value
	o.Visit(func(k []byte, e *fastjson.Value) {
		switch string(k) {
		case "entity_id":
			setFirst(&entity, e)
		case "display_name":
			setFirst(&display, e)
		case "accessor":
			setFirst(&accessor, e)
		case "client_token":
			setFirst(&token, e)
		case "policies":
			setFirst(&pol, e)
		case "token_policies":
			setFirst(&tpol, e)
		case "metadata":
			setFirst(&f.metadata, e)
		}
	})
	f.entityID, f.displayName, f.accessor, f.clientToken = bytesOf(entity), bytesOf(display), bytesOf(accessor), bytesOf(token)
	f.policies, f.tokenPolicies = arrayOf(pol), arrayOf(tpol)
	return f
}

func arrayOf(v *fastjson.Value) []*fastjson.Value {
	if v == nil || v.Type() != fastjson.TypeArray {
		return nil
	}
	a, _ := v.Array()
	return a
}

// setFirst keeps the first of duplicated keys.
func setFirst(dst **fastjson.Value, v *fastjson.Value) {
	if *dst == nil {
		*dst = v
	}
}

// Parse normalizes one entry.
func (p *Parser) Parse(v *fastjson.Value) (Entry, error) {
	var en Entry
	top := topOf(v)
	switch string(bytesOf(top.typ)) {
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
	req := top.request
	if req == nil || req.Type() != fastjson.TypeObject {
		return en, ErrNotEntry
	}
	p.pol = p.pol[:0]
	var r raw
	r.time = bytesOf(top.time)
	r.id = req.GetStringBytes("id")
	if len(r.id) == 0 {
		// request and response entries share the request object: hash it
		// so both halves of a pair get the same deterministic id. Hashed
		// before anything else of it is read: reading values and looking
		// keys up change how fastjson writes them back.
		p.scratch = req.MarshalTo(p.scratch[:0])
		h := sha256.Sum256(p.scratch)
		r.hashID = "vault-" + hex.EncodeToString(h[:12])
	}
	rq := requestOf(req)
	r.path, r.op = bytesOf(rq.path), bytesOf(rq.operation)
	r.mountPoint, r.mountType = bytesOf(rq.mountPoint), bytesOf(rq.mountType)
	r.remote, r.token, r.tokenAccessor = bytesOf(rq.remoteAddress), bytesOf(rq.clientToken), bytesOf(rq.clientTokenAccessor)
	if d := rq.data.GetObject(); d != nil {
		r.reqLeaseID = bytesOf(d.Get("lease_id"))
	}
	if ns := rq.namespace.GetObject(); ns != nil {
		r.nsPath, r.nsID = bytesOf(ns.Get("path")), bytesOf(ns.Get("id"))
	}
	if h := rq.headers.GetObject(); h != nil {
		if ua := h.Get("user-agent"); ua != nil {
			if ua.Type() == fastjson.TypeArray {
				if a, _ := ua.Array(); len(a) > 0 {
					r.ua = a[0].GetStringBytes()
				}
			} else {
				r.ua = ua.GetStringBytes()
			}
		}
	}
	resp := responseOf(top.response)
	r.respMountType = bytesOf(resp.mountType)
	r.errText = bytesOf(top.err)
	if !en.KMIP {
		p.gatherAuth(&r.auth, authOf(top.auth))
		if resp.auth != nil && resp.auth.Type() == fastjson.TypeObject {
			p.gatherAuth(&r.respAuth, authOf(resp.auth))
		}
		if s := resp.secret.GetObject(); s != nil {
			r.leaseID = bytesOf(s.Get("lease_id"))
		}
		if d := resp.data.GetObject(); d != nil {
			r.issuedKey = bytesOf(d.Get("access_key"))
			if de := d.Get("error"); de != nil {
				if de.Type() == fastjson.TypeString {
					r.dataErr = de.GetStringBytes()
				} else if de.Type() != fastjson.TypeNull {
					p.dataErr = de.MarshalTo(p.dataErr[:0])
					r.dataErr = p.dataErr
				}
			}
		}
	}
	return p.normalize(en, &r, v, req)
}

// IsBodyRevoke reports the lease revocation endpoints that take the lease
// in the request body (request.data.lease_id) rather than in the path.
func IsBodyRevoke(path string) bool {
	switch strings.TrimSuffix(path, "/") {
	case "sys/leases/revoke", "sys/revoke":
		return true
	}
	return false
}

// raw holds what an entry is normalized from, as read from the record
// (string contents; nil when absent or not a string).
type raw struct {
	time, errText                                             []byte
	id, path, op, mountPoint, mountType, nsPath, nsID, remote []byte
	ua, token, tokenAccessor, respMountType                   []byte
	auth, respAuth                                            rawAuth
	// dataErr is response.data.error: its string content, or its JSON
	// text when it is neither a string nor null
	dataErr []byte
	// hashID is the content-hash id of an entry without request.id
	hashID string
	// issuedKey is response.data.access_key (an AWS secrets engine
	// response), leaseID response.secret.lease_id
	issuedKey, leaseID []byte
	// reqLeaseID is request.data.lease_id (clear or HMAC'd): the lease of
	// a body-form revocation
	reqLeaseID []byte
}

// rawAuth is an auth block as read from the record.
type rawAuth struct {
	entityID, displayName, accessor, clientToken []byte
	// nPolicies counts every element of policies; polStr are its string
	// elements (else token_policies' when policies is empty)
	nPolicies          int
	polStr             [][]byte
	username, roleName []byte
}

// identified reports whether an auth block names anyone: an entity, a
// display name, an accessor, a token or policies.
func (a *rawAuth) identified() bool {
	return len(a.entityID) > 0 || len(a.displayName) > 0 || len(a.accessor) > 0 || len(a.clientToken) > 0 || a.nPolicies > 0
}

func (p *Parser) gatherAuth(dst *rawAuth, a authFields) {
	dst.entityID, dst.displayName, dst.accessor, dst.clientToken = a.entityID, a.displayName, a.accessor, a.clientToken
	dst.nPolicies = len(a.policies)
	pol := a.policies
	if len(pol) == 0 {
		pol = a.tokenPolicies
	}
	start := len(p.pol)
	for _, e := range pol {
		if s := e.GetStringBytes(); s != nil {
			p.pol = append(p.pol, s)
		}
	}
	dst.polStr = p.pol[start:len(p.pol):len(p.pol)]
	if md := a.metadata.GetObject(); md != nil {
		dst.username, dst.roleName = bytesOf(md.Get("username")), bytesOf(md.Get("role_name"))
	}
}

// normalize makes the event of an entry. v and req are the parsed record
// and its request object, needed only for KMIP entries.
func (p *Parser) normalize(en Entry, r *raw, v, req *fastjson.Value) (Entry, error) {
	ev := &en.Event
	ev.Source = schema.SourceVault

	if len(r.time) > 0 {
		t, err := rfc3339.Parse(r.time)
		if err != nil {
			return en, ErrBadTime
		}
		ev.Time = t
	} else {
		now := p.Now
		if now == nil {
			now = time.Now
		}
		ev.Time = now().UTC()
	}

	if string(r.id) != p.lastID {
		// a response entry follows its request entry: one string for
		// both
		p.lastID = string(r.id)
	}
	ev.ID = p.lastID
	en.HasID = ev.ID != ""
	if !en.HasID {
		ev.ID = r.hashID
	}

	path := p.s(slPath, r.path)
	op := r.op
	ev.Resource = path
	ev.Mount = p.s(slMount, r.mountPoint)
	ev.MountType = p.s(slMountType, r.mountType)
	if ev.MountType == "" {
		ev.MountType = p.s(slRespMountType, r.respMountType)
	}
	if ev.Mount == "" && path != "" {
		ev.Mount = p.Strings.String(mountOf(path))
	}
	if len(r.nsPath) > 0 {
		ev.Namespace = p.s(slNamespace, bytes.TrimSuffix(r.nsPath, []byte("/")))
	} else {
		ev.Namespace = p.s(slNamespace, r.nsID)
	}
	ev.SourceIPRaw = p.s(slRemote, r.remote)
	if ev.SourceIPRaw != p.lastRemote || ev.SourceIPRaw == "" {
		// a request and its response entry (and a client's next
		// requests) name the same address: canonicalize it once
		p.lastRemote = ev.SourceIPRaw
		p.lastIP, _ = p.ips.Canonical(ev.SourceIPRaw, nil)
	}
	ev.SourceIP = p.lastIP
	ev.UserAgent = p.s(slUA, r.ua)
	ev.TokenHMAC = p.s(slToken, r.token)
	if acc := r.tokenAccessor; len(acc) > 0 {
		ev.TokenAccessor = p.s(slAccessor, acc)
	} else {
		ev.TokenAccessor = p.s(slAccessor, r.auth.accessor)
	}

	if en.KMIP {
		parseKMIP(v, req, ev)
		return en, nil
	}

	if len(op) == 0 {
		op = []byte("unknown")
	}
	p.scratch = append(append(p.scratch[:0], "vault:"...), op...)
	ev.Action = p.s(slAction, p.scratch)
	ev.ReadOnly = string(op) == "read" || string(op) == "list"
	ev.Auth = isLogin(path)

	// identity
	p.setIdentity(ev, &r.auth, r.tokenAccessor, true)
	if ev.Auth {
		ev.AuthMethod = ev.MountType
		if ev.AuthMethod == "" || ev.AuthMethod == "ns_token" {
			ev.AuthMethod = p.Strings.String(loginMethod(path))
		}
		if r.respAuth.identified() {
			p.setIdentity(ev, &r.respAuth, nil, false)
			if len(r.respAuth.clientToken) > 0 {
				ev.TokenHMAC = p.s(slRespToken, r.respAuth.clientToken)
			}
		} else if ev.PrincipalType == schema.PrincipalTypeAnonymous {
			// a failed (or not yet answered) login: keep the user it
			// claimed
			ev.PrincipalName = p.Strings.String(loginUser(path))
		}
	}

	if len(r.issuedKey) > 0 {
		ev.IssuedKey = string(r.issuedKey)
	}
	if len(r.leaseID) > 0 {
		ev.LeaseID = string(r.leaseID)
	} else if len(r.reqLeaseID) > 0 && IsBodyRevoke(path) {
		ev.LeaseID = string(r.reqLeaseID)
	}

	// outcome
	dataErr := p.Strings.Bytes(r.dataErr)
	if len(r.errText) != 0 || dataErr != "" {
		ev.Outcome = schema.OutcomeFailure
		errStr := p.s(slError, r.errText)
		if errStr != "" {
			ev.Error = p.Strings.String(CleanError(errStr))
		} else {
			ev.Error = dataErr
		}
		ev.FailureKind = failureKind(ev, errStr, dataErr, &r.auth)
	} else {
		ev.Outcome = schema.OutcomeSuccess
	}
	return en, nil
}

// setIdentity fills the principal fields from an auth block; with
// useAccessor, accessor (the request's token accessor) stands in when the
// block has none.
func (p *Parser) setIdentity(ev *schema.Event, a *rawAuth, accessor []byte, useAccessor bool) {
	if !a.identified() {
		ev.Principal = ""
		ev.PrincipalName = ""
		ev.PrincipalType = schema.PrincipalTypeAnonymous
		ev.Policies = nil
		return
	}
	entity := a.entityID
	display := a.displayName
	if len(a.accessor) != 0 || !useAccessor {
		accessor = a.accessor
	}
	switch {
	case len(entity) != 0:
		ev.Principal = p.s(slPrincipal, entity)
		ev.PrincipalType = "entity"
	case len(display) != 0:
		ev.Principal = p.s(slPrincipal, display)
		ev.PrincipalType = "token"
	case len(accessor) != 0:
		ev.Principal = p.s(slPrincipal, accessor)
		ev.PrincipalType = "token"
	default:
		ev.Principal = ""
		ev.PrincipalType = "token"
	}
	ev.PrincipalName = p.s(slPrincipalName, a.username)
	if ev.PrincipalName == "" {
		ev.PrincipalName = p.s(slPrincipalName, a.roleName)
	}
	if ev.PrincipalName == "" {
		ev.PrincipalName = p.s(slPrincipalName, display)
	}
	ev.Policies = nil
	if n := len(a.polStr); n > 0 {
		if p.samePolicies(a.polStr) {
			// the list the previous entry (typically the request entry
			// of this response) had: events share it, read-only, its
			// length its capacity
			ev.Policies = p.lastPolicies
			return
		}
		// a fresh slice of the exact size: an event never shares its
		// backing array with the block it replaced
		ev.Policies = make([]string, n)
		for i, s := range a.polStr {
			if i < nSlots-slPolicy {
				ev.Policies[i] = p.s(slPolicy+i, s)
			} else {
				ev.Policies[i] = p.Strings.Bytes(s)
			}
		}
		p.lastPolicies = ev.Policies
	}
}

// isLogin reports whether path is an authentication attempt:
// auth/<mount...>/login[/<user>] or an OIDC/JWT callback.
func isLogin(path string) bool {
	if !strings.HasPrefix(path, "auth/") {
		return false
	}
	rest := path[len("auth/"):]
	// walk the "/"-separated segments after the first
	i := strings.IndexByte(rest, '/')
	if i < 0 {
		return false
	}
	prev, idx := "", 1
	for rest = rest[i+1:]; ; idx++ {
		seg := rest
		j := strings.IndexByte(rest, '/')
		if j >= 0 {
			seg = rest[:j]
		}
		if seg == "login" || (seg == "callback" && idx >= 2 && prev == "oidc") {
			return true
		}
		if j < 0 {
			return false
		}
		prev, rest = seg, rest[j+1:]
	}
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

func failureKind(ev *schema.Event, errText, dataErr string, auth *rawAuth) string {
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
		if !auth.identified() && len(auth.entityID) == 0 {
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
