package vault

import (
	"bytes"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/valyala/fastjson"

	"auditwatch/ingest/intern"
	"auditwatch/ingest/jsonx"
)

// compareLine checks ParseLine against fastjson + Parse on one record and
// reports whether ParseLine took it.
func compareLine(t *testing.T, line, general *Parser, in []byte) bool {
	t.Helper()
	got, gerr, ok := line.ParseLine(in)
	if !ok {
		return false
	}
	v, err := fastjson.ParseBytes(in)
	if err != nil {
		t.Fatalf("%s\nParseLine took a record fastjson refuses: %v", in, err)
	}
	if !IsEntry(v) {
		t.Fatalf("%s\nParseLine took a record that is not a Vault entry", in)
	}
	want, werr := general.Parse(v)
	if (gerr == nil) != (werr == nil) || (gerr != nil && gerr.Error() != werr.Error()) {
		t.Fatalf("%s\nerror %v, Parse %v", in, gerr, werr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s\nParseLine %+v\nParse     %+v", in, got, want)
	}
	return true
}

func TestParseLineMatchesParseOnLogs(t *testing.T) {
	line := Parser{Strings: intern.New(64, 0), Now: fixedNow}
	general := Parser{Strings: intern.New(64, 0), Now: fixedNow}
	taken, total := 0, 0
	for _, f := range vaultFiles(t) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries(t, data) {
			total++
			if compareLine(t, &line, &general, e) {
				taken++
			}
		}
	}
	t.Logf("ParseLine took %d of %d entries", taken, total)
	// ordinary entries take the fast path; those whose strings it reads
	// need unescaping (error texts such as "1 error occurred:\n\t* …",
	// 24 of the OpenBao scenario's 1485 entries) go to Parse by design
	if total == 0 || taken*100 < total*95 {
		t.Fatalf("ParseLine took only %d of %d entries (want at least 95%%)", taken, total)
	}
}

func TestParseLineDeclines(t *testing.T) {
	for _, in := range []string{
		`{"type":"request","request":{"path":"x"}}`,                                      // no id
		`{"type":"kmip-request","request":{"id":"k"}}`,                                   // KMIP
		`{"type":"request","request":{"id":"a\u0062"}}`,                                  // escaped string read
		`{"t\u0079pe":"request","request":{"id":"a"}}`,                                   // escaped key
		`{"type":"request","type":"response","request":{"id":"a"}}`,                      // duplicate key
		`{"type":"request","request":{"id":"a"},"eventName":"x"}`,                        // a CloudTrail key
		`{"type":"request","request":{"id":"a"},"x":nan}`,                                // fastjson's own leniency
		`{"type":"request","request":{"id":"a"},"x":[1,]}`,                               // malformed
		`{"type":"request","request":{"id":"a"}} x`,                                      // trailing text
		`{"type":"response","request":{"id":"a"},"response":{"data":{"error":{"c":1}}}}`, // error object
		`{"type":"request","request":{"id":"a"},"auth":{"policies":[""]}}`,               // empty policy name
		`{"type":"request","request":{"id":"a"`,                                          // truncated
	} {
		var p Parser
		if _, _, ok := p.ParseLine([]byte(in)); ok {
			t.Errorf("ParseLine took %s", in)
		}
	}
}

func FuzzParseLine(f *testing.F) {
	f.Add([]byte(`{"time":"2026-11-28T00:17:41Z","type":"response","auth":{"entity_id":"e","policies":["a",1],"token_policies":["b"],"metadata":{"username":"u"}},"request":{"id":"r","operation":"update","path":"auth/userpass/login/x","namespace":{"path":"a/","id":"n"},"headers":{"user-agent":["u","v"]},"client_token_accessor":"acc"},"response":{"mount_type":"userpass","auth":{"display_name":"d","client_token":"t"},"data":{"error":"e","x":[1,{"y":null}]}},"error":""}`))
	f.Add([]byte(`{"type":"request","auth":{"accessor":"a","token_policies":["p"]},"request":{"id":"r2","path":"secret/x","remote_address":"[::1]:8200","headers":{"user-agent":"curl"}},"error":"1 error occurred:\n\t* permission denied\n\n"}`))
	f.Add([]byte(`{"type":"response","request":{"id":"r3"},"response":{"data":{"error":null}},"time":"bad"}`))
	line := Parser{Strings: intern.New(16, 8), Now: fixedNow}
	general := Parser{Strings: intern.New(16, 8), Now: fixedNow}
	f.Fuzz(func(t *testing.T, in []byte) {
		compareLine(t, &line, &general, in)
	})
}

// TestBodyRevokeLease: the lease id in a body-form revocation's request
// data is the event's lease, the same on both parse paths and the
// reference; request data elsewhere (a KV write with a lease_id field)
// is not.
func TestBodyRevokeLease(t *testing.T) {
	line := Parser{Strings: intern.New(64, 0), Now: fixedNow}
	general := Parser{Strings: intern.New(64, 0), Now: fixedNow}
	rec := func(path string) []byte {
		return []byte(`{"time":"2026-11-20T10:10:00Z","type":"request","auth":{"client_token":"hmac-sha256:aa","display_name":"root","policies":["root"]},"request":{"id":"r1","operation":"update","mount_point":"sys/","client_token":"hmac-sha256:aa","path":"` + path + `","data":{"lease_id":"hmac-sha256:1234","sync":true},"remote_address":"10.0.9.9"}}`)
	}
	for _, tc := range []struct{ path, want string }{
		{"sys/leases/revoke", "hmac-sha256:1234"},
		{"sys/revoke", "hmac-sha256:1234"},
		{"secret/data/app", ""},
		{"sys/leases/revoke/aws/creds/x/1", ""},
	} {
		in := rec(tc.path)
		if !compareLine(t, &line, &general, in) {
			t.Fatalf("%s: fast path declined", tc.path)
		}
		en, _, _ := line.ParseLine(in)
		if en.Event.LeaseID != tc.want {
			t.Errorf("%s: lease %q, want %q", tc.path, en.Event.LeaseID, tc.want)
		}
		v := fastjson.MustParseBytes(in)
		ref, err := refParse(v, fixedNow)
		if err != nil || ref.Event.LeaseID != tc.want {
			t.Errorf("%s: reference lease %q (%v)", tc.path, ref.Event.LeaseID, err)
		}
	}
}

// authMemoCase is a request entry with auth block a (and request id id).
func authMemoEntry(typ, id, a string) []byte {
	return []byte(`{"time":"2026-01-05T00:00:00.1Z","type":"` + typ + `","auth":` + a + `,"request":{"id":"` + id + `","operation":"read","path":"secret/data/x","remote_address":"10.0.0.1"}}`)
}

// The auth memo: an auth block read before is taken from the memo (its
// fields point into the memo's copy), and every entry still parses
// exactly as Parse does and as a parser that never saw the block before.
func TestAuthMemo(t *testing.T) {
	tok := "hmac-sha256:817d9897bc4d7fbdcbdab2fb9880c661ea655411257ad9d184820b8949d8761c"
	base := `{"client_token":"` + tok + `","accessor":"hmac-sha256:e67b","display_name":"approle","policies":["default","api-3"],"token_policies":["default","api-3"],"metadata":{"role_name":"api-3"},"entity_id":"c83e","token_ttl":3600}`
	same := func(s string) string { return s }
	for _, tc := range []struct {
		name string
		next func(string) string // the second entry's auth block from the first's
		hit  bool
	}{
		{"identical", same, true},
		{"one byte differs", func(s string) string { return strings.Replace(s, `"api-3"]`, `"api-4"]`, 1) }, false},
		{"entity differs", func(s string) string { return strings.Replace(s, `"c83e"`, `"c83f"`, 1) }, false},
		{"member added", func(s string) string { return strings.Replace(s, `,"token_ttl"`, `,"x":1,"token_ttl"`, 1) }, false},
		{"longer number", func(s string) string { return strings.Replace(s, `3600}`, `36000}`, 1) }, false},
		{"escaped", func(s string) string { return strings.Replace(s, `"approle"`, `"app\u0072ole"`, 1) }, false},
		{"policy objects", func(s string) string {
			return strings.Replace(strings.Replace(s, `["default","api-3"]`, `[1,{"a":2}]`, 1), `["default","api-3"]`, `[]`, 1)
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			line := Parser{Strings: intern.New(64, 0), Now: fixedNow}
			general := Parser{Strings: intern.New(64, 0), Now: fixedNow}
			first := authMemoEntry("request", "r1", base)
			if !compareLine(t, &line, &general, first) {
				t.Fatal("fast path declined the first entry")
			}
			a2 := tc.next(base)
			for i, in := range [][]byte{authMemoEntry("response", "r1", a2), authMemoEntry("request", "r2", a2)} {
				// read the block alone where it sits: from the memo or not
				v := bytes.Index(in, []byte(`"auth":`)) + len(`"auth":`)
				_, _, fromMemo := line.authMemo.Lookup(in, v, 2)
				var a rawAuth
				end := line.lineAuthMemo(in, v, 2, &a)
				if tc.name == "escaped" {
					if end >= 0 || fromMemo {
						t.Fatalf("an escaped block read: %d, from the memo %v", end, fromMemo)
					}
				} else {
					if end != v+len(a2) {
						t.Fatalf("block ends at %d, want %d", end, v+len(a2))
					}
					if want := tc.hit || i > 0; fromMemo != want { // the second one was kept by the first
						t.Fatalf("entry %d: from the memo %v, want %v", i, fromMemo, want)
					}
					var plain rawAuth
					line.lineAuth(in, v, 2, &plain)
					if !reflect.DeepEqual(a, plain) {
						t.Fatalf("entry %d: %+v, lineAuth %+v", i, a, plain)
					}
				}
				fresh := Parser{Strings: intern.New(64, 0), Now: fixedNow}
				want, werr, wok := fresh.ParseLine(in)
				got, gerr, gok := line.ParseLine(in)
				if gok != wok || (gerr == nil) != (werr == nil) || !reflect.DeepEqual(got, want) {
					t.Fatalf("entry %d: after the memo %+v %v %v, fresh %+v %v %v", i, got, gerr, gok, want, werr, wok)
				}
				if gok {
					compareLine(t, &line, &general, in)
				}
			}
			// at another depth the block is read again: at the lexer's
			// limit its policies array is one level too deep
			in := authMemoEntry("request", "r3", a2)
			v := bytes.Index(in, []byte(`"auth":`)) + len(`"auth":`)
			var deep, plain rawAuth
			if got, want := line.lineAuthMemo(in, v, jsonx.MaxLexDepth, &deep), line.lineAuth(in, v, jsonx.MaxLexDepth, &plain); got != -1 || want != -1 {
				t.Fatalf("at depth %d: %d, lineAuth %d (want -1)", jsonx.MaxLexDepth, got, want)
			}
		})
	}
}

// More blocks than the memo holds, in turn: every entry still reads
// right; blocks shorter than the memo's key or longer than its bound too.
func TestAuthMemoTurnover(t *testing.T) {
	line := Parser{Strings: intern.New(64, 0), Now: fixedNow}
	general := Parser{Strings: intern.New(64, 0), Now: fixedNow}
	var blocks []string
	for i := range 3 * jsonx.MemoSets * jsonx.MemoWays {
		blocks = append(blocks, fmt.Sprintf(`{"client_token":"hmac-sha256:%064x","entity_id":"e%d","policies":["p%d"]}`, i, i, i))
	}
	blocks = append(blocks, `{"entity_id":"short"}`, `{"entity_id":"long","x":"`+strings.Repeat("y", jsonx.MaxMemoBlock)+`"}`)
	for round := range 3 {
		for i, a := range blocks {
			in := authMemoEntry("request", fmt.Sprintf("r%d-%d", round, i), a)
			if !compareLine(t, &line, &general, in) {
				t.Fatalf("fast path declined block %d", i)
			}
			// and again, from the memo when it was kept
			if !compareLine(t, &line, &general, authMemoEntry("response", fmt.Sprintf("r%d-%d", round, i), a)) {
				t.Fatalf("fast path declined block %d", i)
			}
		}
	}
}

// FuzzParseLineAuthMemo: an entry read after another one (whose auth
// block the memo may hold) reads exactly as with a new parser, and as
// Parse when the fast path takes it.
func FuzzParseLineAuthMemo(f *testing.F) {
	a := `{"client_token":"hmac-sha256:817d9897bc4d7fbdcbdab2fb9880c661ea655411257ad9d184820b8949d8761c","policies":["a",1],"token_policies":["b"],"metadata":{"username":"u"},"entity_id":"e"}`
	f.Add(authMemoEntry("request", "r1", a), authMemoEntry("response", "r1", a))
	f.Add(authMemoEntry("request", "r1", a), authMemoEntry("response", "r1", strings.Replace(a, `"e"`, `"f"`, 1)))
	f.Add(authMemoEntry("request", "r1", a), []byte(`{"type":"response","auth":`+a[:len(a)-1]+`,"x":[1,2]},"request":{"id":"r1"}}`))
	f.Fuzz(func(t *testing.T, prev, in []byte) {
		line := Parser{Strings: intern.New(16, 8), Now: fixedNow, MaxDepth: 8}
		general := Parser{Strings: intern.New(16, 8), Now: fixedNow}
		fresh := Parser{Strings: intern.New(16, 8), Now: fixedNow, MaxDepth: 8}
		line.ParseLine(prev)
		got, gerr, gok := line.ParseLine(in)
		want, werr, wok := fresh.ParseLine(in)
		if gok != wok || (gerr == nil) != (werr == nil) || (gerr != nil && gerr.Error() != werr.Error()) || !reflect.DeepEqual(got, want) {
			t.Fatalf("after %s\n%s\nwith the memo %+v %v %v\nnew parser    %+v %v %v", prev, in, got, gerr, gok, want, werr, wok)
		}
		if gok {
			compareLine(t, &line, &general, in)
		}
	})
}
