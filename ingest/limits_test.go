package ingest

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"strings"
	"testing"

	"auditwatch/ingest/cloudtrail"
	"auditwatch/ingest/intern"
	"auditwatch/ingest/jsonx"
)

const goodCT = `{"eventVersion":"1.08","eventTime":"2023-07-10T11:42:00Z","eventSource":"secretsmanager.amazonaws.com","eventName":"GetSecretValue","eventID":"ID","sourceIPAddress":"10.0.0.1","userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::1:user/u","accountId":"1"}}`

func good(id string) string { return strings.Replace(goodCT, `"ID"`, `"`+id+`"`, 1) }

// TestLimitsKeepGoodRecords checks that every kind of bad record yields
// one RecordError naming its line and that the good records on both
// sides survive.
func TestLimitsKeepGoodRecords(t *testing.T) {
	huge := `{"eventVersion":"1.08","pad":"` + strings.Repeat("x", 3<<20) + `"}`
	deep := `{"a":` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `}`
	deepUnclosed := `{"a":` + strings.Repeat("[", 100000)
	cases := []struct {
		name    string
		bad     string
		want    error
		opts    func(*Options)
		badLine int
	}{
		{"too large", huge, jsonx.ErrTooLarge, nil, 2},
		{"too large string across buffers", `{"a":"` + strings.Repeat(`\"`, 1<<20) + `"}`, jsonx.ErrTooLarge, nil, 2},
		{"too deep", deep, jsonx.ErrTooDeep, nil, 2},
		{"too deep, small limit", `{"a":{"b":{"c":{}}}}`, jsonx.ErrTooDeep, func(o *Options) { o.MaxDepth = 3 }, 2},
		{"truncated line", `{"eventVersion":"1.08","eventID":"x`, jsonx.ErrTruncated, nil, 2},
		{"truncated object", `{"eventVersion":"1.08","userIdentity":{"type":"IAMUser",`, jsonx.ErrTruncated, nil, 2},
		{"deep and never closed", deepUnclosed, jsonx.ErrTooDeep, nil, 2},
		{"not JSON", `hello world`, jsonx.ErrNotJSON, nil, 2},
		{"server log", `2019-12-18T20:26:12.000Z [INFO]  core: security barrier not initialized`, ErrServerLog, nil, 2},
		{"invalid JSON", `{"eventVersion":"1.08",,}`, ErrInvalidJSON, nil, 2},
		{"unknown object", `{"hello":"world"}`, ErrUnrecognized, nil, 2},
		{"scalar", `12345`, jsonx.ErrNotJSON, nil, 2},
		{"record without eventName", `{"eventVersion":"1.08","eventID":"n"}`, cloudtrail.ErrNotRecord, nil, 2},
		{"vault entry too deep", `{"type":"request","request":{"id":"r1","path":"x","data":{"a":` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `}}}`, jsonx.ErrTooDeep, nil, 2},
		{"vault entry too deep, small limit", `{"type":"request","request":{"id":"r1","path":"x","data":{"a":1}}}`, jsonx.ErrTooDeep, func(o *Options) { o.MaxDepth = 2 }, 2},
		{"vault entry in cloudtrail mode", `{"type":"request","request":{"id":"r1","path":"x"}}`, ErrWrongFormat, func(o *Options) { o.Format = FormatCloudTrail }, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := testOptions()
			if tc.opts != nil {
				tc.opts(&opts)
			}
			in := good("a") + "\n" + tc.bad + "\n" + good("b") + "\n"
			res := readAll(t, NewReader(strings.NewReader(in), "in.json", opts))
			if len(res.events) != 2 || res.events[0].ID != "a" || res.events[1].ID != "b" {
				t.Fatalf("good records lost: %d events %v; errors %v", len(res.events), res.events, res.errs)
			}
			if len(res.errs) != 1 {
				t.Fatalf("%d errors, want 1: %v", len(res.errs), res.errs)
			}
			err := res.errs[0]
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			var re *RecordError
			if !errors.As(err, &re) || re.Input != "in.json" || re.Line != tc.badLine {
				t.Fatalf("error %v does not name in.json line %d", err, tc.badLine)
			}
			if !strings.HasPrefix(err.Error(), "in.json:2: ") {
				t.Fatalf("error text %q does not start with the position", err.Error())
			}
			if s := res.stats; s.Rejected != 1 || s.Events != 2 {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

func TestTruncatedPrettyRecordResyncs(t *testing.T) {
	in := "{\n  \"eventVersion\": \"1.08\",\n  \"userIdentity\": {\n" + good("b") + "\n"
	res := readAll(t, NewReader(strings.NewReader(in), "p.json", testOptions()))
	if len(res.events) != 1 || res.events[0].ID != "b" || len(res.errs) != 1 || !errors.Is(res.errs[0], jsonx.ErrTruncated) {
		t.Fatalf("events %v errors %v", res.events, res.errs)
	}
}

func TestGzipLimit(t *testing.T) {
	var raw bytes.Buffer
	for i := 0; i < 2000; i++ {
		raw.WriteString(good("x"))
		raw.WriteByte('\n')
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(raw.Bytes())
	zw.Close()

	opts := testOptions()
	res := readAll(t, NewReader(bytes.NewReader(gz.Bytes()), "x.json.gz", opts))
	if len(res.events) != 2000 || len(res.errs) != 0 {
		t.Fatalf("within the limit: %d events, errors %v", len(res.events), res.errs)
	}

	opts.MaxGzipBytes = int64(len(goodCT)+1)*100 + 10
	res = readAll(t, NewReader(bytes.NewReader(gz.Bytes()), "x.json.gz", opts))
	if len(res.events) != 100 {
		t.Fatalf("over the limit: %d events before the cap, want 100", len(res.events))
	}
	if len(res.errs) != 1 || !errors.Is(res.errs[0], ErrGzipLimit) || !strings.Contains(res.errs[0].Error(), "x.json.gz") {
		t.Fatalf("over the limit: errors %v, want one naming x.json.gz with ErrGzipLimit", res.errs)
	}

	// a corrupt gzip stream is one error, not a crash
	bad := append([]byte(nil), gz.Bytes()[:len(gz.Bytes())/2]...)
	res = readAll(t, NewReader(bytes.NewReader(bad), "cut.gz", testOptions()))
	if len(res.errs) == 0 {
		t.Fatalf("cut gzip: no error (%d events)", len(res.events))
	}
}

func TestSafeOffsetHoldsPendingVaultRequest(t *testing.T) {
	req := `{"time":"2026-01-01T00:00:00Z","type":"request","auth":{"display_name":"root","policies":["root"]},"request":{"id":"r1","operation":"read","path":"secret/x","remote_address":"10.0.0.1"}}`
	resp := strings.Replace(req, `"type":"request"`, `"type":"response"`, 1)
	ct := good("c")
	in := req + "\n" + ct + "\n" + resp + "\n"
	r := NewReader(strings.NewReader(in), "v.log", testOptions())
	ev, err := r.Next()
	if err != nil || ev.ID != "c" {
		t.Fatalf("first event %v %v, want the CloudTrail record", ev.ID, err)
	}
	if got := r.SafeOffset(); got != 0 {
		t.Fatalf("SafeOffset %d while request r1 is pending, want 0", got)
	}
	ev, err = r.Next()
	if err != nil || ev.ID != "r1" || ev.Source != "vault" {
		t.Fatalf("second event %v %v", ev.ID, err)
	}
	if got := r.SafeOffset(); got != int64(len(in)-1) {
		t.Fatalf("SafeOffset %d after the pair, want %d", got, len(in)-1)
	}
}

func TestRequestOnlyEntryYieldsOneEvent(t *testing.T) {
	req := `{"time":"2026-01-01T00:00:00Z","type":"request","auth":{"token_type":"default"},"request":{"id":"r1","operation":"update","path":"auth/userpass/login/eve"},"error":"permission denied"}`
	res := readAll(t, NewReader(strings.NewReader(req+"\n"), "v.log", testOptions()))
	evs := res.events
	if len(evs) != 1 || evs[0].ID != "r1" || evs[0].FailureKind != "locked_out" || evs[0].PrincipalName != "eve" || res.stats.Unpaired != 1 {
		t.Fatalf("request-only entry gave %+v, stats %+v", evs, res.stats)
	}
}

func TestMaxPendingEvicts(t *testing.T) {
	var b strings.Builder
	for i := 0; i < 10; i++ {
		b.WriteString(strings.Replace(`{"time":"2026-01-01T00:00:00Z","type":"request","auth":{"display_name":"root"},"request":{"id":"ID","path":"x","operation":"read"}}`, "ID", string(rune('a'+i)), 1))
		b.WriteByte('\n')
	}
	opts := testOptions()
	opts.MaxPending = 3
	res := readAll(t, NewReader(strings.NewReader(b.String()), "v", opts))
	if len(res.events) != 10 || res.stats.Evicted != 7 || res.stats.Unpaired != 10 {
		t.Fatalf("%d events, stats %+v; want 10 events, 7 evicted", len(res.events), res.stats)
	}
	for i, ev := range res.events {
		if ev.ID != string(rune('a'+i)) {
			t.Fatalf("event %d is %s: order not kept", i, ev.ID)
		}
	}
}

// Many distinct values (hostile cardinality) keep the shared-string table
// bounded: it starts over, counted, and every event keeps its own value.
func TestInternTableBoundedUnderCardinality(t *testing.T) {
	var b strings.Builder
	const n = 20000
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, `{"eventVersion":"1.08","eventName":"GetSecretValue","eventSource":"secretsmanager.amazonaws.com","eventID":"id-%d","userAgent":"agent-%d"}`+"\n", i, i)
	}
	r := NewReader(strings.NewReader(b.String()), "many", testOptions())
	res := readAll(t, r)
	if len(res.events) != n || len(res.errs) != 0 {
		t.Fatalf("%d events, %d errors", len(res.events), len(res.errs))
	}
	for i, ev := range res.events {
		if want := fmt.Sprintf("agent-%d", i); ev.UserAgent != want {
			t.Fatalf("event %d: user agent %q, want %q", i, ev.UserAgent, want)
		}
	}
	if st := r.Stats(); st.InternResets < 1 || r.strs.Len() > intern.DefaultMaxEntries {
		t.Fatalf("table holds %d strings after %d resets", r.strs.Len(), st.InternResets)
	}
}

// TestVaultDepthAtLimit checks that a Vault entry nested exactly as deep
// as the limit is read, one level deeper is refused.
func TestVaultDepthAtLimit(t *testing.T) {
	for _, tc := range []struct {
		depth  int
		events int
	}{{3, 1}, {2, 0}} {
		opts := testOptions()
		opts.MaxDepth = tc.depth
		in := `{"type":"request","request":{"id":"r1","path":"x","data":{"a":"b"}}}` + "\n"
		res := readAll(t, NewReader(strings.NewReader(in), "in.json", opts))
		if len(res.events) != tc.events || len(res.errs) != 1-tc.events {
			t.Fatalf("limit %d: %d events, errors %v; want %d events", tc.depth, len(res.events), res.errs, tc.events)
		}
		if tc.events == 0 && !errors.Is(res.errs[0], jsonx.ErrTooDeep) {
			t.Fatalf("limit %d: error %v, want %v", tc.depth, res.errs[0], jsonx.ErrTooDeep)
		}
	}
}
