// Package chsql owns what both storage backends share about talking to
// ClickHouse: the column lists and the RowBinary encoding of events and
// findings, the 16-byte address form used for CIDR queries, bound query
// parameters and their strict literal form for servers that cannot bind
// parameters, and the tabular query Result.
package chsql

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// EventColumns is the explicit column list of every events insert (18.x
// servers require one; it also keeps inserts valid when columns are added).
var EventColumns = []string{
	"day", "time", "source", "id", "principal", "principal_name", "principal_type", "session",
	"account", "access_key", "policies", "token_hmac", "auth_method", "action", "resource",
	"mount", "mount_type", "namespace", "region", "source_ip", "source_ip_raw", "ip",
	"source_is_service", "user_agent", "outcome", "error", "failure_kind", "auth", "read_only", "http_status",
	"resource_name", "key_principal", "key_issue", "country", "asn", "as_org", "net_label", "token_accessor",
	"raw",
}

// PrincipalColumns is the column list of every principal_events insert:
// the same events, written by the inserter next to the events block (see
// migrations 0005 and 0018) rather than copied by a materialized view.
var PrincipalColumns = []string{
	"day", "time", "id", "principal", "access_key", "action", "resource",
	"source_ip", "outcome", "error", "failure_kind", "token_accessor",
}

// IPColumns is the column list of every ip_events insert (migration 0019),
// written by the inserter next to the events block.
var IPColumns = []string{
	"day", "time", "ip", "id", "principal", "principal_name", "resource",
	"source_ip", "outcome", "country", "asn", "as_org",
}

// FindingColumns is the explicit column list of every findings insert.
var FindingColumns = []string{
	"day", "time", "id", "detector", "severity", "principal", "principal_name", "resource",
	"source_ip", "source", "account", "count", "event_ids", "summary", "reason", "dedupe_key",
	"revision", "first_time", "last_time", "late", "attr_keys", "attr_values", "incident_id",
}

// IP16 returns the address as 16 bytes (IPv4 mapped into IPv6); zeros when
// s is empty or not an address.
func IP16(s string) [16]byte {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return [16]byte{}
	}
	return a.Unmap().As16()
}

// IPRange parses an address or CIDR and returns the inclusive 16-byte range
// it covers.
func IPRange(s string) (lo, hi [16]byte, err error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, perr := netip.ParsePrefix(s)
		if perr != nil {
			return lo, hi, fmt.Errorf("ip %q: %w", s, perr)
		}
		p = p.Masked()
		bits := p.Bits()
		if p.Addr().Is4() {
			bits += 96
		}
		lo = p.Addr().As16()
		hi = lo
		for i := bits; i < 128; i++ {
			hi[i/8] |= 1 << (7 - uint(i%8))
		}
		return lo, hi, nil
	}
	a, perr := netip.ParseAddr(s)
	if perr != nil {
		return lo, hi, fmt.Errorf("ip %q: %w", s, perr)
	}
	lo = a.Unmap().As16()
	return lo, lo, nil
}

// Day returns the UTC day of t as ClickHouse Date text.
func Day(t time.Time) string { return t.UTC().Format("2006-01-02") }

// Attributes flattens a map into sorted parallel key and value arrays.
func Attributes(m map[string]string) (keys, vals []string) {
	keys = make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sortStrings(keys)
	vals = make([]string, len(keys))
	for i, k := range keys {
		vals[i] = m[k]
	}
	return keys, vals
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func clampU32(v int) uint32 {
	if v < 0 {
		return 0
	}
	if v > 1<<32-1 {
		return 1<<32 - 1
	}
	return uint32(v)
}

// ClampTime returns t in UTC within DateTime's range (1970 to 2105).
func ClampTime(t time.Time) time.Time {
	t = t.UTC()
	if t.Unix() < 0 {
		return time.Unix(0, 0).UTC()
	}
	if t.Unix() > 1<<32-1 {
		return time.Unix(1<<32-1, 0).UTC()
	}
	return t
}

// Param is one bound query parameter: a {Name:Type} placeholder and its
// value in ClickHouse's text form (decimal for integer types).
type Param struct {
	Name, Type, Value string
}

// Params is a parameter set.
type Params []Param

// Map returns name → value.
func (ps Params) Map() map[string]string {
	m := make(map[string]string, len(ps))
	for _, p := range ps {
		m[p.Name] = p.Value
	}
	return m
}

// Str, U64 and U32 build parameters of the placeholder types the queries use.
func Str(name, v string) Param        { return Param{name, "String", v} }
func U64(name string, v uint64) Param { return Param{name, "UInt64", strconv.FormatUint(v, 10)} }
func U32(name string, v uint32) Param {
	return Param{name, "UInt32", strconv.FormatUint(uint64(v), 10)}
}

// ErrBind reports a query whose placeholders and parameters do not match.
var ErrBind = errors.New("query parameter mismatch")

var placeholderRE = regexp.MustCompile(`\{([A-Za-z_][A-Za-z0-9_]*):([A-Za-z0-9]+)\}`)

// Placeholders returns the {name:Type} placeholders of sql.
func Placeholders(sql string) map[string]string {
	out := map[string]string{}
	for _, m := range placeholderRE.FindAllStringSubmatch(sql, -1) {
		out[m[1]] = m[2]
	}
	return out
}

// Check verifies that every placeholder has a parameter of the same type
// and every parameter a placeholder.
func Check(sql string, ps Params) error {
	ph := Placeholders(sql)
	seen := map[string]bool{}
	var errs []error
	for _, p := range ps {
		seen[p.Name] = true
		typ, ok := ph[p.Name]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("parameter %s has no placeholder: %w", p.Name, ErrBind))
		case typ != p.Type:
			errs = append(errs, fmt.Errorf("parameter %s is %s, placeholder wants %s: %w", p.Name, p.Type, typ, ErrBind))
		}
	}
	for n := range ph {
		if !seen[n] {
			errs = append(errs, fmt.Errorf("placeholder %s has no parameter: %w", n, ErrBind))
		}
	}
	return errors.Join(errs...)
}

// Bind replaces every {name:Type} placeholder with the strict literal of its
// parameter. It exists for servers whose protocol cannot carry parameters
// (18.x over the native protocol); everything else binds on the server.
func Bind(sql string, ps Params) (string, error) {
	if err := Check(sql, ps); err != nil {
		return "", err
	}
	m := map[string]Param{}
	for _, p := range ps {
		m[p.Name] = p
	}
	var bindErr error
	out := placeholderRE.ReplaceAllStringFunc(sql, func(ph string) string {
		sm := placeholderRE.FindStringSubmatch(ph)
		lit, err := Literal(m[sm[1]])
		if err != nil {
			bindErr = err
		}
		return lit
	})
	return out, bindErr
}

// Literal renders p as a ClickHouse literal. Strings become a single-quoted
// literal in which every byte other than printable ASCII letters, digits,
// space and punctuation (and every quote and backslash) is written as a \xHH
// escape, so the literal is plain ASCII and cannot end early whatever the
// input. Integers are validated and written in decimal.
func Literal(p Param) (string, error) {
	switch p.Type {
	case "String":
		return QuoteString(p.Value), nil
	case "UInt64", "UInt32":
		if _, err := strconv.ParseUint(p.Value, 10, 64); err != nil {
			return "", fmt.Errorf("parameter %s: %q is not an unsigned integer: %w", p.Name, p.Value, ErrBind)
		}
		return p.Value, nil // digits only, checked above
	}
	return "", fmt.Errorf("parameter %s: unsupported type %s: %w", p.Name, p.Type, ErrBind)
}

// QuoteString renders s as a strict single-quoted ClickHouse string literal.
func QuoteString(s string) string {
	const hexd = "0123456789ABCDEF"
	b := make([]byte, 0, len(s)+2)
	b = append(b, '\'')
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c < 0x7f && c != '\'' && c != '\\' {
			b = append(b, c)
			continue
		}
		b = append(b, '\\', 'x', hexd[c>>4], hexd[c&15])
	}
	return string(append(b, '\''))
}

// Result is a query's answer as a table.
type Result struct {
	Columns []string
	// Rows hold string, int64, uint64, float64 or time.Time values.
	Rows [][]any
	// Notes explain an answer to the person asking (an empty answer
	// with near matches); never part of the rows.
	Notes []string
}
