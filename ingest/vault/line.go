package vault

import (
	"auditwatch/ingest/jsonx"
)

// ParseLine normalizes one entry straight from its JSON text, reading the
// fields events are made of in place and checking that everything else is
// well-formed JSON, without building a tree. It handles the common entry:
// a request or response entry with a request.id whose strings need no
// unescaping. ok is false for anything else (escapes in keys or in
// strings it reads, duplicate keys, id-less and KMIP entries, keys that
// make the record a CloudTrail one, text it does not accept as JSON):
// the caller then parses the record with fastjson and calls Parse, which
// gives the definitive result. When ok, the result is exactly Parse's.
//
// With MaxDepth set, ParseLine also declines records nested deeper than
// MaxDepth (the caller need not count brackets first).
func (p *Parser) ParseLine(b []byte) (en Entry, err error, ok bool) {
	p.pol = p.pol[:0]
	// the lexer refuses depths beyond jsonx.MaxLexDepth: start counting
	// so that it does beyond MaxDepth
	p.d0 = 0
	if p.MaxDepth > 0 && p.MaxDepth < jsonx.MaxLexDepth {
		p.d0 = jsonx.MaxLexDepth - p.MaxDepth
	}
	var r raw
	var typ []byte
	var seen uint16
	hasReq := false
	bad := false
	end := jsonx.Object(b, 0, p.d0+1, func(key []byte, esc bool, v int) int {
		if esc || bad {
			return -1
		}
		var bit uint16
		switch string(key) {
		case "type":
			bit = 1
		case "time":
			bit = 2
		case "error":
			bit = 4
		case "request":
			bit = 8
		case "auth":
			bit = 16
		case "response":
			bit = 32
		case "Records", "Events", "digestStartTime", "digestEndTime", "detail-type", "detail",
			"eventName", "eventSource", "eventVersion", "eventname", "eventsource", "eventversion":
			// the reader takes records with these keys for CloudTrail
			return -1
		default:
			return jsonx.Skip(b, v, p.d0+2)
		}
		if seen&bit != 0 {
			return -1
		}
		seen |= bit
		switch bit {
		case 1:
			return p.lineString(b, v, &typ)
		case 2:
			return p.lineString(b, v, &r.time)
		case 4:
			return p.lineString(b, v, &r.errText)
		case 8:
			if b[v] != '{' {
				return -1
			}
			hasReq = true
			return p.lineRequest(b, v, &r)
		case 16:
			if b[v] != '{' {
				return jsonx.Skip(b, v, p.d0+2)
			}
			return p.lineAuthMemo(b, v, p.d0+2, &r.auth)
		default:
			if b[v] != '{' {
				return jsonx.Skip(b, v, p.d0+2)
			}
			return p.lineResponse(b, v, &r)
		}
	})
	if end < 0 || jsonx.SkipWS(b, end) != len(b) || !hasReq || len(r.id) == 0 {
		return en, nil, false
	}
	switch string(typ) {
	case TypeRequest:
	case TypeResponse:
		en.Response = true
	default:
		return en, nil, false
	}
	en, err = p.normalize(en, &r, nil, nil)
	return en, err, true
}

// lineString reads the value at b[v] into *dst when it is a string
// without escapes (nil when it is not a string); -1 for an escaped one.
func (p *Parser) lineString(b []byte, v int, dst *[]byte) int {
	if b[v] != '"' {
		*dst = nil
		return jsonx.Skip(b, v, p.d0+5) // the deepest place a string is read
	}
	end, esc := jsonx.String(b, v)
	if end < 0 || esc {
		return -1
	}
	*dst = b[v+1 : end-1]
	return end
}

func (p *Parser) lineRequest(b []byte, v int, r *raw) int {
	var seen uint16
	return jsonx.Object(b, v, p.d0+2, func(key []byte, esc bool, v int) int {
		if esc {
			return -1
		}
		var bit uint16
		var dst *[]byte
		switch string(key) {
		case "id":
			bit, dst = 1, &r.id
		case "path":
			bit, dst = 2, &r.path
		case "operation":
			bit, dst = 4, &r.op
		case "mount_point":
			bit, dst = 8, &r.mountPoint
		case "mount_type":
			bit, dst = 16, &r.mountType
		case "remote_address":
			bit, dst = 32, &r.remote
		case "client_token":
			bit, dst = 64, &r.token
		case "client_token_accessor":
			bit, dst = 128, &r.tokenAccessor
		case "namespace":
			bit = 256
		case "headers":
			bit = 512
		case "data":
			bit = 1024
		default:
			return jsonx.Skip(b, v, p.d0+3)
		}
		if seen&bit != 0 {
			return -1
		}
		seen |= bit
		if dst != nil {
			return p.lineString(b, v, dst)
		}
		if b[v] != '{' {
			return jsonx.Skip(b, v, p.d0+3)
		}
		if bit == 256 {
			return p.lineStrings(b, v, p.d0+3, "path", &r.nsPath, "id", &r.nsID)
		}
		if bit == 1024 {
			// a body-form lease revocation's lease (sys/leases/revoke)
			return p.lineStrings(b, v, p.d0+3, "lease_id", &r.reqLeaseID, "lease_id", &r.reqLeaseID)
		}
		var ua int
		return jsonx.Object(b, v, p.d0+3, func(key []byte, esc bool, v int) int {
			if esc {
				return -1
			}
			if string(key) != "user-agent" {
				return jsonx.Skip(b, v, p.d0+4)
			}
			if ua++; ua > 1 {
				return -1
			}
			if b[v] != '[' {
				return p.lineString(b, v, &r.ua)
			}
			return jsonx.Array(b, v, p.d0+4, func(n, e int) int {
				if n == 0 {
					return p.lineString(b, e, &r.ua)
				}
				return jsonx.Skip(b, e, p.d0+5)
			})
		})
	})
}

// lineStrings reads the string members k1 and k2 of the object at b[v].
func (p *Parser) lineStrings(b []byte, v, depth int, k1 string, d1 *[]byte, k2 string, d2 *[]byte) int {
	var seen1, seen2 bool
	return jsonx.Object(b, v, depth, func(key []byte, esc bool, v int) int {
		if esc {
			return -1
		}
		switch string(key) {
		case k1:
			if seen1 {
				return -1
			}
			seen1 = true
			return p.lineString(b, v, d1)
		case k2:
			if seen2 {
				return -1
			}
			seen2 = true
			return p.lineString(b, v, d2)
		}
		return jsonx.Skip(b, v, depth+1)
	})
}

func (p *Parser) lineResponse(b []byte, v int, r *raw) int {
	var seen uint16
	return jsonx.Object(b, v, p.d0+2, func(key []byte, esc bool, v int) int {
		if esc {
			return -1
		}
		var bit uint16
		switch string(key) {
		case "mount_type":
			bit = 1
		case "auth":
			bit = 2
		case "data":
			bit = 4
		case "secret":
			bit = 8
		default:
			return jsonx.Skip(b, v, p.d0+3)
		}
		if seen&bit != 0 {
			return -1
		}
		seen |= bit
		switch {
		case bit == 1:
			return p.lineString(b, v, &r.respMountType)
		case b[v] != '{':
			return jsonx.Skip(b, v, p.d0+3)
		case bit == 2:
			return p.lineAuth(b, v, p.d0+3, &r.respAuth)
		case bit == 8:
			var leaseSeen bool
			return jsonx.Object(b, v, p.d0+3, func(key []byte, esc bool, v int) int {
				if esc {
					return -1
				}
				if string(key) != "lease_id" {
					return jsonx.Skip(b, v, p.d0+4)
				}
				if leaseSeen {
					return -1
				}
				leaseSeen = true
				return p.lineString(b, v, &r.leaseID)
			})
		}
		var errSeen, keySeen bool
		return jsonx.Object(b, v, p.d0+3, func(key []byte, esc bool, v int) int {
			if esc {
				return -1
			}
			if string(key) == "access_key" {
				if keySeen {
					return -1
				}
				keySeen = true
				return p.lineString(b, v, &r.issuedKey)
			}
			if string(key) != "error" {
				return jsonx.Skip(b, v, p.d0+4)
			}
			if errSeen {
				return -1
			}
			errSeen = true
			switch b[v] {
			case '"':
				return p.lineString(b, v, &r.dataErr)
			case 'n':
				r.dataErr = nil
				return jsonx.Skip(b, v, p.d0+4)
			}
			// an object or number: its JSON text is the error (Parse)
			return -1
		})
	})
}

// lineAuth reads an auth block.
func (p *Parser) lineAuth(b []byte, v, depth int, a *rawAuth) int {
	var seen uint16
	var pol, tpol [2]int // ranges of p.pol
	var nTok int
	end := jsonx.Object(b, v, depth, func(key []byte, esc bool, v int) int {
		if esc {
			return -1
		}
		var bit uint16
		var dst *[]byte
		switch string(key) {
		case "entity_id":
			bit, dst = 1, &a.entityID
		case "display_name":
			bit, dst = 2, &a.displayName
		case "accessor":
			bit, dst = 4, &a.accessor
		case "client_token":
			bit, dst = 8, &a.clientToken
		case "policies":
			bit = 16
		case "token_policies":
			bit = 32
		case "metadata":
			bit = 64
		default:
			return jsonx.Skip(b, v, depth+1)
		}
		if seen&bit != 0 {
			return -1
		}
		seen |= bit
		if dst != nil {
			return p.lineString(b, v, dst)
		}
		if bit == 64 {
			if b[v] != '{' {
				return jsonx.Skip(b, v, depth+1)
			}
			return p.lineStrings(b, v, depth+1, "username", &a.username, "role_name", &a.roleName)
		}
		if b[v] != '[' {
			return jsonx.Skip(b, v, depth+1)
		}
		rng := &pol
		if bit == 32 {
			rng = &tpol
		}
		rng[0] = len(p.pol)
		end := jsonx.Array(b, v, depth+1, func(n, e int) int {
			if bit == 16 {
				a.nPolicies++
			} else {
				nTok++
			}
			if b[e] != '"' {
				return jsonx.Skip(b, e, depth+2)
			}
			end, esc := jsonx.String(b, e)
			if end < 0 || esc || end-e == 2 {
				// escapes, or an empty name (fastjson's view of "" as
				// present or not is its own)
				return -1
			}
			p.pol = append(p.pol, b[e+1:end-1])
			return end
		})
		rng[1] = len(p.pol)
		return end
	})
	if a.nPolicies > 0 {
		a.polStr = p.pol[pol[0]:pol[1]:pol[1]]
	} else if nTok > 0 {
		a.polStr = p.pol[tpol[0]:tpol[1]:tpol[1]]
	}
	return end
}

// authMemo is what lineAuth read from an auth block kept in the parser's
// jsonx.Memo, its slices pointing into the kept text.
type authMemo struct {
	auth rawAuth
	pol  [][]byte
}

// lineAuthMemo is lineAuth for the entry's top-level auth block. Auth
// blocks repeat byte for byte: a response entry carries its request
// entry's, and a client's requests carry the same one while its token
// lives. A block kept in the memo stands in for reading it again (see
// jsonx.Memo); its fields point into the memo's copy (bytes equal to the
// record's) and are read before the next ParseLine, the only place a
// block is kept.
func (p *Parser) lineAuthMemo(b []byte, v, depth int, a *rawAuth) int {
	if m, end, ok := p.authMemo.Lookup(b, v, depth); ok {
		*a = m.auth
		return end
	}
	end := p.lineAuth(b, v, depth, a)
	text, m, ok := p.authMemo.Store(b, v, end, depth)
	if !ok {
		return end
	}
	at := func(f []byte) []byte { return jsonx.Rebase(b, v, text, f) }
	m.auth = rawAuth{
		entityID: at(a.entityID), displayName: at(a.displayName), accessor: at(a.accessor), clientToken: at(a.clientToken),
		nPolicies: a.nPolicies, username: at(a.username), roleName: at(a.roleName),
	}
	m.pol = m.pol[:0]
	for _, s := range a.polStr {
		m.pol = append(m.pol, at(s))
	}
	if a.polStr != nil {
		if m.pol == nil {
			m.pol = [][]byte{} // an empty list read is not a missing one
		}
		m.auth.polStr = m.pol[:len(m.pol):len(m.pol)]
	}
	return end
}
