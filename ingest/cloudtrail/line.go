package cloudtrail

import (
	"bytes"
	"math"
	"strings"

	"auditwatch/ingest/jsonx"
	"auditwatch/schema"
)

// ParseLine normalizes one record straight from its JSON text, reading the
// fields events are made of in place and checking that everything else is
// well-formed JSON, without building a tree. It handles the common record:
// one with an eventID and an eventName whose keys and the strings it reads
// need no unescaping. ok is false for anything else (escapes in keys or in
// strings it reads, duplicate keys, records without eventID, keys that make
// the object a container, digest or EventBridge envelope, text it does not
// accept as JSON): the caller then parses the record with fastjson and
// calls Parse, which gives the definitive result. When ok, the result is
// exactly Parse's.
//
// With MaxDepth set, ParseLine also declines records nested deeper than
// MaxDepth (the caller need not count brackets first).
func (p *Parser) ParseLine(b []byte, fb Fallback, ev *schema.Event) (err error, ok bool) {
	// the lexer refuses depths beyond jsonx.MaxLexDepth: start counting
	// so that it does beyond MaxDepth
	d0 := 0
	if p.MaxDepth > 0 && p.MaxDepth < jsonx.MaxLexDepth {
		d0 = jsonx.MaxLexDepth - p.MaxDepth
	}
	var r raw
	var eventTime, pEventTime []byte
	var seen uint32
	uiAt := 0 // where the userIdentity object starts
	end := jsonx.Object(b, 0, d0+1, func(key []byte, esc bool, v int) int {
		if esc {
			return -1
		}
		var bit uint32
		var dst *[]byte
		switch string(key) {
		case "eventTime":
			bit, dst = 1<<0, &eventTime
		case "p_event_time":
			bit, dst = 1<<1, &pEventTime
		case "eventID":
			bit, dst = 1<<2, &r.id
		case "eventSource":
			bit, dst = 1<<3, &r.eventSource
		case "eventName":
			bit, dst = 1<<4, &r.eventName
		case "awsRegion":
			bit, dst = 1<<5, &r.awsRegion
		case "userAgent":
			bit, dst = 1<<6, &r.userAgent
		case "recipientAccountId":
			bit, dst = 1<<7, &r.recipientAccountID
		case "sourceIPAddress":
			bit, dst = 1<<8, &r.sourceIPAddress
		case "errorCode":
			bit, dst = 1<<9, &r.errorCode
		case "errorMessage":
			bit, dst = 1<<10, &r.errorMessage
		case "readOnly":
			bit = 1 << 11
		case "userIdentity":
			bit = 1 << 12
		case "requestParameters":
			bit = 1 << 13
		case "resources":
			bit = 1 << 14
		case "responseElements":
			bit = 1 << 15
		case "Records", "Events", "digestStartTime", "digestEndTime", "detail-type", "detail":
			// the reader treats objects with these keys as envelopes
			return -1
		default:
			return jsonx.Skip(b, v, d0+2)
		}
		if seen&bit != 0 {
			return -1
		}
		seen |= bit
		if dst != nil {
			return lineString(b, v, d0+2, dst)
		}
		switch bit {
		case 1 << 11:
			switch b[v] {
			case 't':
				r.readOnly = true
				return jsonx.Skip(b, v, d0+2)
			case '"':
				var s []byte
				end := lineString(b, v, d0+2, &s)
				r.readOnly = strings.EqualFold(string(s), "true")
				return end
			}
			return jsonx.Skip(b, v, d0+2)
		case 1 << 12:
			if b[v] != '{' {
				return jsonx.Skip(b, v, d0+2)
			}
			r.ui.object = true
			uiAt = v
			return p.lineIdentityMemo(b, v, d0, &r.ui)
		case 1 << 13:
			if b[v] != '{' {
				return jsonx.Skip(b, v, d0+2)
			}
			r.rpObject = true
			return lineRequestParameters(b, v, d0, &r)
		case 1 << 14:
			if b[v] != '[' {
				return jsonx.Skip(b, v, d0+2)
			}
			return lineResources(b, v, d0, &r)
		default:
			if b[v] != '{' {
				return jsonx.Skip(b, v, d0+2)
			}
			var seen uint8
			return jsonx.Object(b, v, d0+2, func(key []byte, esc bool, v int) int {
				if esc {
					return -1
				}
				for i, k := range signinKeys {
					if string(key) == k {
						if seen&(1<<i) != 0 {
							return -1
						}
						seen |= 1 << i
						return lineString(b, v, d0+3, &r.resp[i])
					}
				}
				return jsonx.Skip(b, v, d0+3)
			})
		}
	})
	if end < 0 || jsonx.SkipWS(b, end) != len(b) || len(r.id) == 0 || len(r.eventName) == 0 {
		return nil, false
	}
	r.time, r.hasTime = parseTime(eventTime)
	if !r.hasTime {
		r.time, r.hasTime = parseTime(pEventTime)
	}
	err = p.normalize(&r, fb, ev)
	if uiAt > 0 && len(b) <= math.MaxUint32 {
		ev.Spans = schema.Spans{
			IdentityARN: span(uiAt, r.ui.arnAt, len(r.ui.arn)),
			IssuerType:  span(uiAt, r.ui.issuerTypeAt, len(r.ui.issuerType)),
		}
	}
	return err, true
}

// span is the schema.Span of a string read in place at rel (0: none) from
// the start at of the block it lies in.
func span(at, rel, n int) schema.Span {
	if rel == 0 {
		return schema.Span{}
	}
	return schema.Span{Off: uint32(at + rel), Len: uint32(n)}
}

// lineString reads the value at b[v] into *dst when it is a string
// without escapes (nil when it is not a string); -1 for an escaped one.
func lineString(b []byte, v, depth int, dst *[]byte) int {
	if b[v] != '"' {
		*dst = nil
		return jsonx.Skip(b, v, depth)
	}
	end, esc := jsonx.String(b, v)
	if end < 0 || esc {
		return -1
	}
	*dst = b[v+1 : end-1]
	return end
}

// lineIdentity reads the userIdentity object at b[v] (depth 2).
func lineIdentity(b []byte, v, d0 int, ui *rawIdentity) int {
	end := lineIdentityFields(b, v, d0, ui)
	// where the strings read in place start, from the block's start (a
	// slice f of b starts at cap(b)-cap(f))
	at := func(f []byte) int {
		if f == nil {
			return 0
		}
		return cap(b) - cap(f) - v
	}
	ui.arnAt, ui.issuerTypeAt = at(ui.arn), at(ui.issuerType)
	return end
}

// lineIdentityFields is lineIdentity's reading of the fields.
func lineIdentityFields(b []byte, v, d0 int, ui *rawIdentity) int {
	var seen uint16
	return jsonx.Object(b, v, d0+2, func(key []byte, esc bool, v int) int {
		if esc {
			return -1
		}
		var bit uint16
		var dst *[]byte
		switch string(key) {
		case "type":
			bit, dst = 1<<0, &ui.typ
		case "arn":
			bit, dst = 1<<1, &ui.arn
		case "accountId":
			bit, dst = 1<<2, &ui.accountID
		case "accessKeyId":
			bit, dst = 1<<3, &ui.accessKeyID
		case "userName":
			bit, dst = 1<<4, &ui.userName
		case "invokedBy":
			bit, dst = 1<<5, &ui.invokedBy
		case "principalId":
			bit, dst = 1<<6, &ui.principalID
		case "sessionContext":
			bit = 1 << 7
		default:
			return jsonx.Skip(b, v, d0+3)
		}
		if seen&bit != 0 {
			return -1
		}
		seen |= bit
		if dst != nil {
			return lineString(b, v, d0+3, dst)
		}
		if b[v] != '{' {
			return jsonx.Skip(b, v, d0+3)
		}
		var issuerSeen bool
		return jsonx.Object(b, v, d0+3, func(key []byte, esc bool, v int) int {
			if esc {
				return -1
			}
			if string(key) != "sessionIssuer" {
				return jsonx.Skip(b, v, d0+4)
			}
			if issuerSeen {
				return -1
			}
			issuerSeen = true
			if b[v] != '{' {
				return jsonx.Skip(b, v, d0+4)
			}
			var arnSeen, nameSeen bool
			typeN := 0
			return jsonx.Object(b, v, d0+4, func(key []byte, esc bool, v int) int {
				if esc {
					return -1
				}
				switch string(key) {
				case "type":
					// read for the reader's hook only (schema.Spans): a
					// duplicated, escaped or non-string type is no reason
					// to decline the record
					typeN++
					ui.issuerType = nil
					if b[v] == '"' {
						if end, esc := jsonx.String(b, v); end >= 0 {
							if typeN == 1 && !esc {
								ui.issuerType = b[v+1 : end-1]
							}
							return end
						}
					}
					return jsonx.Skip(b, v, d0+5)
				case "arn":
					if arnSeen {
						return -1
					}
					arnSeen = true
					return lineString(b, v, d0+5, &ui.issuerARN)
				case "userName":
					if nameSeen {
						return -1
					}
					nameSeen = true
					return lineString(b, v, d0+5, &ui.issuerUserName)
				}
				return jsonx.Skip(b, v, d0+5)
			})
		})
	})
}

// lineRequestParameters reads the requestParameters object at b[v]
// (depth 2).
func lineRequestParameters(b []byte, v, d0 int, r *raw) int {
	var seen uint32
	return jsonx.Object(b, v, d0+2, func(key []byte, esc bool, v int) int {
		if esc {
			return -1
		}
		switch string(key) {
		case "secretId":
			if seen&1 != 0 {
				return -1
			}
			seen |= 1
			return lineString(b, v, d0+3, &r.rpSecretID)
		case "secretIdList":
			if seen&2 != 0 {
				return -1
			}
			seen |= 2
			if b[v] != '[' {
				return jsonx.Skip(b, v, d0+3)
			}
			return jsonx.Array(b, v, d0+3, func(n, e int) int {
				if n == 0 {
					return lineString(b, e, d0+4, &r.rpSecretIDList)
				}
				return jsonx.Skip(b, e, d0+4)
			})
		}
		for i, k := range resourceKeys[1:] {
			if string(key) == k {
				bit := uint32(4) << i
				if seen&bit != 0 {
					return -1
				}
				seen |= bit
				return lineString(b, v, d0+3, &r.rpKeys[i])
			}
		}
		return jsonx.Skip(b, v, d0+3)
	})
}

// lineResources reads the ARNs of the resources array at b[v] (depth 2).
func lineResources(b []byte, v, d0 int, r *raw) int {
	return jsonx.Array(b, v, d0+2, func(n, e int) int {
		if b[e] != '{' {
			return jsonx.Skip(b, e, d0+3)
		}
		var arn []byte
		var arnSeen bool
		end := jsonx.Object(b, e, d0+3, func(key []byte, esc bool, v int) int {
			if esc {
				return -1
			}
			if string(key) != "ARN" {
				return jsonx.Skip(b, v, d0+4)
			}
			if arnSeen {
				return -1
			}
			arnSeen = true
			return lineString(b, v, d0+4, &arn)
		})
		if r.resSecretARN == nil && bytes.Contains(arn, []byte(":secret:")) {
			r.resSecretARN = arn
		}
		if r.resFirstARN == nil && len(arn) > 0 {
			r.resFirstARN = arn
		}
		return end
	})
}

// lineIdentityMemo is lineIdentity with a memo. A principal's records
// repeat its userIdentity block byte for byte for as long as its session
// lasts. A block kept in the memo stands in for reading it again (see
// jsonx.Memo); its fields point into the memo's copy (bytes equal to the
// record's) and are read before the next ParseLine, the only place a
// block is kept.
func (p *Parser) lineIdentityMemo(b []byte, v, d0 int, ui *rawIdentity) int {
	depth := d0 + 2 // lineIdentity's
	if m, end, ok := p.identityMemo.Lookup(b, v, depth); ok {
		obj := ui.object // the caller's, not the block's
		*ui = *m
		ui.object = obj
		return end
	}
	end := lineIdentity(b, v, d0, ui)
	text, m, ok := p.identityMemo.Store(b, v, end, depth)
	if !ok {
		return end
	}
	at := func(f []byte) []byte { return jsonx.Rebase(b, v, text, f) }
	*m = rawIdentity{
		typ: at(ui.typ), arn: at(ui.arn), accountID: at(ui.accountID), accessKeyID: at(ui.accessKeyID),
		userName: at(ui.userName), invokedBy: at(ui.invokedBy), principalID: at(ui.principalID),
		issuerARN: at(ui.issuerARN), issuerUserName: at(ui.issuerUserName),
		issuerType: at(ui.issuerType), arnAt: ui.arnAt, issuerTypeAt: ui.issuerTypeAt,
	}
	return end
}
