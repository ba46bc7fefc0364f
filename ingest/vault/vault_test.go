package vault

import (
	"auditwatch/ingest/jsonx/jsonxtest"
	"auditwatch/internal/testenv"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fastjson"

	"auditwatch/ingest/intern"
	"auditwatch/ingest/jsonx"
	"auditwatch/schema"
)

var sharedPresent bool

var fixedNow = func() time.Time { return time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC) }

func parseOne(t *testing.T, js string) Entry {
	t.Helper()
	v, err := fastjson.Parse(js)
	if err != nil {
		t.Fatalf("test input: %v", err)
	}
	p := Parser{Strings: intern.New(0, 0), Now: fixedNow}
	en, err := p.Parse(v)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return en
}

func TestParse(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want schema.Event
		resp bool
	}{
		{
			name: "read with entity",
			in: `{"time":"2026-11-28T00:17:41.5Z","type":"response","auth":{"entity_id":"e1","display_name":"userpass-alice","metadata":{"username":"alice"},"policies":["default","dev"]},
				"request":{"id":"r1","operation":"read","mount_point":"secret/","mount_type":"kv","path":"secret/data/db","remote_address":"10.0.0.5","remote_port":1,"client_token":"hmac-sha256:t","namespace":{"id":"root"},"headers":{"user-agent":["curl/8"]}},"response":{"data":{"x":1}}}`,
			resp: true,
			want: schema.Event{Time: time.Date(2026, 11, 28, 0, 17, 41, 500000000, time.UTC), Source: "vault", ID: "r1",
				Principal: "e1", PrincipalName: "alice", PrincipalType: "entity", Policies: []string{"default", "dev"}, TokenHMAC: "hmac-sha256:t",
				Action: "vault:read", Resource: "secret/data/db", Mount: "secret/", MountType: "kv", Namespace: "root",
				SourceIP: "10.0.0.5", SourceIPRaw: "10.0.0.5", UserAgent: "curl/8", Outcome: "success", ReadOnly: true},
		},
		{
			name: "OpenBao unknown user: only response.data.error",
			in: `{"time":"2026-11-28T00:17:41Z","type":"response","auth":{"policy_results":{"allowed":true}},"request":{"id":"r2","operation":"update","mount_type":"userpass","path":"auth/userpass/login/mallory","remote_address":"[2001:db8::1]:5000","namespace":{"id":"ns1","path":"team/"}},
				"response":{"mount_type":"userpass","data":{"error":"hmac-sha256:abc"}},"error":""}`,
			resp: true,
			want: schema.Event{Time: time.Date(2026, 11, 28, 0, 17, 41, 0, time.UTC), Source: "vault", ID: "r2",
				PrincipalName: "mallory", PrincipalType: "anonymous", AuthMethod: "userpass",
				Action: "vault:update", Resource: "auth/userpass/login/mallory", Mount: "auth/userpass/", MountType: "userpass", Namespace: "team",
				SourceIP: "2001:db8::1", SourceIPRaw: "[2001:db8::1]:5000", Outcome: "failure", Error: "hmac-sha256:abc",
				FailureKind: schema.FailureInvalidCredentials, Auth: true},
		},
		{
			name: "invalid token: permission denied, auth block empty",
			in:   `{"time":"2026-11-28T00:17:41Z","type":"request","auth":{},"request":{"id":"r3","operation":"read","path":"secret/data/x"},"error":"1 error occurred:\n\t* permission denied\n\n"}`,
			want: schema.Event{Time: time.Date(2026, 11, 28, 0, 17, 41, 0, time.UTC), Source: "vault", ID: "r3", PrincipalType: "anonymous",
				Action: "vault:read", Resource: "secret/data/x", Mount: "secret/", Outcome: "failure", Error: "permission denied",
				FailureKind: schema.FailureInvalidToken, ReadOnly: true},
		},
		{
			name: "policy refusal: permission denied with an identity",
			in:   `{"time":"2026-11-28T00:17:41Z","type":"request","auth":{"accessor":"hmac-sha256:a","policies":["default"]},"request":{"id":"r4","operation":"list","path":"secret/metadata/"},"error":"1 error occurred:\n\t* permission denied\n\n"}`,
			want: schema.Event{Time: time.Date(2026, 11, 28, 0, 17, 41, 0, time.UTC), Source: "vault", ID: "r4", Principal: "hmac-sha256:a", PrincipalType: "token", TokenAccessor: "hmac-sha256:a",
				Policies: []string{"default"}, Action: "vault:list", Resource: "secret/metadata/", Mount: "secret/", Outcome: "failure", Error: "permission denied",
				FailureKind: schema.FailurePermissionDenied, ReadOnly: true},
		},
		{
			name: "login success takes the response auth",
			in: `{"time":"2026-11-28T00:17:41Z","type":"response","auth":{},"request":{"id":"r5","operation":"update","mount_type":"ns_token","path":"auth/approle/login","remote_address":"010.1.2.3"},
				"response":{"auth":{"client_token":"hmac-sha256:new","accessor":"hmac-sha256:acc","display_name":"approle","metadata":{"role_name":"ci"},"token_policies":["ci"],"entity_id":"e9"}}}`,
			resp: true,
			want: schema.Event{Time: time.Date(2026, 11, 28, 0, 17, 41, 0, time.UTC), Source: "vault", ID: "r5", Principal: "e9", PrincipalName: "ci", PrincipalType: "entity",
				Policies: []string{"ci"}, TokenHMAC: "hmac-sha256:new", AuthMethod: "approle", Action: "vault:update", Resource: "auth/approle/login",
				Mount: "auth/approle/", MountType: "ns_token", SourceIP: "10.1.2.3", SourceIPRaw: "010.1.2.3", Outcome: "success", Auth: true},
		},
		{
			name: "no time, no id: clock and content hash",
			in:   `{"type":"request","request":{"operation":"read","path":"sys/health","headers":{"user-agent":"ua"}}}`,
			want: schema.Event{Time: fixedNow(), Source: "vault", ID: "vault-", PrincipalType: "anonymous", Action: "vault:read", Resource: "sys/health",
				Mount: "sys/", UserAgent: "ua", Outcome: "success", ReadOnly: true},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			en := parseOne(t, c.in)
			if en.Response != c.resp {
				t.Errorf("Response = %v, want %v", en.Response, c.resp)
			}
			got := en.Event
			if strings.HasSuffix(c.want.ID, "-") {
				if !strings.HasPrefix(got.ID, c.want.ID) || len(got.ID) != len(c.want.ID)+24 || en.HasID {
					t.Errorf("ID = %q (HasID %v), want a %q content hash", got.ID, en.HasID, c.want.ID)
				}
				got.ID = c.want.ID
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got  %+v\nwant %+v", got, c.want)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	for in, want := range map[string]error{
		`{"type":"audit","request":{}}`:                      ErrNotEntry,
		`{"type":"request","request":"x"}`:                   ErrNotEntry,
		`{"type":"request"}`:                                 ErrNotEntry,
		`{"type":"request","time":"yesterday","request":{}}`: ErrBadTime,
	} {
		v := fastjson.MustParse(in)
		var p Parser
		if _, err := p.Parse(v); !errors.Is(err, want) {
			t.Errorf("%s: error %v, want %v", in, err, want)
		}
	}
}

func TestHelpers(t *testing.T) {
	for in, want := range map[string]string{
		"1 error occurred:\n\t* permission denied\n\n": "permission denied",
		"2 errors occurred:\n\t* a\n\t* b\n\n":         "a; b",
		"  plain  ":                                    "plain",
		"error occurred: but no list":                  "but no list",
	} {
		if got := CleanError(in); got != want {
			t.Errorf("CleanError(%q) = %q, want %q", in, got, want)
		}
	}
	for path, want := range map[string]bool{
		"auth/userpass/login/bob": true, "auth/approle/login": true, "auth/oidc/oidc/callback": true,
		"auth/token/lookup-self": false, "secret/login": false, "auth/login": false,
	} {
		if got := isLogin(path); got != want {
			t.Errorf("isLogin(%q) = %v", path, got)
		}
	}
	for path, want := range map[string]string{"secret/data/x": "secret/", "auth/userpass/login/x": "auth/userpass/", "sys": "sys", "auth/x": "auth/x"} {
		if got := mountOf(path); got != want {
			t.Errorf("mountOf(%q) = %q, want %q", path, got, want)
		}
	}
}

// vaultFiles are every Vault audit log in the shared corpus and the
// repository's OpenBao scenario.
func vaultFiles(t testing.TB) []string {
	t.Helper()
	files := []string{filepath.Join(testenv.RepoRoot(t), "testdata", "openbao-scenario", "audit.log")}
	shared, ok := testenv.LookupSharedTestdata(t)
	if !ok {
		return files
	}
	shared = filepath.Join(shared, "vault")
	sharedPresent = true
	err := filepath.WalkDir(shared, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasSuffix(p, ".md") && !strings.Contains(p, "server-log") && !strings.HasSuffix(p, "manifest.jsonl") {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// entries frames a log into its JSON records.
func entries(t testing.TB, data []byte) [][]byte {
	sc := jsonx.NewScanner(bytes.NewReader(data), jsonx.Limits{})
	var out [][]byte
	for {
		rec, err := sc.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if rec.Err == nil {
			out = append(out, append([]byte(nil), rec.Data...))
		}
	}
}

// compare parses in with Parser and with the reference implementation and
// fails when they disagree. It reports whether in was a Vault entry.
func compare(t *testing.T, p *Parser, in []byte) bool {
	t.Helper()
	var fp fastjson.Parser
	v, err := fp.ParseBytes(in)
	if err != nil || jsonxtest.HasDuplicateKeys(v) {
		// duplicate keys: JSON leaves their meaning open; Parser takes
		// the first, fastjson's Get depends on escaping
		return false
	}
	// fresh trees: reading values changes how fastjson re-marshals them,
	// which the content hash of id-less entries sees
	v, _ = fp.ParseBytes(in)
	want, werr := refParse(v, fixedNow)
	v, _ = fp.ParseBytes(in)
	got, gerr := p.Parse(v)
	if (werr == nil) != (gerr == nil) || (werr != nil && !errors.Is(gerr, werr)) {
		t.Fatalf("%s\nerror %v, reference %v", in, gerr, werr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s\ngot       %+v\nreference %+v", in, got, want)
	}
	return werr == nil
}

func TestParseMatchesReferenceOnLogs(t *testing.T) {
	p := Parser{Strings: intern.New(64, 0), Now: fixedNow} // small table: resets are exercised too
	n := 0
	for _, f := range vaultFiles(t) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries(t, data) {
			if compare(t, &p, e) {
				n++
			}
		}
	}
	t.Logf("%d entries compared", n)
	if min := minCompared(t); n < min {
		t.Fatalf("only %d entries compared, want %d or more", n, min)
	}
	if p.Strings.Resets == 0 {
		t.Fatal("the intern table never filled up: the test does not exercise its bound")
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"time":"2026-11-28T00:17:41Z","type":"response","auth":{"entity_id":"e","policies":["a"]},"request":{"id":"r","operation":"read","path":"auth/userpass/login/x","namespace":{"path":"a/"},"headers":{"user-agent":["u"]}},"response":{"auth":{"display_name":"d"},"data":{"error":{"x":1}}},"error":"1 error occurred:\n\t* permission denied\n\n"}`))
	f.Add([]byte(`{"type":"kmip-request","request":{"client_certificate_serial_number":"1","data":{"kmip_request":{"tag":"Operation","value":"0x0a"}}}}`))
	f.Add([]byte(`{"type":"request","request":{"path":"a\u002fb","remote_address":"1.2.3.4:5"},"auth":{"metadata":{"username":"\u00e9"}}}`))
	p := Parser{Strings: intern.New(16, 8), Now: fixedNow}
	f.Add([]byte("auth/oidc/oidc/callback"))
	f.Add([]byte("auth//login/"))
	f.Fuzz(func(t *testing.T, in []byte) {
		compare(t, &p, in)
		if got, want := isLogin(string(in)), refIsLogin(string(in)); got != want {
			t.Fatalf("isLogin(%q) = %v, reference %v", in, got, want)
		}
	})
}

// minCompared is how many records the logs hold at least: all of the
// shared corpus when present, else the repository's own file.
func minCompared(t *testing.T) int {
	if sharedPresent {
		return 4000
	}
	return 1400
}
