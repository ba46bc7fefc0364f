package cloudtrail

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/valyala/fastjson"

	"auditwatch/ingest/intern"
	"auditwatch/ingest/jsonx"
	"auditwatch/schema"
)

// compareLine checks ParseLine against fastjson + Parse on one record and
// reports whether ParseLine took it.
func compareLine(t *testing.T, line, general *Parser, in []byte, fb Fallback) bool {
	t.Helper()
	var got schema.Event
	gerr, ok := line.ParseLine(in, fb, &got)
	if !ok {
		return false
	}
	v, err := fastjson.ParseBytes(in)
	if err != nil {
		t.Fatalf("%s\nParseLine took a record fastjson refuses: %v", in, err)
	}
	if !IsRecord(v) {
		t.Fatalf("%s\nParseLine took a record that is not a CloudTrail record", in)
	}
	for _, k := range []string{"Records", "Events", "digestStartTime", "digestEndTime", "detail-type", "detail"} {
		if v.Get(k) != nil {
			t.Fatalf("%s\nParseLine took a record with the envelope key %q", in, k)
		}
	}
	// the spans hold exactly the strings Parse reads there; arn is always
	// located (an escaped or duplicated one is declined)
	sp := got.Spans
	got.Spans = schema.Spans{}
	for _, c := range []struct {
		s    schema.Span
		v    *fastjson.Value
		must bool
	}{
		{sp.IdentityARN, v.Get("userIdentity", "arn"), true},
		{sp.IssuerType, v.Get("userIdentity", "sessionContext", "sessionIssuer", "type"), false},
	} {
		if c.s.Off == 0 {
			if c.must && gerr == nil && c.v != nil && c.v.Type() == fastjson.TypeString && v.Get("userIdentity").Type() == fastjson.TypeObject {
				t.Fatalf("%s\nuserIdentity.arn %s not located", in, c.v)
			}
			continue
		}
		if c.v == nil || c.v.Type() != fastjson.TypeString || int(c.s.Off+c.s.Len) > len(in) || string(in[c.s.Off:c.s.Off+c.s.Len]) != string(c.v.GetStringBytes()) {
			t.Fatalf("%s\nspan %+v, Parse reads %v", in, c.s, c.v)
		}
	}
	var want schema.Event
	werr := general.Parse(v, fb, &want)
	if (gerr == nil) != (werr == nil) || (gerr != nil && gerr.Error() != werr.Error()) {
		t.Fatalf("%s\nerror %v, Parse %v", in, gerr, werr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s\nParseLine %+v\nParse     %+v", in, got, want)
	}
	return true
}

func TestParseLineMatchesParseOnLogs(t *testing.T) {
	line := Parser{Strings: intern.New(64, 0)}
	general := Parser{Strings: intern.New(64, 0)}
	fb := Fallback{Now: fixedNow, Region: "r", Account: "a"}
	taken, total := 0, 0
	for _, rec := range records(t) {
		total++
		if compareLine(t, &line, &general, rec, fb) {
			taken++
		}
	}
	t.Logf("ParseLine took %d of %d records", taken, total)
	// every record of the repository's sample is an ordinary one
	if min := minCompared(t) - 30; taken < min {
		t.Fatalf("ParseLine took only %d of %d records, want %d or more", taken, total, min)
	}
	if line.Strings.Resets == 0 {
		t.Fatal("the intern table never filled up: the test does not exercise its bound")
	}
}

func TestParseLineDeclines(t *testing.T) {
	for _, in := range []string{
		`{"eventName":"X"}`, // no eventID: the id is a hash of fastjson's rendering
		`{"eventID":"1","eventSource":"s3.amazonaws.com"}`,                          // no eventName
		`{"eventID":"1","eventName":"X\u0041"}`,                                     // escaped string read
		`{"eventID":"1","event\u004eame":"X"}`,                                      // escaped key
		`{"eventID":"1","eventName":"X","eventName":"Y"}`,                           // duplicate key
		`{"eventID":"1","eventName":"X","userIdentity":{"arn":"a","arn":"b"}}`,      // duplicate nested key
		`{"eventID":"1","eventName":"X","resources":[{"ARN":"a","ARN":"b"}]}`,       // duplicate in an element
		`{"eventID":"1","eventName":"X","detail-type":"y"}`,                         // envelope key
		`{"eventID":"1","eventName":"X","Records":1}`,                               // container key
		`{"eventID":"1","eventName":"X","x":nan}`,                                   // fastjson's own leniency
		`{"eventID":"1","eventName":"X","x":[1,]}`,                                  // malformed
		`{"eventID":"1","eventName":"X"} x`,                                         // trailing text
		`{"eventID":"1","eventName":"X"`,                                            // truncated
		`{"eventID":"1","eventName":"X","requestParameters":{"secretId":"a\"b"}}`,   // escaped value read
		`{"eventID":"1","eventName":"X","responseElements":{"ConsoleLogin":"F\/"}}`, // escaped value read
	} {
		var p Parser
		var ev schema.Event
		if _, ok := p.ParseLine([]byte(in), Fallback{Now: fixedNow}, &ev); ok {
			t.Errorf("ParseLine took %s", in)
		}
	}
}

// The fast path takes the records it should: every field it reads, in
// every shape Parse understands.
func TestParseLineTakes(t *testing.T) {
	for _, in := range []string{
		`{"eventID":"1","eventName":"GetSecretValue","eventSource":"secretsmanager.amazonaws.com","eventTime":"2024-01-01T00:00:00Z","requestParameters":{"secretId":"s"}}`,
		`{"eventID":"2","eventName":"X","p_event_time":"2022-09-28 17:30:05.000000000","readOnly":"TRUE","userIdentity":{"type":"AssumedRole","arn":"arn:aws:sts::1:assumed-role/r/s","sessionContext":{"sessionIssuer":{"arn":"arn:aws:iam::1:role/r","userName":"r"}}}}`,
		`{"eventID":"3","eventName":"ConsoleLogin","eventSource":"signin.amazonaws.com","responseElements":{"ConsoleLogin":"Failure"},"errorMessage":"locked","readOnly":true}`,
		`{"eventID":"4","eventName":"X","requestParameters":{"secretIdList":["a","b"],"name":"n"},"resources":[{"ARN":"arn:x"},{"ARN":"arn:aws:secretsmanager:r:1:secret:y"},3]}`,
		`{"eventID":"5","eventName":"X","requestParameters":{"secretIdList":[1],"bucketName":"b"},"resources":{"ARN":"a"},"userIdentity":"x","sourceIPAddress":"AWS Internal"}`,
		`{"eventID":"6","eventName":"AssumeRole","eventSource":"sts.amazonaws.com","errorCode":"AccessDenied","userIdentity":{"invokedBy":"svc","accountId":"1"},"recipientAccountId":"2"}`,
	} {
		line := Parser{Strings: intern.New(0, 0)}
		general := Parser{Strings: intern.New(0, 0)}
		if !compareLine(t, &line, &general, []byte(in), Fallback{Now: fixedNow}) {
			t.Errorf("ParseLine declined %s", in)
		}
	}
}

func FuzzParseLine(f *testing.F) {
	f.Add([]byte(`{"eventVersion":"1.08","eventID":"e","eventTime":"2023-07-10T11:42:36Z","eventSource":"signin.amazonaws.com","eventName":"ConsoleLogin","userIdentity":{"type":"FederatedUser","arn":"arn:aws:sts::1:federated-user/x","sessionContext":{"sessionIssuer":{"arn":"arn:aws:iam::1:user/y"}}},"responseElements":{"ConsoleLogin":"Failure"},"errorMessage":"account locked"}`))
	f.Add([]byte(`{"eventID":"e2","eventName":"GetSecretValue","eventSource":"secretsmanager.amazonaws.com","requestParameters":{"secretIdList":["a"],"name":"n"},"resources":[{"ARN":"arn:aws:secretsmanager:x:secret:y"}],"readOnly":true,"sourceIPAddress":"[::ffff:1.2.3.4]:80"}`))
	f.Add([]byte(`{"eventID":"e3","p_event_time":"2022-09-28 17:30:05.000000000","eventName":"X","userIdentity":{"type":"AWSAccount","principalId":""},"readOnly":"true","errorCode":"200"}`))
	line := Parser{Strings: intern.New(16, 8)}
	general := Parser{Strings: intern.New(16, 8)}
	f.Fuzz(func(t *testing.T, in []byte) {
		compareLine(t, &line, &general, in, Fallback{Now: fixedNow, Region: "r", Account: "a"})
	})
}

// identityRecord is a record with userIdentity block ui.
func identityRecord(id, ui string) []byte {
	return []byte(`{"eventVersion":"1.09","userIdentity":` + ui + `,"eventTime":"2026-01-05T00:00:00Z","eventSource":"sts.amazonaws.com","eventName":"GetCallerIdentity","awsRegion":"us-east-1","sourceIPAddress":"10.10.0.29","eventID":"` + id + `","readOnly":true,"recipientAccountId":"892208155241"}`)
}

// The identity memo: a userIdentity block read before is taken from the
// memo (its fields point into the memo's copy), and every record still
// parses exactly as Parse does and as a parser that never saw the block.
func TestIdentityMemo(t *testing.T) {
	base := `{"type":"AssumedRole","principalId":"AROAE4QVLRJ5LWEXCGXBJ:i-0e75aefee291763f6","arn":"arn:aws:sts::892208155241:assumed-role/svc-2/i-0e75aefee291763f6","accountId":"892208155241","accessKeyId":"ASIANH7ONDO4VCVDIC4L","sessionContext":{"sessionIssuer":{"type":"Role","arn":"arn:aws:iam::892208155241:role/svc-2","userName":"svc-2"},"attributes":{"creationDate":"2026-01-05T00:00:00Z","mfaAuthenticated":"false"}}}`
	fb := Fallback{Now: fixedNow}
	for _, tc := range []struct {
		name string
		next func(string) string // the second record's block from the first's
		hit  bool
	}{
		{"identical", func(s string) string { return s }, true},
		{"issuer differs", func(s string) string { return strings.Replace(s, `role/svc-2"`, `role/svc-3"`, 1) }, false},
		{"session time differs", func(s string) string { return strings.Replace(s, `00:00:00Z"`, `00:00:01Z"`, 1) }, false},
		{"member added", func(s string) string { return strings.Replace(s, `,"accountId"`, `,"x":[1,{}],"accountId"`, 1) }, false},
		{"escaped", func(s string) string { return strings.Replace(s, `"svc-2"}`, `"svc\u002d2"}`, 1) }, false},
		{"duplicate", func(s string) string { return strings.Replace(s, `,"accountId"`, `,"arn":"x","accountId"`, 1) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			line := Parser{Strings: intern.New(64, 0)}
			general := Parser{Strings: intern.New(64, 0)}
			if !compareLine(t, &line, &general, identityRecord("e1", base), fb) {
				t.Fatal("fast path declined the first record")
			}
			ui2 := tc.next(base)
			for i, in := range [][]byte{identityRecord("e2", ui2), identityRecord("e3", ui2)} {
				// read the block alone where it sits: from the memo or not
				v := bytes.Index(in, []byte(`"userIdentity":`)) + len(`"userIdentity":`)
				_, _, fromMemo := line.identityMemo.Lookup(in, v, 2)
				ui := rawIdentity{object: true}
				end := line.lineIdentityMemo(in, v, 0, &ui)
				if tc.name == "escaped" || tc.name == "duplicate" {
					if end >= 0 || fromMemo {
						t.Fatalf("block read: %d, from the memo %v", end, fromMemo)
					}
				} else {
					if end != v+len(ui2) {
						t.Fatalf("block ends at %d, want %d", end, v+len(ui2))
					}
					if want := tc.hit || i > 0; fromMemo != want { // the second one was kept by the first
						t.Fatalf("record %d: from the memo %v, want %v", i, fromMemo, want)
					}
					plain := rawIdentity{object: true}
					lineIdentity(in, v, 0, &plain)
					if !reflect.DeepEqual(ui, plain) {
						t.Fatalf("record %d: %+v, lineIdentity %+v", i, ui, plain)
					}
				}
				fresh := Parser{Strings: intern.New(64, 0)}
				var got, want schema.Event
				werr, wok := fresh.ParseLine(in, fb, &want)
				gerr, gok := line.ParseLine(in, fb, &got)
				if gok != wok || (gerr == nil) != (werr == nil) || !reflect.DeepEqual(got, want) {
					t.Fatalf("record %d: after the memo %+v %v %v, fresh %+v %v %v", i, got, gerr, gok, want, werr, wok)
				}
				if gok {
					compareLine(t, &line, &general, in, fb)
				} else if tc.name != "escaped" && tc.name != "duplicate" {
					t.Fatalf("record %d declined", i)
				}
			}
		})
	}
}

// More blocks than the memo holds, in turn: every record still reads
// right; blocks shorter than the memo's key or longer than its bound too.
func TestIdentityMemoTurnover(t *testing.T) {
	line := Parser{Strings: intern.New(64, 0)}
	general := Parser{Strings: intern.New(64, 0)}
	var blocks []string
	for i := range 3 * jsonx.MemoSets * jsonx.MemoWays {
		blocks = append(blocks, fmt.Sprintf(`{"type":"IAMUser","principalId":"AIDA%016d","arn":"arn:aws:iam::1:user/u%d","userName":"u%d"}`, i, i, i))
	}
	blocks = append(blocks, `{"type":"Root"}`, `{"type":"IAMUser","userName":"long","x":"`+strings.Repeat("y", jsonx.MaxMemoBlock)+`"}`)
	fb := Fallback{Now: fixedNow}
	for round := range 3 {
		for i, ui := range blocks {
			for _, id := range []string{"a", "b"} { // the second from the memo when kept
				if !compareLine(t, &line, &general, identityRecord(fmt.Sprintf("r%d-%d%s", round, i, id), ui), fb) {
					t.Fatalf("fast path declined block %d", i)
				}
			}
		}
	}
}

// FuzzParseLineIdentityMemo: a record read after another one (whose
// userIdentity block the memo may hold) reads exactly as with a new
// parser, and as Parse when the fast path takes it.
func FuzzParseLineIdentityMemo(f *testing.F) {
	ui := `{"type":"AssumedRole","principalId":"AROAE4QVLRJ5LWEXCGXBJ:i-0e75aefee291763f6","arn":"arn:aws:sts::1:assumed-role/r/s","sessionContext":{"sessionIssuer":{"arn":"arn:aws:iam::1:role/r","userName":"r"}}}`
	f.Add(identityRecord("e1", ui), identityRecord("e2", ui))
	f.Add(identityRecord("e1", ui), identityRecord("e2", strings.Replace(ui, `role/r"`, `role/q"`, 1)))
	f.Add(identityRecord("e1", ui), []byte(`{"eventID":"e2","eventName":"X","userIdentity":`+ui[:len(ui)-1]+`,"userName":"x"}}`))
	fb := Fallback{Now: fixedNow, Region: "r", Account: "a"}
	f.Fuzz(func(t *testing.T, prev, in []byte) {
		line := Parser{Strings: intern.New(16, 8)}
		general := Parser{Strings: intern.New(16, 8)}
		fresh := Parser{Strings: intern.New(16, 8)}
		var ev, got, want schema.Event
		line.ParseLine(prev, fb, &ev)
		gerr, gok := line.ParseLine(in, fb, &got)
		werr, wok := fresh.ParseLine(in, fb, &want)
		if gok != wok || (gerr == nil) != (werr == nil) || (gerr != nil && gerr.Error() != werr.Error()) || !reflect.DeepEqual(got, want) {
			t.Fatalf("after %s\n%s\nwith the memo %+v %v %v\nnew parser    %+v %v %v", prev, in, got, gerr, gok, want, werr, wok)
		}
		if gok {
			compareLine(t, &line, &general, in, fb)
		}
	})
}

// ParseLine locates userIdentity.arn and the session issuer's type where
// they are plain strings, read in place or from the identity memo, and
// nowhere else.
func TestParseLineSpans(t *testing.T) {
	long := `"principalId":"AROAE4QVLRJ5LWEXCGXBJ:i-0e75aefee291763f6",`
	for _, c := range []struct {
		ui        string
		arn, typ  string // "": no span
		duplicate bool
	}{
		{ui: `{` + long + `"arn":"arn:aws:sts::1:assumed-role/r/s","sessionContext":{"sessionIssuer":{"type":"Role","arn":"x"}}}`, arn: "arn:aws:sts::1:assumed-role/r/s", typ: "Role"},
		{ui: `{` + long + `"arn":"","sessionContext":{"sessionIssuer":{"type":""}}}`, arn: "", typ: ""},
		{ui: `{` + long + `"arn":"a","sessionContext":{"sessionIssuer":{"type":"Role","type":"Root"}}}`, arn: "a", duplicate: true},
		{ui: `{` + long + `"arn":"a","sessionContext":{"sessionIssuer":{"type":"R\u006fle"}}}`, arn: "a", duplicate: true},
		{ui: `{` + long + `"arn":"a","sessionContext":{"sessionIssuer":{"type":7}}}`, arn: "a", duplicate: true},
		{ui: `{` + long + `"arn":"a","sessionContext":{"type":"Role","sessionIssuer":"Role"}}`, arn: "a", duplicate: true},
		{ui: `{` + long + `"arn":null,"sessionContext.sessionIssuer.type":"Role"}`, duplicate: true},
	} {
		line := Parser{Strings: intern.New(64, 0)}
		for _, id := range []string{"a", "b"} { // the second from the memo
			in := identityRecord(id, c.ui)
			var ev schema.Event
			if err, ok := line.ParseLine(in, Fallback{Now: fixedNow}, &ev); !ok || err != nil {
				t.Fatalf("%s: declined (%v)", in, err)
			}
			get := func(s schema.Span) (string, bool) {
				if s.Off == 0 {
					return "", false
				}
				return string(in[s.Off : s.Off+s.Len]), true
			}
			arn, arnOK := get(ev.Spans.IdentityARN)
			typ, typOK := get(ev.Spans.IssuerType)
			wantARN := !strings.Contains(c.ui, `"arn":null`)
			wantTyp := !c.duplicate
			if arnOK != wantARN || arn != c.arn || typOK != wantTyp || typ != c.typ {
				t.Fatalf("%s: arn %q %v, issuer type %q %v; want %q %v, %q %v", in, arn, arnOK, typ, typOK, c.arn, wantARN, c.typ, wantTyp)
			}
		}
	}
}
