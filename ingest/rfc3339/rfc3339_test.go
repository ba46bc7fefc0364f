package rfc3339

import (
	"testing"
	"time"
)

func check(t *testing.T, s string) {
	t.Helper()
	want, werr := time.Parse(time.RFC3339Nano, s)
	got, gerr := Parse([]byte(s))
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("%q: error %v, time.Parse error %v", s, gerr, werr)
	}
	if werr == nil && (!got.Equal(want) || got.Location() != time.UTC) {
		t.Fatalf("%q: got %v, want %v in UTC", s, got, want)
	}
}

func TestMatchesTimeParse(t *testing.T) {
	for _, s := range []string{
		"2023-07-10T11:42:36Z", "2026-11-28T00:17:41.508223756Z", "2026-11-28T00:17:41.5Z",
		"2024-02-29T00:00:00Z", "2023-02-29T00:00:00Z", "2023-04-31T00:00:00Z", "2023-13-01T00:00:00Z",
		"2023-00-01T00:00:00Z", "2023-01-00T00:00:00Z", "2023-01-01T24:00:00Z", "2023-01-01T23:60:00Z",
		"2023-01-01T23:59:60Z", "2023-01-01T23:59:59.Z", "2023-01-01T23:59:59.1234567891Z",
		"2023-01-01T23:59:59+02:00", "2023-01-01T23:59:59.25-05:30", "2023-01-01 23:59:59Z",
		"2023-01-01t23:59:59z", "0000-01-01T00:00:00Z", "1900-02-29T00:00:00Z", "2000-02-29T00:00:00Z",
		"2023-1-01T00:00:00Z", "+023-01-01T00:00:00Z", "2023-01-01T00:00:0aZ", "", "Z",
	} {
		check(t, s)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("2026-11-28T00:17:41.508223756Z")
	f.Add("2023-01-01T23:59:59+02:00")
	f.Fuzz(func(t *testing.T, s string) { check(t, s) })
}
