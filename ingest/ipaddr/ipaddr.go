// Package ipaddr owns the canonical form of client addresses found in audit
// logs: CloudTrail's sourceIPAddress and Vault's remote_address, with every
// shape real logs use (ip, ip:port, [v6]:port, comma lists, IPv4 with
// leading zeros, AWS service names, "AWS Internal").
package ipaddr

import (
	"net/netip"
	"strings"
)

// Canonical returns the canonical text of the client address in raw
// (netip.Addr.String(): IPv4 dotted decimal, IPv6 RFC 5952, no zone, IPv4
// mapped IPv6 unmapped) and whether raw names an AWS service rather than a
// client ("AWS Internal", "*.amazonaws.com"). ip is empty when raw carries
// no address.
//
// Rules: a comma-separated list (X-Forwarded-For style) yields its first
// address; a port ("1.2.3.4:5678", "[::1]:80") is dropped; an IPv4 whose
// octets carry leading zeros ("06.237.252.245") is read as decimal with the
// zeros stripped ("6.237.252.245") — CloudTrail anonymisers write these and
// inet_aton's octal reading would name a different host.
func Canonical(raw string) (ip string, isService bool) {
	s := raw
	if i := strings.IndexByte(s, ','); i >= 0 {
		s = s[:i]
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return "", false
	}
	if s == "AWS Internal" || strings.HasSuffix(s, ".amazonaws.com") || strings.HasSuffix(s, ".amazonaws.com.cn") {
		return "", true
	}
	a, ok := parse(s)
	if !ok {
		return "", false
	}
	a = a.Unmap().WithZone("")
	var buf [64]byte
	out := a.AppendTo(buf[:0])
	if string(out) == raw {
		return raw, false // already canonical: no allocation
	}
	return string(out), false
}

func parse(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a, true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr(), true
	}
	if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil {
			return a, true
		}
	}
	if a, ok := parseLeadingZeroIPv4(s); ok {
		return a, true
	}
	// ip:port where ip has leading zeros
	if i := strings.LastIndexByte(s, ':'); i > 0 && strings.Count(s, ":") == 1 {
		return parseLeadingZeroIPv4(s[:i])
	}
	return netip.Addr{}, false
}

// parseLeadingZeroIPv4 reads a dotted-quad with up to three decimal digits
// per octet, leading zeros allowed.
func parseLeadingZeroIPv4(s string) (netip.Addr, bool) {
	var oct [4]byte
	n, val, digits := 0, 0, 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			if digits == 0 || n > 3 {
				return netip.Addr{}, false
			}
			oct[n] = byte(val)
			n++
			val, digits = 0, 0
			continue
		}
		c := s[i]
		if c < '0' || c > '9' || digits == 3 {
			return netip.Addr{}, false
		}
		val = val*10 + int(c-'0')
		digits++
		if val > 255 {
			return netip.Addr{}, false
		}
	}
	if n != 4 {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4(oct), true
}

// memoSlots is the size of a Memo.
const memoSlots = 64

// Memo remembers the canonical form of the last addresses it was asked
// about, for a parser that sees the same clients again and again: a
// direct-mapped table of memoSlots raw addresses, each found by its length
// and last eight bytes (where addresses differ). The zero Memo is ready to
// use. Not safe for concurrent use.
type Memo struct {
	slots [memoSlots]struct {
		raw, ip   string
		isService bool
	}
}

// Canonical is the package's Canonical, remembered. keep, if not nil,
// turns a new result's ip into the string to hand out (and remember).
func (m *Memo) Canonical(raw string, keep func(string) string) (ip string, isService bool) {
	var x uint64
	n := len(raw)
	for i := max(0, n-8); i < n; i++ {
		x = x<<8 | uint64(raw[i])
	}
	x ^= uint64(n) << 56
	e := &m.slots[(x*0x9e3779b97f4a7c15)>>(64-6)]
	if e.raw == raw && raw != "" {
		return e.ip, e.isService
	}
	ip, isService = Canonical(raw)
	if keep != nil {
		ip = keep(ip)
	}
	e.raw, e.ip, e.isService = raw, ip, isService
	return ip, isService
}
