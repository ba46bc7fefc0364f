package ipaddr

import (
	"fmt"
	"net/netip"
	"testing"
)

func TestCanonical(t *testing.T) {
	cases := []struct {
		raw     string
		ip      string
		service bool
	}{
		{"10.0.0.1", "10.0.0.1", false},
		{"06.237.252.245", "6.237.252.245", false}, // leading zeros stripped, read as decimal
		{"211.9.016.253", "211.9.16.253", false},
		{"253.252.51.07", "253.252.51.7", false},
		{"010.000.000.001:443", "10.0.0.1", false},
		{"81.2.69.142, 192.168.10.10", "81.2.69.142", false}, // comma list: first address
		{"192.168.0.10:36776", "192.168.0.10", false},
		{"[2001:db8::10]:36778", "2001:db8::10", false},
		{"2001:DB8:0:0::b0b", "2001:db8::b0b", false},
		{"[2001:db8::1]", "2001:db8::1", false},
		{"::ffff:10.1.2.3", "10.1.2.3", false},
		{"fe80::1%eth0", "fe80::1", false},
		{"AWS Internal", "", true},
		{"secretsmanager.amazonaws.com", "", true},
		{"s3.cn-north-1.amazonaws.com.cn", "", true},
		{"redacted", "", false},
		{"", "", false},
		{"256.1.1.1", "", false},
		{"1.2.3.4.5", "", false},
		{"0001.2.3.4", "", false},
	}
	for _, tc := range cases {
		ip, svc := Canonical(tc.raw)
		if ip != tc.ip || svc != tc.service {
			t.Errorf("Canonical(%q) = %q, %v; want %q, %v", tc.raw, ip, svc, tc.ip, tc.service)
		}
	}
}

func FuzzCanonical(f *testing.F) {
	for _, s := range []string{"10.0.0.1", "06.237.252.245", "[::1]:80", "a, b", "AWS Internal", "1.2.3.4:5", "::ffff:1.2.3.4"} {
		f.Add(s)
	}
	var m Memo // shared by every input: earlier ones are remembered
	f.Fuzz(func(t *testing.T, raw string) {
		ip, svc := Canonical(raw)
		for range 2 {
			if mip, msvc := m.Canonical(raw, nil); mip != ip || msvc != svc {
				t.Fatalf("%q: remembered %q, %v; Canonical %q, %v", raw, mip, msvc, ip, svc)
			}
		}
		if ip == "" {
			return
		}
		if svc {
			t.Fatalf("%q: both an address %q and a service", raw, ip)
		}
		a, err := netip.ParseAddr(ip)
		if err != nil {
			t.Fatalf("%q gave %q which does not parse: %v", raw, ip, err)
		}
		if a.String() != ip || a.Zone() != "" || a.Is4In6() {
			t.Fatalf("%q gave non-canonical %q", raw, ip)
		}
		if again, _ := Canonical(ip); again != ip {
			t.Fatalf("not idempotent: %q -> %q -> %q", raw, ip, again)
		}
	})
}

// The memo gives Canonical's answers, for addresses sharing a slot too,
// and hands out what keep makes of a new result.
func TestMemo(t *testing.T) {
	var m Memo
	kept := 0
	keep := func(s string) string { kept++; return s }
	var raws []string
	for i := range 300 {
		raws = append(raws, fmt.Sprintf("10.0.%d.%d", i/256, i%256), fmt.Sprintf("[fd00::%x]:8200", i), fmt.Sprintf("0%d.1.2.3:44", i%10))
	}
	raws = append(raws, "", "AWS Internal", "s3.amazonaws.com", "x")
	for round := range 3 {
		for _, raw := range raws {
			ip, svc := Canonical(raw)
			if mip, msvc := m.Canonical(raw, keep); mip != ip || msvc != svc {
				t.Fatalf("round %d, %q: remembered %q, %v; Canonical %q, %v", round, raw, mip, msvc, ip, svc)
			}
		}
	}
	// the same address again is not worked out again
	kept = 0
	for range 10 {
		m.Canonical("192.0.2.55", keep)
	}
	if kept != 1 {
		t.Fatalf("worked out %d times", kept)
	}
}
