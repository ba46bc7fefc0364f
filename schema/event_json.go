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
	if n := len(b) + e.sizeHint(); n > cap(b) {
		b = append(b[:cap(b)], make([]byte, n-cap(b))...)[:len(b)]
	}
	b = append(b, `{"time":"`...)
	b = appendTime(b, e.Time)
	b = appendField(b, `","source":"`, e.Source)
	b = appendField(b, `,"id":"`, e.ID)
	b = appendField(b, `,"principal":"`, e.Principal)
	b = appendField(b, `,"principal_name":"`, e.PrincipalName)
	b = appendField(b, `,"principal_type":"`, e.PrincipalType)
	if e.Session != "" {
		b = appendField(b, `,"session":"`, e.Session)
	}
	b = appendField(b, `,"account":"`, e.Account)
	if e.AccessKey != "" {
		b = appendField(b, `,"access_key":"`, e.AccessKey)
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
		b = appendField(b, `,"token_hmac":"`, e.TokenHMAC)
	}
	if e.TokenAccessor != "" {
		b = appendField(b, `,"token_accessor":"`, e.TokenAccessor)
	}
	if e.AuthMethod != "" {
		b = appendField(b, `,"auth_method":"`, e.AuthMethod)
	}
	b = appendField(b, `,"action":"`, e.Action)
	b = appendField(b, `,"resource":"`, e.Resource)
	b = appendField(b, `,"mount":"`, e.Mount)
	if e.MountType != "" {
		b = appendField(b, `,"mount_type":"`, e.MountType)
	}
	b = appendField(b, `,"namespace":"`, e.Namespace)
	b = appendField(b, `,"region":"`, e.Region)
	b = appendField(b, `,"source_ip":"`, e.SourceIP)
	b = appendField(b, `,"source_ip_raw":"`, e.SourceIPRaw)
	if e.SourceIsService {
		b = append(b, `,"source_is_service":true`...)
	}
	if e.InvokedBy != "" {
		b = appendField(b, `,"invoked_by":"`, e.InvokedBy)
	}
	b = appendField(b, `,"user_agent":"`, e.UserAgent)
	b = appendField(b, `,"outcome":"`, e.Outcome)
	b = appendField(b, `,"error":"`, e.Error)
	if e.FailureKind != "" {
		b = appendField(b, `,"failure_kind":"`, e.FailureKind)
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
	if e.IssuedKey != "" {
		b = appendField(b, `,"issued_key":"`, e.IssuedKey)
	}
	if e.LeaseID != "" {
		b = appendField(b, `,"lease_id":"`, e.LeaseID)
	}
	if e.KeyPrincipal != "" {
		b = appendField(b, `,"key_principal":"`, e.KeyPrincipal)
	}
	if e.KeyIssue != "" {
		b = appendField(b, `,"key_issue":"`, e.KeyIssue)
	}
	if e.Country != "" {
		b = appendField(b, `,"country":"`, e.Country)
	}
	if e.ASN != 0 {
		b = append(b, `,"asn":`...)
		b = strconv.AppendInt(b, int64(e.ASN), 10)
	}
	if e.ASOrg != "" {
		b = appendField(b, `,"as_org":"`, e.ASOrg)
	}
	if e.NetLabel != "" {
		b = appendField(b, `,"net_label":"`, e.NetLabel)
	}
	return append(b, '}')
}

// sizeHint is about the length of e's JSON form when no string needs
// escaping, so AppendJSON grows its buffer at most once.
func (e *Event) sizeHint() int {
	n := 400 + len(e.Source) + len(e.ID) + len(e.Principal) + len(e.PrincipalName) + len(e.PrincipalType) +
		len(e.Session) + len(e.Account) + len(e.AccessKey) + len(e.TokenHMAC) + len(e.TokenAccessor) + len(e.AuthMethod) +
		len(e.Action) + len(e.Resource) + len(e.Mount) + len(e.MountType) + len(e.Namespace) + len(e.Region) +
		len(e.SourceIP) + len(e.SourceIPRaw) + len(e.InvokedBy) + len(e.UserAgent) + len(e.Outcome) + len(e.Error) + len(e.FailureKind) +
		len(e.IssuedKey) + len(e.LeaseID) + len(e.KeyPrincipal) + len(e.KeyIssue) +
		len(e.Country) + len(e.ASOrg) + len(e.NetLabel) + 40
	for _, p := range e.Policies {
		n += len(p) + 3
	}
	return n
}

// Unix seconds of 0000-01-01T00:00:00Z and 10000-01-01T00:00:00Z: the
// years encoding/json accepts.
const (
	minJSONUnix = -62167219200
	maxJSONUnix = 253402300800
)

// appendTime appends t as time.RFC3339Nano, the way encoding/json writes
// a time.Time (without the quotes); a time outside the years 0..9999 is
// written as the zero time. UTC times, the normal case, are formatted
// here directly; others go through time.AppendFormat.
func appendTime(b []byte, t time.Time) []byte {
	if t.Location() != time.UTC {
		// the year checked is the one written, in t's zone
		if y := t.Year(); y < 0 || y > 9999 {
			t = time.Time{}
		}
		return t.AppendFormat(b, time.RFC3339Nano)
	}
	sec := t.Unix()
	if sec < minJSONUnix || sec >= maxJSONUnix {
		t = time.Time{}
		sec = t.Unix()
	}
	// days since 0000-03-01, a civil calendar whose years start in March
	// (so the leap day is a year's last): Howard Hinnant's days_from_civil
	// inverse, on non-negative numbers only
	s := sec - minJSONUnix // from 0000-01-01, >= 0
	days := s / 86400
	sod := int(s - days*86400)
	days -= 60 // 0000-01-01 .. 0000-03-01 (0000 is a leap year)
	era := int64(0)
	if days < 0 {
		// January and February of year 0
		days += 146097
		era = -1
	}
	era += days / 146097
	doe := days % 146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	day := int(doy - (153*mp+2)/5 + 1)
	month := int(mp + 3)
	year := int(yoe + era*400)
	if month > 12 {
		month -= 12
		year++
	}
	b = append(b,
		byte('0'+year/1000), byte('0'+year/100%10), byte('0'+year/10%10), byte('0'+year%10), '-',
		byte('0'+month/10), byte('0'+month%10), '-',
		byte('0'+day/10), byte('0'+day%10), 'T',
		byte('0'+sod/36000), byte('0'+sod/3600%10), ':',
		byte('0'+sod/600%6), byte('0'+sod/60%10), ':',
		byte('0'+sod%60/10), byte('0'+sod%10))
	if ns := t.Nanosecond(); ns != 0 {
		var f [10]byte
		f[0] = '.'
		for i := 9; i > 0; i-- {
			f[i] = byte('0' + ns%10)
			ns /= 10
		}
		n := 10
		for f[n-1] == '0' {
			n--
		}
		b = append(b, f[:n]...)
	}
	return append(b, 'Z')
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
		// '"' (0x22) and '&' (0x26) differ only in bit 2, '<' (0x3c)
		// and '>' (0x3e) only in bit 1: setting that bit maps each pair,
		// and no other byte, onto one value
		qa := (x | lows*0x04) ^ (lows * '&')
		lg := (x | lows*0x02) ^ (lows * '>')
		bs := x ^ (lows * '\\')
		// a byte marked below is non-ASCII, below 0x20, or zero in qa,
		// lg or bs (borrows can mark more bytes, but only above a byte
		// that is marked rightly, so "any marked" is exact)
		m := x | ((x - lows*0x20) &^ x) | ((qa - lows) &^ qa) | ((lg - lows) &^ lg) | ((bs - lows) &^ bs)
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

// appendField appends key, which ends with a string's opening quote, and
// the rest of s as a JSON string.
func appendField(b []byte, key, s string) []byte {
	b = append(b, key...)
	return appendStringBody(b, s)
}

// appendString appends s as a JSON string exactly as encoding/json does:
// HTML-sensitive characters and U+2028/U+2029 escaped, invalid UTF-8
// replaced by U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	return appendStringBody(b, s)
}

// appendStringBody is appendString after the opening quote.
func appendStringBody(b []byte, s string) []byte {
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
