package gen

import (
	"strings"
	"time"
)

// Vault / OpenBao rendering: for each client request the file audit device
// writes a "request" entry before handling it and a "response" entry after,
// both JSON lines sharing request.id. Every secret value is HMAC'd
// ("hmac-sha256:<hex>"); paths, ids, metadata and errors are not.

const (
	vaultVersion  = "v2.6.2+builtin.bao"
	errPermDenied = `1 error occurred:\n\t* permission denied\n\n`
)

// vaultHMACs are the HMACs of well-known plaintexts under this generator's
// audit device key.
type vaultHMACs struct {
	permDenied, invalidToken, invalidUser, empty string
}

type mount struct {
	point, typ, class string
	accessor          string
}

func (g *Generator) vaultMount(k opKind, path string) mount {
	m := g.pop.vaultMounts
	switch k {
	case vLoginAppRole:
		return mount{"auth/approle/", "approle", "auth", m.approle}
	case vLoginUserpass:
		return mount{"auth/userpass/", "userpass", "auth", m.userpass}
	case vRenewSelf, vLookupSelf:
		return mount{"auth/token/", "token", "auth", m.token}
	case vAuditDisable:
		return mount{"sys/", "system", "secret", m.system}
	}
	if len(path) >= 4 && path[:4] == "sys/" {
		return mount{"sys/", "system", "secret", m.system}
	}
	switch {
	case strings.HasPrefix(path, "database/"):
		return mount{"database/", "database", "secret", m.kv}
	case strings.HasPrefix(path, "aws/"):
		return mount{"aws/", "aws", "secret", m.kv}
	}
	return mount{"secret/", "kv", "secret", m.kv}
}

func vaultOperation(k opKind) string {
	switch k {
	case vRead, vLookupSelf:
		return "read"
	case vList:
		return "list"
	case vAuditDisable:
		return "delete"
	}
	return "update"
}

func vaultPath(o *op) string {
	switch o.kind {
	case vLoginAppRole:
		return "auth/approle/login"
	case vLoginUserpass:
		return "auth/userpass/login/" + o.user
	case vRenewSelf:
		return "auth/token/renew-self"
	case vLookupSelf:
		return "auth/token/lookup-self"
	}
	return o.res
}

// appendVault appends the request and response entries of o, each ending
// with a newline.
func (g *Generator) appendVault(dst []byte, o *op) []byte {
	r := g.r
	pr := o.p
	login := o.kind == vLoginAppRole || o.kind == vLoginUserpass
	if login && o.user == "" && pr != nil {
		o.user = pr.login
	}
	path := vaultPath(o)
	operation := vaultOperation(o.kind)
	m := g.vaultMount(o.kind, path)
	if !login && pr != nil && !o.root && pr.tokenIssue.IsZero() {
		pr.tokenIssue = o.t.Add(-time.Duration(r.intn(1800)) * time.Second)
	}

	var idBuf [36]byte
	id := idBuf[:0]
	if o.id != "" {
		id = append(id, o.id...)
	} else {
		id = r.appendVaultID(id)
	}
	port := 32768 + r.intn(28000)
	respT := o.t.Add(time.Duration(40_000 + r.intn(4_000_000)))

	var bogusToken string
	if o.fail == failInvalidToken {
		bogusToken = hmacOf(r)
	}

	for entry := 0; entry < 2; entry++ {
		resp := entry == 1
		dst = append(dst, `{"time":"`...)
		if resp {
			dst = g.tc.appendNano(dst, respT)
			dst = append(dst, `","type":"response","auth":`...)
		} else {
			dst = g.tc.appendNano(dst, o.t)
			dst = append(dst, `","type":"request","auth":`...)
		}
		// auth block
		switch {
		case login && resp && o.fail == failNone:
			g.rotateToken(pr, o.t)
			dst = g.appendTokenAuth(dst, pr, false, true, false)
		case login && (o.fail == failUnknownUser || !resp):
			dst = append(dst, `{"policy_results":{"allowed":true},"token_type":"default"}`...)
		case login || o.fail == failInvalidToken:
			dst = append(dst, `{"token_type":"default"}`...)
		case o.root:
			dst = g.appendRootAuth(dst)
		default:
			dst = g.appendTokenAuth(dst, pr, true, false, o.fail == failDenied)
		}
		// request block
		dst = append(dst, `,"request":{"id":"`...)
		dst = append(dst, id...)
		dst = append(dst, '"')
		if !login && o.fail != failInvalidToken {
			dst = append(dst, `,"client_id":"`...)
			if o.root {
				dst = append(dst, g.rootClientID...)
			} else {
				dst = append(dst, pr.entityID...)
			}
			dst = append(dst, '"')
		}
		dst = appendStr(dst, "operation", operation)
		dst = appendStr(dst, "mount_point", m.point)
		dst = appendStr(dst, "mount_type", m.typ)
		// OpenBao logs the mount accessor in request entries of writes and
		// in response entries, except for requests refused before routing.
		refused := o.fail == failDenied || o.fail == failInvalidToken
		if (resp && !refused) || (!resp && operation != "read" && operation != "list") {
			dst = appendStr(dst, "mount_accessor", m.accessor)
		}
		dst = append(dst, `,"mount_running_version":"`+vaultVersion+`"`...)
		dst = appendStr(dst, "mount_class", m.class)
		switch {
		case login:
		case o.fail == failInvalidToken:
			dst = appendStr(dst, "client_token", bogusToken)
		case o.root:
			dst = appendStr(dst, "client_token", g.rootToken)
			dst = appendStr(dst, "client_token_accessor", g.rootAccessor)
		default:
			dst = appendStr(dst, "client_token", pr.token)
			dst = appendStr(dst, "client_token_accessor", pr.accessor)
		}
		dst = append(dst, `,"namespace":{"id":"root"},"path":"`...)
		dst = append(dst, path...)
		dst = append(dst, '"')
		switch o.kind {
		case vLoginAppRole:
			dst = append(dst, `,"data":{"role_id":"`...)
			dst = append(dst, pr.roleIDHMAC...)
			dst = append(dst, `","secret_id":"`...)
			dst = append(dst, pr.secretHMAC...)
			dst = append(dst, `"}`...)
		case vLoginUserpass:
			dst = append(dst, `,"data":{"password":"`...)
			if o.fail == failNone {
				dst = append(dst, pr.passwdHMAC...)
			} else {
				dst = r.appendHex(append(dst, "hmac-sha256:"...), 64)
			}
			dst = append(dst, `"}`...)
		case vWrite:
			dst = append(dst, `,"data":{"data":{"value":"hmac-sha256:`...)
			dst = r.appendHex(dst, 64)
			dst = append(dst, `"}}`...)
		}
		dst = append(dst, `,"remote_address":"`...)
		dst = append(dst, o.ip...)
		dst = append(dst, `","remote_port":`...)
		dst = appendInt(dst, int64(port))
		dst = append(dst, '}')

		if resp {
			dst = g.appendVaultResponse(dst, o, m)
		}
		switch o.fail {
		case failCredentials:
			if resp {
				dst = append(dst, `,"error":"invalid credentials"`...)
			}
		case failDenied, failInvalidToken:
			dst = append(dst, `,"error":"`+errPermDenied+`"`...)
		}
		dst = append(dst, "}\n"...)
	}
	return dst
}

func (g *Generator) appendMountResp(dst []byte, m mount, refused bool) []byte {
	dst = append(dst, `"mount_point":"`...)
	dst = append(dst, m.point...)
	dst = append(dst, '"')
	dst = appendStr(dst, "mount_type", m.typ)
	if !refused {
		dst = appendStr(dst, "mount_accessor", m.accessor)
	}
	dst = append(dst, `,"mount_running_plugin_version":"`+vaultVersion+`"`...)
	return appendStr(dst, "mount_class", m.class)
}

func (g *Generator) appendVaultResponse(dst []byte, o *op, m mount) []byte {
	r := g.r
	h := &g.hmacs
	dst = append(dst, `,"response":{`...)
	login := o.kind == vLoginAppRole || o.kind == vLoginUserpass
	if login && o.fail == failNone || o.kind == vRenewSelf && o.fail == failNone {
		dst = append(dst, `"auth":`...)
		dst = g.appendTokenAuth(dst, o.p, false, login, false)
		dst = append(dst, ',')
		dst = g.appendMountResp(dst, m, false)
		return append(dst, '}')
	}
	dst = g.appendMountResp(dst, m, o.fail == failDenied || o.fail == failInvalidToken)
	switch {
	case o.fail == failCredentials || o.fail == failUnknownUser:
		dst = append(dst, `,"data":{"error":"`...)
		dst = append(dst, h.invalidUser...)
		dst = append(dst, `"}`...)
	case o.fail == failDenied:
		dst = append(dst, `,"data":{"error":"`...)
		dst = append(dst, h.permDenied...)
		dst = append(dst, `"}`...)
	case o.fail == failInvalidToken:
		dst = append(dst, `,"data":{"error":"`...)
		dst = append(dst, h.invalidToken...)
		dst = append(dst, `"}`...)
	case o.kind == vRead:
		dst = append(dst, `,"data":{"data":{"value":"hmac-sha256:`...)
		dst = r.appendHex(dst, 64)
		dst = append(dst, `"},"metadata":{"created_time":"`...)
		dst = g.tc.appendNano(dst, g.cfg.Start.Add(-time.Duration(1+len(o.res)%7)*24*time.Hour-time.Duration(len(o.res))*time.Minute))
		dst = append(dst, `","custom_metadata":null,"deletion_time":"`...)
		dst = append(dst, h.empty...)
		dst = append(dst, `","destroyed":false,"version":`...)
		dst = appendInt(dst, int64(1+len(o.res)%4))
		dst = append(dst, `}}`...)
	case o.kind == vWrite:
		dst = append(dst, `,"data":{"created_time":"`...)
		dst = g.tc.appendNano(dst, o.t)
		dst = append(dst, `","custom_metadata":null,"deletion_time":"`...)
		dst = append(dst, h.empty...)
		dst = append(dst, `","destroyed":false,"version":1}`...)
	case o.kind == vList:
		dst = append(dst, `,"data":{"keys":[`...)
		n := 4 + r.intn(8)
		for i := 0; i < n; i++ {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = r.appendHex(append(dst, `"hmac-sha256:`...), 64)
			dst = append(dst, '"')
		}
		dst = append(dst, `]}`...)
	case o.kind == vLookupSelf:
		pr := o.p
		dst = append(dst, `,"data":{"accessor":"`...)
		dst = append(dst, pr.accessor...)
		dst = append(dst, `","creation_time":`...)
		dst = appendInt(dst, pr.tokenIssue.Unix())
		dst = append(dst, `,"creation_ttl":`...)
		dst = appendInt(dst, int64(pr.tokenTTL))
		dst = append(dst, `,"display_name":"`...)
		dst = r.appendHex(append(dst, "hmac-sha256:"...), 64)
		dst = append(dst, `","entity_id":"`...)
		dst = r.appendHex(append(dst, "hmac-sha256:"...), 64)
		dst = append(dst, `","expire_time":"`...)
		dst = g.tc.appendNano(dst, pr.tokenIssue.Add(time.Duration(pr.tokenTTL)*time.Second))
		dst = append(dst, `","explicit_max_ttl":0,"id":"`...)
		dst = append(dst, pr.token...)
		dst = append(dst, `","issue_time":"`...)
		dst = g.tc.appendNano(dst, pr.tokenIssue)
		dst = append(dst, `","num_uses":0,"orphan":true,"path":"`...)
		dst = r.appendHex(append(dst, "hmac-sha256:"...), 64)
		dst = append(dst, `","policies":["`...)
		dst = r.appendHex(append(dst, "hmac-sha256:"...), 64)
		dst = append(dst, `","`...)
		dst = r.appendHex(append(dst, "hmac-sha256:"...), 64)
		dst = append(dst, `"],"renewable":true,"ttl":`...)
		dst = appendInt(dst, int64(pr.tokenTTL))
		dst = append(dst, `,"type":"hmac-sha256:`...)
		dst = r.appendHex(dst, 64)
		dst = append(dst, `"}`...)
	}
	return append(dst, '}')
}

// rotateToken gives pr a fresh token at a successful login.
func (g *Generator) rotateToken(pr *principal, t time.Time) {
	pr.token = string(g.r.appendHex([]byte("hmac-sha256:"), 64))
	pr.accessor = string(g.r.appendHex([]byte("hmac-sha256:"), 64))
	pr.tokenIssue = t.Truncate(time.Second)
}

// appendTokenAuth renders the auth block of a token owned by pr. withPolicy
// adds policy_results (request handling), issued adds token_issue_time,
// created adds entity_created (first login).
func (g *Generator) appendTokenAuth(dst []byte, pr *principal, withPolicy, login, denied bool) []byte {
	dst = append(dst, `{"client_token":"`...)
	dst = append(dst, pr.token...)
	dst = append(dst, `","accessor":"`...)
	dst = append(dst, pr.accessor...)
	dst = append(dst, `","display_name":"`...)
	dst = append(dst, pr.displayName...)
	dst = append(dst, `","policies":`...)
	dst = append(dst, pr.policies...)
	dst = append(dst, `,"token_policies":`...)
	dst = append(dst, pr.policies...)
	if withPolicy {
		if denied {
			dst = append(dst, `,"policy_results":{"allowed":false}`...)
		} else {
			dst = append(dst, `,"policy_results":{"allowed":true,"granting_policies":[{"name":"`...)
			dst = append(dst, pr.granting...)
			dst = append(dst, `","namespace_id":"root","type":"acl"}]}`...)
		}
	}
	dst = append(dst, `,"metadata":`...)
	dst = append(dst, pr.metadata...)
	dst = append(dst, `,"entity_id":"`...)
	dst = append(dst, pr.entityID...)
	dst = append(dst, `","token_type":"service","token_ttl":`...)
	dst = appendInt(dst, int64(pr.tokenTTL))
	if !login {
		dst = append(dst, `,"token_issue_time":"`...)
		dst = g.tc.appendSeconds(dst, pr.tokenIssue)
		dst = append(dst, '"')
	}
	return append(dst, '}')
}

func (g *Generator) appendRootAuth(dst []byte) []byte {
	dst = append(dst, `{"client_token":"`...)
	dst = append(dst, g.rootToken...)
	dst = append(dst, `","accessor":"`...)
	dst = append(dst, g.rootAccessor...)
	dst = append(dst, `","display_name":"root","policies":["root"],"token_policies":["root"],"policy_results":{"allowed":true,"granting_policies":[{"name":"root","namespace_id":"root","type":"acl"}]},"token_type":"service","token_issue_time":"`...)
	dst = g.tc.appendSeconds(dst, g.cfg.Start)
	return append(dst, `"}`...)
}
