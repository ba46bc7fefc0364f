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
	// the same value as time.Parse's, field for field (== on time.Time)
	if werr == nil && (got != want.UTC() || got.Location() != time.UTC) {
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

// TestEveryDay compares every day of years around leap rules and the
// calendar's ends with time.Parse.
func TestEveryDay(t *testing.T) {
	for _, y := range []int{0, 1, 4, 99, 100, 399, 400, 1582, 1899, 1900, 1969, 1970, 1971, 1999, 2000, 2023, 2024, 2100, 2400, 9999} {
		for d := time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC); d.Year() == y; d = d.AddDate(0, 0, 1) {
			check(t, d.Format("2006-01-02")+"T23:59:59.999999999Z")
			check(t, d.Format("2006-01-02")+"T00:00:00Z")
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add("2026-11-28T00:17:41.508223756Z")
	f.Add("2023-01-01T23:59:59+02:00")
	f.Fuzz(func(t *testing.T, s string) { check(t, s) })
}
