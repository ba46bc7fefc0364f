package schema

import (
	"encoding/binary"
	"strconv"
	"time"
	"unicode/utf8"
	"unsafe"
)

// AppendJSON appends the JSON form of e to b and returns the extended
// buffer. The output is byte-for-byte what encoding/json.Marshal produces
// for e (same field order, omitempty rules and string escaping), without
// reflection or allocations beyond growing b. Times outside the years
// 0..9999, which encoding/json refuses, are written as the zero time.
func (e *Event) AppendJSON(b []byte) []byte {
	b = append(b, `{"time":"`...)
	t := e.Time
	if y := t.Year(); y < 0 || y > 9999 {
		t = time.Time{}
	}
	b = t.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","source":`...)
	b = appendString(b, e.Source)
	b = append(b, `,"id":`...)
	b = appendString(b, e.ID)
	b = append(b, `,"principal":`...)
	b = appendString(b, e.Principal)
	b = append(b, `,"principal_name":`...)
	b = appendString(b, e.PrincipalName)
	b = append(b, `,"principal_type":`...)
	b = appendString(b, e.PrincipalType)
	if e.Session != "" {
		b = append(b, `,"session":`...)
		b = appendString(b, e.Session)
	}
	b = append(b, `,"account":`...)
	b = appendString(b, e.Account)
	if e.AccessKey != "" {
		b = append(b, `,"access_key":`...)
		b = appendString(b, e.AccessKey)
	}
	if len(e.Policies) > 0 {
		b = append(b, `,"policies":[`...)
		for i, p := range e.Policies {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, p)
		}
		b = append(b, ']')
	}
	if e.TokenHMAC != "" {
		b = append(b, `,"token_hmac":`...)
		b = appendString(b, e.TokenHMAC)
	}
	if e.AuthMethod != "" {
		b = append(b, `,"auth_method":`...)
		b = appendString(b, e.AuthMethod)
	}
	b = append(b, `,"action":`...)
	b = appendString(b, e.Action)
	b = append(b, `,"resource":`...)
	b = appendString(b, e.Resource)
	b = append(b, `,"mount":`...)
	b = appendString(b, e.Mount)
	if e.MountType != "" {
		b = append(b, `,"mount_type":`...)
		b = appendString(b, e.MountType)
	}
	b = append(b, `,"namespace":`...)
	b = appendString(b, e.Namespace)
	b = append(b, `,"region":`...)
	b = appendString(b, e.Region)
	b = append(b, `,"source_ip":`...)
	b = appendString(b, e.SourceIP)
	b = append(b, `,"source_ip_raw":`...)
	b = appendString(b, e.SourceIPRaw)
	if e.SourceIsService {
		b = append(b, `,"source_is_service":true`...)
	}
	b = append(b, `,"user_agent":`...)
	b = appendString(b, e.UserAgent)
	b = append(b, `,"outcome":`...)
	b = appendString(b, e.Outcome)
	b = append(b, `,"error":`...)
	b = appendString(b, e.Error)
	if e.FailureKind != "" {
		b = append(b, `,"failure_kind":`...)
		b = appendString(b, e.FailureKind)
	}
	if e.Auth {
		b = append(b, `,"auth":true`...)
	} else {
		b = append(b, `,"auth":false`...)
	}
	if e.ReadOnly {
		b = append(b, `,"read_only":true`...)
	}
	if e.HTTPStatus != 0 {
		b = append(b, `,"http_status":`...)
		b = strconv.AppendInt(b, int64(e.HTTPStatus), 10)
	}
	return append(b, '}')
}

const (
	lows  = 0x0101010101010101
	highs = 0x8080808080808080
)

// plainPrefix returns how many leading bytes of s, in whole blocks of
// eight, encoding/json writes unchanged: no control characters, no
// non-ASCII, none of " \\ < > &.
func plainPrefix(s string) int {
	if len(s) < 8 {
		return 0
	}
	// a read-only view of the string's bytes, for eight-byte loads
	b := unsafe.Slice(unsafe.StringData(s), len(s))
	i := 0
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		q := x ^ (lows * '"')
		bs := x ^ (lows * '\\')
		lt := x ^ (lows * '<')
		gt := x ^ (lows * '>')
		am := x ^ (lows * '&')
		m := x | ((x - lows*0x20) &^ x) | // non-ASCII, or below 0x20
			((q - lows) &^ q) | ((bs - lows) &^ bs) | ((lt - lows) &^ lt) | ((gt - lows) &^ gt) | ((am - lows) &^ am)
		if m&highs != 0 {
			break
		}
	}
	return i
}

// safeASCII[c] is true for ASCII bytes encoding/json writes unescaped
// (with its default HTML escaping of <, > and &).
var safeASCII = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = true
	}
	t['"'], t['\\'], t['<'], t['>'], t['&'] = false, false, false, false, false
	return t
}()

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string exactly as encoding/json does:
// HTML-sensitive characters and U+2028/U+2029 escaped, invalid UTF-8
// replaced by U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	i := plainPrefix(s)
	for i < len(s) {
		c := s[i]
		if c < utf8.RuneSelf {
			if safeASCII[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
