package detect

import (
	"strconv"
	"testing"
)

func TestParseByteSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		bad  bool
	}{
		{"512MiB", 512 << 20, false}, {"1GiB", 1 << 30, false}, {"64MB", 64e6, false}, {"4096", 4096, false},
		{" 2 KiB ", 2048, false}, {"10B", 10, false},
		{"", 0, true}, {"-1MiB", 0, true}, {"1.5GiB", 0, true}, {"MiB", 0, true}, {"99999999999GiB", 0, true},
	} {
		got, err := ParseByteSize(tc.in)
		if tc.bad != (err != nil) || got != tc.want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d, bad %v", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

func FuzzParseByteSize(f *testing.F) {
	for _, s := range []string{"512MiB", "1GiB", "7", "-3KB", "9223372036854775807"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseByteSize(s)
		if err != nil {
			return
		}
		if n < 0 {
			t.Fatalf("%q parsed to negative %d", s, n)
		}
		// A plain number round-trips.
		if m, err := ParseByteSize(strconv.FormatInt(n, 10)); err != nil || m != n {
			t.Fatalf("%d does not round-trip: %d %v", n, m, err)
		}
	})
}
