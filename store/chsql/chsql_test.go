package chsql

import (
	"encoding/binary"
	"strconv"
	"strings"
	"testing"
	"time"

	"auditwatch/schema"
)

// decodeLiteral is an independent reader of ClickHouse's single-quoted
// string literal. It returns the value and the number of bytes the literal
// spans, the way the server's lexer reads it.
func decodeLiteral(t *testing.T, s string) (string, int) {
	t.Helper()
	if s == "" || s[0] != '\'' {
		t.Fatalf("literal %q does not start with a quote", s)
	}
	var b []byte
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '\'':
			return string(b), i + 1
		case '\\':
			if i+1 >= len(s) {
				t.Fatalf("literal %q ends inside an escape", s)
			}
			i++
			if s[i] != 'x' || i+2 >= len(s) {
				t.Fatalf("literal %q uses escape \\%c (QuoteString only writes \\xHH)", s, s[i])
			}
			v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				t.Fatalf("literal %q: bad hex escape: %v", s, err)
			}
			b = append(b, byte(v))
			i += 2
		default:
			if c < 0x20 || c >= 0x7f {
				t.Fatalf("literal %q carries raw byte %#x", s, c)
			}
			b = append(b, c)
		}
	}
	t.Fatalf("literal %q is not terminated", s)
	return "", 0
}

func FuzzQuoteString(f *testing.F) {
	for _, s := range []string{"", "'", "\\", "\\'", "'; DROP TABLE t; --", "\x00", "\xff\xfe", "é", "{x:String}", "a\nb\tc\r"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		lit := QuoteString(s)
		got, n := decodeLiteral(t, lit)
		if n != len(lit) {
			t.Fatalf("literal of %q ends at byte %d of %d: the rest would be SQL", s, n, len(lit))
		}
		if got != s {
			t.Fatalf("literal of %q reads back as %q", s, got)
		}
		bound, err := Bind("SELECT {v:String} AS v", Params{Str("v", s)})
		if err != nil || bound != "SELECT "+lit+" AS v" {
			t.Fatalf("Bind = %q, %v", bound, err)
		}
	})
}

func TestBindChecks(t *testing.T) {
	if _, err := Bind("SELECT {a:String}", nil); err == nil {
		t.Error("missing parameter accepted")
	}
	if _, err := Bind("SELECT 1", Params{Str("a", "x")}); err == nil {
		t.Error("unused parameter accepted")
	}
	if _, err := Bind("SELECT {a:UInt64}", Params{Str("a", "1")}); err == nil {
		t.Error("type mismatch accepted")
	}
	if _, err := Bind("SELECT {a:UInt64}", Params{{Name: "a", Type: "UInt64", Value: "1 OR 1"}}); err == nil {
		t.Error("non-numeric UInt64 accepted")
	}
	got, err := Bind("LIMIT {n:UInt64}", Params{U64("n", 7)})
	if err != nil || got != "LIMIT 7" {
		t.Errorf("Bind = %q, %v", got, err)
	}
}

func TestIPRange(t *testing.T) {
	tests := []struct{ in, lo, hi string }{
		{"10.0.0.0/24", "10.0.0.0", "10.0.0.255"},
		{"10.0.0.7", "10.0.0.7", "10.0.0.7"},
		{"2001:db8::/32", "2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"},
	}
	for _, tc := range tests {
		lo, hi, err := IPRange(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		if lo != IP16(tc.lo) || hi != IP16(tc.hi) {
			t.Errorf("IPRange(%s) = %x..%x", tc.in, lo, hi)
		}
	}
	if _, _, err := IPRange("10.0.0.0/33"); err == nil || !strings.Contains(err.Error(), "10.0.0.0/33") {
		t.Errorf("bad CIDR error = %v", err)
	}
}

// rbReader is an independent RowBinary reader for the tests.
type rbReader struct {
	t   *testing.T
	b   []byte
	off int
}

func (r *rbReader) n(k int) []byte {
	if r.off+k > len(r.b) {
		r.t.Fatalf("row ends at %d, need %d more bytes", len(r.b), r.off+k-len(r.b))
	}
	v := r.b[r.off : r.off+k]
	r.off += k
	return v
}

func (r *rbReader) str() string {
	l, k := binary.Uvarint(r.b[r.off:])
	if k <= 0 {
		r.t.Fatalf("bad length at %d", r.off)
	}
	r.off += k
	return string(r.n(int(l)))
}

func (r *rbReader) strs() []string {
	l, k := binary.Uvarint(r.b[r.off:])
	if k <= 0 {
		r.t.Fatalf("bad array length at %d", r.off)
	}
	r.off += k
	out := []string{}
	for i := uint64(0); i < l; i++ {
		out = append(out, r.str())
	}
	return out
}

// FuzzAppendEventRowBinary: whatever the attacker-controlled fields hold, a
// row reads back field for field and ends exactly where the next begins.
func FuzzAppendEventRowBinary(f *testing.F) {
	f.Add("p", "secret/x", "10.0.0.1", "ua", "pol", int64(1700000000), 200)
	f.Add("a\tb", "c\nd", "::1", "\\", "'", int64(-5), -1)
	f.Add("\x00", "\r\n", "not-an-ip", "\xff", "]['", int64(1<<40), 70000)
	f.Fuzz(func(t *testing.T, principal, resource, ip, ua, pol string, sec int64, status int) {
		ev := schema.Event{Time: time.Unix(sec, 0), ID: "id", Principal: principal, Resource: resource, SourceIP: ip,
			UserAgent: ua, Policies: []string{pol, pol}, HTTPStatus: status, Auth: true}
		row := AppendEventRowBinary(nil, &ev)
		row = append(row, 0xAB) // the next row's first byte must stay unread
		r := &rbReader{t: t, b: row}
		ct := ClampTime(ev.Time)
		if d := binary.LittleEndian.Uint16(r.n(2)); int64(d) != ct.Unix()/86400 {
			t.Fatalf("day %d", d)
		}
		if s := binary.LittleEndian.Uint32(r.n(4)); int64(s) != ct.Unix() {
			t.Fatalf("time %d", s)
		}
		got := map[string]string{}
		for _, c := range EventColumns[2:] {
			switch c {
			case "policies":
				if p := r.strs(); len(p) != 2 || p[0] != pol || p[1] != pol {
					t.Fatalf("policies %q", p)
				}
			case "ip":
				if a := r.n(16); [16]byte(a) != IP16(ip) {
					t.Fatalf("ip %x", a)
				}
			case "source_is_service", "auth", "read_only":
				got[c] = string('0' + r.n(1)[0])
			case "http_status":
				got[c] = strconv.Itoa(int(binary.LittleEndian.Uint16(r.n(2))))
			case "asn":
				got[c] = strconv.Itoa(int(binary.LittleEndian.Uint32(r.n(4))))
			default:
				got[c] = r.str()
			}
		}
		if r.off != len(row)-1 {
			t.Fatalf("row is %d bytes, reader consumed %d", len(row)-1, r.off)
		}
		want := map[string]string{"principal": principal, "resource": resource, "source_ip": ip, "user_agent": ua, "auth": "1", "read_only": "0"}
		if status > 0 && status < 65536 {
			want["http_status"] = strconv.Itoa(status)
		} else {
			want["http_status"] = "0"
		}
		for k, v := range want {
			if got[k] != v {
				t.Fatalf("column %s reads back %q, want %q", k, got[k], v)
			}
		}
	})
}

func TestFindingRowBinaryLength(t *testing.T) {
	f := schema.Finding{ID: "x", EventIDs: []string{"a", "b"}, Attributes: map[string]string{"k2": "v2", "k1": "v1"}, Count: 3, IncidentID: "inc"}
	row := AppendFindingRowBinary(nil, &f)
	r := &rbReader{t: t, b: row}
	r.n(6)
	for i := 0; i < 9; i++ {
		r.str()
	}
	if c := binary.LittleEndian.Uint32(r.n(4)); c != 3 {
		t.Fatalf("count %d", c)
	}
	if ids := r.strs(); len(ids) != 2 {
		t.Fatalf("event ids %q", ids)
	}
	r.str()
	r.str()
	r.str()
	r.n(4 + 4 + 4 + 1)
	if k, v := r.strs(), r.strs(); k[0] != "k1" || v[1] != "v2" {
		t.Fatalf("attributes %q %q", k, v)
	}
	if inc := r.str(); inc != "inc" {
		t.Fatalf("incident_id %q", inc)
	}
	if r.off != len(row) {
		t.Fatalf("finding row has %d trailing bytes", len(row)-r.off)
	}
}

// FuzzAppendPrincipalRowBinary: a principal_events row reads back
// field for field in PrincipalColumns order and ends where the next begins.
func FuzzAppendPrincipalRowBinary(f *testing.F) {
	f.Add("p", "AKIA1", "secret/x", "10.0.0.1", "permission\tdenied", int64(1700000000))
	f.Add("\x00", "", "c\nd", "::1", "\xff'", int64(-5))
	f.Fuzz(func(t *testing.T, principal, key, resource, ip, errText string, sec int64) {
		ev := schema.Event{Time: time.Unix(sec, 0), ID: "id-" + principal, Principal: principal, AccessKey: key, Action: "vault:read",
			Resource: resource, SourceIP: ip, Outcome: "failure", Error: errText, FailureKind: "denied", UserAgent: "not written"}
		row := AppendPrincipalRowBinary(nil, &ev)
		row = append(row, 0xAB)
		r := &rbReader{t: t, b: row}
		ct := ClampTime(ev.Time)
		if d := binary.LittleEndian.Uint16(r.n(2)); int64(d) != ct.Unix()/86400 {
			t.Fatalf("day %d", d)
		}
		if s := binary.LittleEndian.Uint32(r.n(4)); int64(s) != ct.Unix() {
			t.Fatalf("time %d", s)
		}
		want := map[string]string{"id": ev.ID, "principal": principal, "access_key": key, "action": "vault:read", "resource": resource,
			"source_ip": ip, "outcome": "failure", "error": errText, "failure_kind": "denied"}
		for _, c := range PrincipalColumns[2:] {
			if got := r.str(); got != want[c] {
				t.Fatalf("column %s reads back %q, want %q", c, got, want[c])
			}
		}
		if r.off != len(row)-1 {
			t.Fatalf("row is %d bytes, reader consumed %d", len(row)-1, r.off)
		}
	})
}

// FuzzAppendIPRowBinary: an ip_events row reads back field for field in
// IPColumns order (the address as its 16 bytes) and ends where the next
// begins.
func FuzzAppendIPRowBinary(f *testing.F) {
	f.Add("p", "secret/x", "10.0.0.1", "NL", 64500, int64(1700000000))
	f.Add("\x00", "c\nd", "2001:db8::1", "\xff'", -3, int64(-5))
	f.Fuzz(func(t *testing.T, principal, resource, ip, country string, asn int, sec int64) {
		ev := schema.Event{Time: time.Unix(sec, 0), ID: "id-" + principal, Principal: principal, PrincipalName: "n" + principal,
			Resource: resource, SourceIP: ip, Outcome: "success", Country: country, ASN: asn, ASOrg: "org" + country, UserAgent: "not written"}
		row := AppendIPRowBinary(nil, &ev)
		row = append(row, 0xAB)
		r := &rbReader{t: t, b: row}
		ct := ClampTime(ev.Time)
		if d := binary.LittleEndian.Uint16(r.n(2)); int64(d) != ct.Unix()/86400 {
			t.Fatalf("day %d", d)
		}
		if s := binary.LittleEndian.Uint32(r.n(4)); int64(s) != ct.Unix() {
			t.Fatalf("time %d", s)
		}
		if a := IP16(ip); string(r.n(16)) != string(a[:]) {
			t.Fatal("ip bytes differ")
		}
		want := map[string]string{"id": ev.ID, "principal": principal, "principal_name": ev.PrincipalName, "resource": resource,
			"source_ip": ip, "outcome": "success", "country": country, "as_org": ev.ASOrg}
		for _, c := range IPColumns[3:] {
			if c == "asn" {
				if n := binary.LittleEndian.Uint32(r.n(4)); n != ASN32(asn) {
					t.Fatalf("asn %d, want %d", n, ASN32(asn))
				}
				continue
			}
			if got := r.str(); got != want[c] {
				t.Fatalf("column %s reads back %q, want %q", c, got, want[c])
			}
		}
		if r.off != len(row)-1 {
			t.Fatalf("row is %d bytes, reader consumed %d", len(row)-1, r.off)
		}
	})
}
