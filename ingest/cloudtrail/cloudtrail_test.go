package cloudtrail

import (
	"auditwatch/ingest/jsonx/jsonxtest"
	"auditwatch/internal/testenv"
	"bytes"
	"compress/gzip"
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

func parseOne(t *testing.T, js string, fb Fallback) (schema.Event, error) {
	t.Helper()
	v, err := fastjson.Parse(js)
	if err != nil {
		t.Fatalf("test input: %v", err)
	}
	p := Parser{Strings: intern.New(0, 0)}
	var ev schema.Event
	err = p.Parse(v, fb, &ev)
	return ev, err
}

func TestParse(t *testing.T) {
	t0 := time.Date(2023, 7, 10, 11, 42, 36, 0, time.UTC)
	cases := []struct {
		name string
		in   string
		fb   Fallback
		want schema.Event
	}{
		{
			name: "assumed role folds onto the role",
			in: `{"eventTime":"2023-07-10T11:42:36Z","eventID":"e1","eventSource":"secretsmanager.amazonaws.com","eventName":"GetSecretValue","awsRegion":"us-east-1",
				"sourceIPAddress":"06.237.252.245","userAgent":"aws-cli/2","userIdentity":{"type":"AssumedRole","arn":"arn:aws:sts::111:assumed-role/app/sess-1","accountId":"111","accessKeyId":"ASIA1",
				"sessionContext":{"sessionIssuer":{"arn":"arn:aws:iam::111:role/path/app","userName":"app"}}},"requestParameters":{"secretId":"prod/db"},"readOnly":"true"}`,
			want: schema.Event{Time: t0, Source: "cloudtrail", ID: "e1", Principal: "arn:aws:iam::111:role/path/app", PrincipalName: "app", PrincipalType: "AssumedRole",
				Session: "sess-1", Account: "111", AccessKey: "ASIA1", Action: "secretsmanager:GetSecretValue", Resource: "prod/db", Region: "us-east-1",
				SourceIP: "6.237.252.245", SourceIPRaw: "06.237.252.245", UserAgent: "aws-cli/2", Outcome: "success", ReadOnly: true},
		},
		{
			name: "assumed role without issuer",
			in: `{"eventTime":"2023-07-10T11:42:36+02:00","eventID":"e2","eventSource":"sts.amazonaws.com","eventName":"AssumeRole","sourceIPAddress":"AWS Internal",
				"userIdentity":{"type":"AssumedRole","arn":"arn:aws:sts::222:assumed-role/ops/bob"},"errorCode":"AccessDenied","errorMessage":"no"}`,
			fb: Fallback{Region: "eu-west-1", Account: "999"},
			want: schema.Event{Time: t0.Add(-2 * time.Hour), Source: "cloudtrail", ID: "e2", Principal: "arn:aws:iam::222:role/ops", PrincipalName: "ops", PrincipalType: "AssumedRole",
				Session: "bob", Account: "999", Action: "sts:AssumeRole", Region: "eu-west-1", SourceIPRaw: "AWS Internal", SourceIsService: true,
				Outcome: "failure", Error: "AccessDenied", FailureKind: schema.FailurePermissionDenied, Auth: true, AuthMethod: "sts"},
		},
		{
			name: "console login failure only in responseElements",
			in: `{"eventTime":"2022-09-28 17:30:05.000000000","eventID":"e3","eventSource":"signin.amazonaws.com","eventName":"ConsoleLogin","sourceIPAddress":"1.2.3.4, 5.6.7.8",
				"userIdentity":{"type":"IAMUser","accountId":"333","userName":"carol","principalId":"AID"},"responseElements":{"ConsoleLogin":"Failure"},"errorMessage":"Failed authentication","errorCode":"200"}`,
			want: schema.Event{Time: time.Date(2022, 9, 28, 17, 30, 5, 0, time.UTC), Source: "cloudtrail", ID: "e3", Principal: "arn:aws:iam::333:user/carol", PrincipalName: "carol", PrincipalType: "IAMUser",
				Account: "333", Action: "signin:ConsoleLogin", SourceIP: "1.2.3.4", SourceIPRaw: "1.2.3.4, 5.6.7.8", Outcome: "failure", Error: "Failed authentication",
				FailureKind: schema.FailureInvalidCredentials, Auth: true, AuthMethod: "console"},
		},
		{
			name: "service event without identity type, errorCode 200, secret ARN from resources",
			in: `{"eventID":"e4","eventSource":"secretsmanager.amazonaws.com","eventName":"RotationSucceeded","errorCode":"200","recipientAccountId":"444",
				"userIdentity":{"accountId":"444","invokedBy":"secretsmanager.amazonaws.com"},"resources":[{"ARN":"arn:aws:kms:x"},{"ARN":"arn:aws:secretsmanager:us-east-1:444:secret:db-AbC"}]}`,
			fb: Fallback{Now: fixedNow},
			want: schema.Event{Time: fixedNow(), Source: "cloudtrail", ID: "e4", Principal: "secretsmanager.amazonaws.com", PrincipalName: "secretsmanager.amazonaws.com",
				PrincipalType: "AWSService", Account: "444", Action: "secretsmanager:RotationSucceeded", Resource: "arn:aws:secretsmanager:us-east-1:444:secret:db-AbC",
				Outcome: "success", InvokedBy: "secretsmanager.amazonaws.com"},
		},
		{
			name: "kms Decrypt that Secrets Manager makes for a role's GetSecretValue: the role's identity, invokedBy kept",
			in: `{"eventID":"e5","eventTime":"2024-01-02T03:04:05Z","eventSource":"kms.amazonaws.com","eventName":"Decrypt","awsRegion":"us-east-1","sourceIPAddress":"secretsmanager.amazonaws.com",
				"userIdentity":{"type":"AssumedRole","arn":"arn:aws:sts::444:assumed-role/app/i-1","accountId":"444","invokedBy":"secretsmanager.amazonaws.com",
				"sessionContext":{"sessionIssuer":{"arn":"arn:aws:iam::444:role/app","userName":"app"}}},"resources":[{"ARN":"arn:aws:kms:us-east-1:444:key/k1"}]}`,
			want: schema.Event{Time: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), Source: "cloudtrail", ID: "e5", Principal: "arn:aws:iam::444:role/app", PrincipalName: "app",
				PrincipalType: "AssumedRole", Session: "i-1", Account: "444", Action: "kms:Decrypt", Region: "us-east-1", Resource: "arn:aws:kms:us-east-1:444:key/k1",
				SourceIPRaw: "secretsmanager.amazonaws.com", SourceIsService: true, InvokedBy: "secretsmanager.amazonaws.com", Outcome: "success"},
		},
		{
			name: "root, no eventID: content hash",
			in:   `{"eventTime":"2023-07-10T11:42:36Z","eventSource":"iam.amazonaws.com","eventName":"ListUsers","userIdentity":{"type":"Root","arn":"arn:aws:iam::555:root"},"requestParameters":{"userName":"dave"}}`,
			want: schema.Event{Time: t0, Source: "cloudtrail", ID: "cloudtrail-", Principal: "arn:aws:iam::555:root", PrincipalName: "root", PrincipalType: "Root",
				Action: "iam:ListUsers", Resource: "dave", Outcome: "success"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseOne(t, c.in, c.fb)
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasSuffix(c.want.ID, "-") {
				if !strings.HasPrefix(got.ID, c.want.ID) || len(got.ID) != len(c.want.ID)+24 {
					t.Errorf("ID = %q, want a %q content hash", got.ID, c.want.ID)
				}
				got.ID = c.want.ID
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got  %+v\nwant %+v", got, c.want)
			}
		})
	}
}

// TestConsoleLoginIdentity checks that sign-ins without userIdentity.arn
// are keyed like the same identity's successful ones, on both the fast
// path and the fastjson path.
func TestConsoleLoginIdentity(t *testing.T) {
	const failed = `"eventSource":"signin.amazonaws.com","eventName":"ConsoleLogin","sourceIPAddress":"203.0.113.9","errorMessage":"Failed authentication","responseElements":{"ConsoleLogin":"Failure"}`
	cases := []struct {
		name             string
		in               string
		principal, pname string
		ptype, account   string
	}{
		{
			name:      "failed login of an IAM user: the user's ARN",
			in:        `{"eventID":"c1","awsRegion":"us-east-1",` + failed + `,"userIdentity":{"type":"IAMUser","principalId":"AIDACKCEVSQ6C2EXAMPLE","accountId":"111122223333","accessKeyId":"","userName":"anaya"}}`,
			principal: "arn:aws:iam::111122223333:user/anaya", pname: "anaya", ptype: "IAMUser", account: "111122223333",
		},
		{
			name:      "successful login of the same user: the same key",
			in:        `{"eventID":"c2","awsRegion":"us-east-1","eventSource":"signin.amazonaws.com","eventName":"ConsoleLogin","sourceIPAddress":"203.0.113.9","responseElements":{"ConsoleLogin":"Success"},"userIdentity":{"type":"IAMUser","principalId":"AIDACKCEVSQ6C2EXAMPLE","arn":"arn:aws:iam::111122223333:user/anaya","accountId":"111122223333","userName":"anaya"}}`,
			principal: "arn:aws:iam::111122223333:user/anaya", pname: "anaya", ptype: "IAMUser", account: "111122223333",
		},
		{
			name:      "no identity type, userName and accountId",
			in:        `{"eventID":"c3","awsRegion":"eu-west-1",` + failed + `,"userIdentity":{"principalId":"AIDAX","accountId":"222","userName":"bo"}}`,
			principal: "arn:aws:iam::222:user/bo", pname: "bo", account: "222",
		},
		{
			name:      "GovCloud partition",
			in:        `{"eventID":"c4","awsRegion":"us-gov-west-1",` + failed + `,"userIdentity":{"type":"IAMUser","principalId":"AIDAX","accountId":"333","userName":"cy"}}`,
			principal: "arn:aws-us-gov:iam::333:user/cy", pname: "cy", ptype: "IAMUser", account: "333",
		},
		{
			name:      "China partition",
			in:        `{"eventID":"c5","awsRegion":"cn-north-1",` + failed + `,"userIdentity":{"type":"IAMUser","principalId":"AIDAX","accountId":"444","userName":"di"}}`,
			principal: "arn:aws-cn:iam::444:user/di", pname: "di", ptype: "IAMUser", account: "444",
		},
		{
			name:  "unknown user: anonymous, the hidden name kept",
			in:    `{"eventID":"c6","awsRegion":"us-east-1",` + failed + `,"userIdentity":{"type":"IAMUser","accountId":"111122223333","accessKeyId":"","userName":"HIDDEN_DUE_TO_SECURITY_REASONS"}}`,
			pname: "HIDDEN_DUE_TO_SECURITY_REASONS", ptype: schema.PrincipalTypeAnonymous, account: "111122223333",
		},
		{
			name:  "unknown user with a principalId: still anonymous",
			in:    `{"eventID":"c7","awsRegion":"us-east-1",` + failed + `,"userIdentity":{"type":"IAMUser","principalId":"AIDAX","accountId":"111122223333","userName":"HIDDEN_DUE_TO_SECURITY_REASONS"}}`,
			pname: "HIDDEN_DUE_TO_SECURITY_REASONS", ptype: schema.PrincipalTypeAnonymous, account: "111122223333",
		},
		{
			name:      "root login without arn",
			in:        `{"eventID":"c8","awsRegion":"us-east-1",` + failed + `,"userIdentity":{"type":"Root","principalId":"555","accountId":"555","accessKeyId":""}}`,
			principal: "arn:aws:iam::555:root", pname: "root", ptype: "Root", account: "555",
		},
		{
			name:      "root login with arn",
			in:        `{"eventID":"c9","awsRegion":"us-east-1","eventSource":"signin.amazonaws.com","eventName":"ConsoleLogin","sourceIPAddress":"203.0.113.9","responseElements":{"ConsoleLogin":"Success"},"userIdentity":{"type":"Root","principalId":"555","arn":"arn:aws:iam::555:root","accountId":"555","accessKeyId":""}}`,
			principal: "arn:aws:iam::555:root", pname: "root", ptype: "Root", account: "555",
		},
		{
			name:      "an identity type that is not a user keeps its principalId",
			in:        `{"eventID":"c10","awsRegion":"us-east-1",` + failed + `,"userIdentity":{"type":"SAMLUser","principalId":"SAML:x","accountId":"666","userName":"ed"}}`,
			principal: "SAML:x", pname: "ed", ptype: "SAMLUser", account: "666",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, path := range []string{"fastjson", "line"} {
				p := Parser{Strings: intern.New(0, 0)}
				var ev schema.Event
				if path == "line" {
					err, ok := p.ParseLine([]byte(c.in), Fallback{}, &ev)
					if !ok || err != nil {
						t.Fatalf("ParseLine: ok %v, error %v", ok, err)
					}
				} else {
					got, err := parseOne(t, c.in, Fallback{})
					if err != nil {
						t.Fatal(err)
					}
					ev = got
				}
				if ev.Principal != c.principal || ev.PrincipalName != c.pname || ev.PrincipalType != c.ptype || ev.Account != c.account {
					t.Errorf("%s: principal %q name %q type %q account %q, want %q %q %q %q", path,
						ev.Principal, ev.PrincipalName, ev.PrincipalType, ev.Account, c.principal, c.pname, c.ptype, c.account)
				}
				if !ev.Auth {
					t.Errorf("%s: a console login is not marked as an authentication", path)
				}
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	for _, in := range []string{`{"eventSource":"s3.amazonaws.com"}`, `{"a":1}`, `[1]`} {
		if _, err := parseOne(t, in, Fallback{Now: fixedNow}); !errors.Is(err, ErrNotRecord) {
			t.Errorf("%s: error %v, want ErrNotRecord", in, err)
		}
	}
}

func TestFailureKind(t *testing.T) {
	for code, want := range map[string]string{
		"AccessDenied": schema.FailurePermissionDenied, "Client.UnauthorizedOperation": schema.FailurePermissionDenied,
		"InvalidClientTokenId": schema.FailureInvalidCredentials, "ExpiredToken": schema.FailureInvalidToken,
		"ThrottlingException": schema.FailureThrottled, "ResourceNotFoundException": schema.FailureNotFound,
		"NoSuchBucket": schema.FailureNotFound, "ValidationException": schema.FailureOther,
	} {
		if got := FailureKind(code); got != want {
			t.Errorf("FailureKind(%q) = %q, want %q", code, got, want)
		}
	}
}

func TestParseTime(t *testing.T) {
	for in, want := range map[string]time.Time{
		"2023-07-10T11:42:36Z":          time.Date(2023, 7, 10, 11, 42, 36, 0, time.UTC),
		"2023-07-10T13:42:36.5+02:00":   time.Date(2023, 7, 10, 11, 42, 36, 5e8, time.UTC),
		"2022-09-28 17:30:05.000000000": time.Date(2022, 9, 28, 17, 30, 5, 0, time.UTC),
		"20230710T114236Z":              time.Date(2023, 7, 10, 11, 42, 36, 0, time.UTC),
	} {
		got, ok := ParseTime(in)
		if !ok || !got.Equal(want) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", in, got, ok, want)
		}
		if got2, ok2 := parseTime([]byte(in)); !ok2 || !got2.Equal(got) || got2.Location() != got.Location() {
			t.Errorf("parseTime(%q) = %v, %v; ParseTime gives %v", in, got2, ok2, got)
		}
	}
	if _, ok := ParseTime("yesterday"); ok {
		t.Error("ParseTime accepted \"yesterday\"")
	}
}

// compare parses in with Parser and with the reference implementation and
// fails when they disagree. It reports whether in was a record.
func compare(t *testing.T, p *Parser, in []byte, fb Fallback) bool {
	t.Helper()
	var fp fastjson.Parser
	v, err := fp.ParseBytes(in)
	if err != nil || jsonxtest.HasDuplicateKeys(v) {
		// duplicate keys: JSON leaves their meaning open; Parser takes
		// the first, fastjson's Get depends on escaping
		return false
	}
	// fresh trees: reading values changes how fastjson re-marshals them,
	// which the content hash of records without eventID sees
	v, _ = fp.ParseBytes(in)
	var want schema.Event
	werr := refParse(v, fb, &want)
	v, _ = fp.ParseBytes(in)
	var got schema.Event
	gerr := p.Parse(v, fb, &got)
	if (werr == nil) != (gerr == nil) || (werr != nil && gerr.Error() != werr.Error()) {
		t.Fatalf("%s\nerror %v, reference %v", in, gerr, werr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s\ngot       %+v\nreference %+v", in, got, want)
	}
	return werr == nil
}

// records frames every CloudTrail file of the shared corpus (and the
// repository's sample) into JSON records; the LookupEvents
// CloudTrailEvent strings are unwrapped.
func records(t *testing.T) [][]byte {
	dir := testenv.RepoRoot(t)
	files := []string{filepath.Join(dir, "ingest", "testdata", "cloudtrail-sample.jsonl")}
	if shared, ok := testenv.LookupSharedTestdata(t); ok {
		if err := filepath.WalkDir(filepath.Join(shared, "cloudtrail"), func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && !strings.HasSuffix(p, ".md") && !strings.HasSuffix(p, "manifest.jsonl") {
				files = append(files, p)
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	sharedPresent = len(files) > 1
	var out [][]byte
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(f, ".gz") {
			zr, err := gzip.NewReader(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			if data, err = io.ReadAll(zr); err != nil {
				t.Fatal(err)
			}
		}
		sc := jsonx.NewScanner(bytes.NewReader(data), jsonx.Limits{})
		for {
			rec, err := sc.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if rec.Err != nil {
				continue
			}
			if rec.Kind == jsonx.KindEvents {
				if v, err := fastjson.ParseBytes(rec.Data); err == nil {
					out = append(out, append([]byte(nil), v.GetStringBytes("CloudTrailEvent")...))
				}
				continue
			}
			out = append(out, append([]byte(nil), rec.Data...))
			if v, err := fastjson.ParseBytes(rec.Data); err == nil && v.Get("detail") != nil {
				out = append(out, []byte(v.Get("detail").String()))
			}
		}
	}
	return out
}

func TestParseMatchesReferenceOnLogs(t *testing.T) {
	p := Parser{Strings: intern.New(64, 0)} // small table: resets are exercised too
	n := 0
	for _, rec := range records(t) {
		if compare(t, &p, rec, Fallback{Now: fixedNow, Region: "r", Account: "a"}) {
			n++
		}
	}
	t.Logf("%d records compared", n)
	if min := minCompared(t); n < min {
		t.Fatalf("only %d records compared, want %d or more", n, min)
	}
	if p.Strings.Resets == 0 {
		t.Fatal("the intern table never filled up: the test does not exercise its bound")
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"eventTime":"2023-07-10T11:42:36Z","eventSource":"signin.amazonaws.com","eventName":"ConsoleLogin","userIdentity":{"type":"FederatedUser","arn":"arn:aws:sts::1:federated-user/x","sessionContext":{"sessionIssuer":{"arn":"arn:aws:iam::1:user/y"}}},"responseElements":{"ConsoleLogin":"Failure"},"errorMessage":"account locked"}`))
	f.Add([]byte(`{"eventName":"GetSecretValue","eventSource":"secretsmanager.amazonaws.com","requestParameters":{"secretIdList":["a"]},"resources":[{"ARN":"arn:aws:secretsmanager:x:secret:y"}],"readOnly":true,"sourceIPAddress":"[::ffff:1.2.3.4]:80"}`))
	f.Add([]byte(`{"p_event_time":"2022-09-28 17:30:05.000000000","eventName":"X\u0041","userIdentity":{"type":"AWSAccount","principalId":""}}`))
	p := Parser{Strings: intern.New(16, 8)}
	f.Fuzz(func(t *testing.T, in []byte) {
		compare(t, &p, in, Fallback{Now: fixedNow})
	})
}

// minCompared is how many records the logs hold at least: all of the
// shared corpus when present, else the repository's own file.
func minCompared(t *testing.T) int {
	if sharedPresent {
		return 3000
	}
	return 100
}
