package schema

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

func sampleEvents() []Event {
	return []Event{
		{},
		{
			Time: time.Date(2026, 11, 28, 0, 17, 41, 508223756, time.UTC), Source: SourceVault, ID: "52be800f",
			Principal: "745a11dd", PrincipalName: "payments-api", PrincipalType: "entity", Session: "s",
			Account: "123", AccessKey: "AKIA", Policies: []string{"default", "payments"}, TokenHMAC: "hmac-sha256:ab",
			AuthMethod: "approle", Action: "vault:read", Resource: "secret/data/payments/db", Mount: "secret/",
			MountType: "kv", Namespace: "root", Region: "us-east-1", SourceIP: "2001:db8::1", SourceIPRaw: "[2001:db8::1]:80",
			SourceIsService: true, UserAgent: "Mozilla/5.0 <script>&amp;", Outcome: OutcomeFailure,
			Error: "1 error occurred:\n\t* permission denied\n\n", FailureKind: FailurePermissionDenied,
			Auth: true, ReadOnly: true, HTTPStatus: 403,
		},
		{Time: time.Date(2023, 7, 10, 11, 42, 0, 0, time.FixedZone("x", 3600)), Error: "bad \xff utf8 \u2028 \u2029 \x00 \x1f \x7f é 日本 \"q\" \\"},
		{Policies: []string{}, Error: "\ufffd"},
	}
}

func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	for i, ev := range sampleEvents() {
		want, err := json.Marshal(&ev)
		if err != nil {
			t.Fatal(err)
		}
		got := ev.AppendJSON(nil)
		if !bytes.Equal(got, want) {
			t.Errorf("event %d:\n got %s\nwant %s", i, got, want)
		}
		var back Event
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("event %d: output does not decode: %v", i, err)
		}
		again := back.AppendJSON(nil)
		var back2 Event
		if err := json.Unmarshal(again, &back2); err != nil || !reflect.DeepEqual(back, back2) {
			t.Errorf("event %d: round trip not stable: %v", i, err)
		}
	}
}

func TestAppendJSONAppends(t *testing.T) {
	ev := sampleEvents()[1]
	b := ev.AppendJSON([]byte("prefix"))
	if !bytes.HasPrefix(b, []byte("prefix{")) {
		t.Fatalf("AppendJSON did not append: %q", b[:20])
	}
}

func FuzzAppendJSON(f *testing.F) {
	f.Add("vault", "id-1", "alice", "secret/data/x", "10.0.0.1", "permission denied", int64(1700000000123456789), true, 403, "p1")
	f.Add("", "\xff\xfe", "<>&", "\u2028", "\x00", "\"\\", int64(0), false, 0, "")
	f.Add("cloudtrail", "0123456789abcdef<", "arn:aws:iam::123:role/x&y", "secret/data/\u2029/long/path/", "2001:db8::1", "abcdefgh\x1f\x7f\xc3\xa9", int64(-1), true, -1, "policy-name-longer-than-eight\\")
	f.Fuzz(func(t *testing.T, source, id, principal, resource, ip, errText string, nanos int64, auth bool, status int, policy string) {
		ev := Event{
			Time: time.Unix(0, nanos).UTC(), Source: source, ID: id, Principal: principal, PrincipalName: principal,
			Session: policy, Resource: resource, SourceIP: ip, SourceIPRaw: ip, Error: errText, FailureKind: policy,
			Auth: auth, ReadOnly: !auth, SourceIsService: auth, HTTPStatus: status, UserAgent: errText + id,
		}
		if policy != "" {
			ev.Policies = []string{policy, id}
		}
		want, err := json.Marshal(&ev)
		if err != nil {
			t.Fatalf("encoding/json: %v", err) // time.Unix(0, n) stays within the years it accepts
		}
		got := ev.AppendJSON(nil)
		if !bytes.Equal(got, want) {
			t.Fatalf("AppendJSON differs from encoding/json:\n got %s\nwant %s", got, want)
		}
		var back Event
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("output does not decode: %v", err)
		}
		if !back.Time.Equal(ev.Time) || back.Auth != ev.Auth || back.HTTPStatus != ev.HTTPStatus {
			t.Fatalf("round trip changed fields: %+v vs %+v", back, ev)
		}
	})
}

// jsonTime is what encoding/json writes for t inside its quotes (the
// zero time for years it refuses, as AppendJSON documents).
func jsonTime(t *testing.T, tm time.Time) string {
	t.Helper()
	if y := tm.Year(); y < 0 || y > 9999 {
		tm = time.Time{}
	}
	b, err := json.Marshal(tm)
	if err != nil {
		t.Fatalf("encoding/json refuses %v: %v", tm, err)
	}
	return string(b[1 : len(b)-1])
}

func TestAppendTime(t *testing.T) {
	utc := []time.Time{
		{},
		time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(0, 2, 29, 23, 59, 59, 999999999, time.UTC),
		time.Date(0, 3, 1, 0, 0, 0, 1, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 12, 31, 23, 59, 59, 0, time.UTC),
		time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(1969, 12, 31, 23, 59, 59, 500000000, time.UTC),
		time.Date(1900, 2, 28, 12, 0, 0, 120, time.UTC),
		time.Date(2000, 2, 29, 1, 2, 3, 100000000, time.UTC),
		time.Date(2100, 3, 1, 4, 5, 6, 10, time.UTC),
		time.Date(2024, 12, 31, 23, 59, 59, 123456789, time.UTC),
		time.Date(2026, 11, 28, 0, 17, 41, 508223756, time.UTC),
		time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(400, 2, 29, 0, 0, 0, 0, time.UTC),
	}
	var cases []time.Time
	for _, tm := range utc {
		cases = append(cases, tm, tm.In(time.FixedZone("x", 5*3600+30*60)), tm.In(time.FixedZone("UTC", 0)), tm.Local())
	}
	// every day of a leap cycle around 2000, at varied clocks
	for d := 0; d < 4*366; d++ {
		cases = append(cases, time.Date(1999, 1, 1, d%24, d%60, d%61, d*7919%1000000000, time.UTC).AddDate(0, 0, d))
	}
	for _, tm := range cases {
		want := jsonTime(t, tm)
		if got := string(appendTime(nil, tm)); got != want {
			t.Errorf("appendTime(%v) = %s, want %s", tm, got, want)
		}
	}
}

// FuzzAppendTime compares appendTime with encoding/json over the whole
// range of years it accepts, and beyond (the zero time).
func FuzzAppendTime(f *testing.F) {
	f.Add(int64(0), int64(0), 0)
	f.Add(int64(-62167219200), int64(0), 0)
	f.Add(int64(253402300799), int64(999999999), 3600)
	f.Add(int64(951782400), int64(1), -7200)
	f.Fuzz(func(t *testing.T, sec, nsec int64, offset int) {
		tm := time.Unix(sec, nsec%1000000000).UTC()
		if offset != 0 {
			tm = tm.In(time.FixedZone("z", offset%(14*3600)))
		}
		if _, off := tm.Zone(); tm.Location() != time.UTC && off%60 != 0 {
			// encoding/json refuses offsets it cannot write
			tm = tm.In(time.FixedZone("z", off-off%60))
		}
		want := jsonTime(t, tm)
		if got := string(appendTime([]byte("x"), tm)[1:]); got != want {
			t.Fatalf("appendTime(%v) = %s, want %s", tm, got, want)
		}
	})
}
