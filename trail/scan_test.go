package trail_test

import (
	"context"
	"crypto/rsa"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/cloudtrail"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.yaml.in/yaml/v3"

	"auditwatch/schema"
	"auditwatch/trail"
	"auditwatch/trail/trailtest"
)

var base = time.Date(2026, 11, 3, 8, 0, 0, 0, time.UTC)

// signer is made once: RSA key generation is slow.
var (
	keyOnce        sync.Once
	realKey, rogue *rsa.PrivateKey
)

func keys() (*rsa.PrivateKey, *rsa.PrivateKey) {
	keyOnce.Do(func() { realKey, rogue = trailtest.NewKey(), trailtest.NewKey() })
	return realKey, rogue
}

type scenario = trailtest.Scenario

func scenarios() []scenario {
	_, other := keys()
	return trailtest.Scenarios(other)
}

func build(sc scenario) *trailtest.Trail {
	k, _ := keys()
	return trailtest.BuildScenario(k, base, sc)
}

// incidents groups findings by dedupe key: kind -> incidents.
func incidents(fs []schema.Finding) map[string]int {
	seen := map[string]bool{}
	out := map[string]int{}
	for _, f := range fs {
		if seen[f.DedupeKey] {
			continue
		}
		seen[f.DedupeKey] = true
		out[f.Attributes["kind"]]++
	}
	return out
}

func checkExactly(t *testing.T, sc scenario, fs []schema.Finding) {
	t.Helper()
	got := incidents(fs)
	want := map[string]int{}
	if sc.Want != "" {
		want[sc.Want] = 1
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s: incidents %v, want %v; findings:\n%s", sc.Name, got, want, dump(fs))
	}
	for _, f := range fs {
		if f.Detector != trail.Detector || f.ID == "" || f.DedupeKey == "" {
			t.Fatalf("finding without detector or ids: %+v", f)
		}
		if f.Revision == 0 && string(f.Severity) != sc.Sev {
			t.Fatalf("%s: severity %s, want %s", sc.Name, f.Severity, sc.Sev)
		}
	}
}

func dump(fs []schema.Finding) string {
	var b strings.Builder
	for _, f := range fs {
		fmt.Fprintf(&b, "  %s rev %d %s %s: %s (%s)\n", f.Attributes["kind"], f.Revision, f.Severity, f.Resource, f.Summary, f.Reason)
	}
	return b.String()
}

func testAWS(t *testing.T) {
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
}

// apiKeys is a KeySource on a local CloudTrail endpoint serving pubs.
func apiKeys(t *testing.T, pubs ...*rsa.PublicKey) (*trail.APIKeys, func() int) {
	t.Helper()
	var calls int
	var mu sync.Mutex
	srv := httptest.NewServer(trailtest.CloudTrail(pubs, base.Add(-48*time.Hour), base.Add(48*time.Hour), &calls, &mu))
	t.Cleanup(srv.Close)
	ct := cloudtrail.New(cloudtrail.Options{Region: "eu-west-1", BaseEndpoint: aws.String(srv.URL),
		Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "not-a-real-secret", "")})
	return &trail.APIKeys{API: ct}, func() int { mu.Lock(); defer mu.Unlock(); return calls }
}

func s3Client(url string) *s3.Client {
	return s3.New(s3.Options{Region: "eu-west-1", BaseEndpoint: aws.String(url), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "not-a-real-secret", "")})
}

// TestScanDirectory checks a trail copied to a directory (signatures from
// the next digest, the newest from its .sig file) with keys from the
// local ListPublicKeys endpoint: each tampering gives exactly its finding.
func TestScanDirectory(t *testing.T) {
	testAWS(t)
	k, _ := keys()
	for _, sc := range scenarios() {
		t.Run(sc.Name, func(t *testing.T) {
			tr := build(sc)
			root := t.TempDir()
			if err := tr.WriteDir(root); err != nil {
				t.Fatal(err)
			}
			ks, calls := apiKeys(t, &k.PublicKey)
			v := trail.NewVerifier(trail.Config{}, ks, nil)
			v.Report = true
			stats, err := trail.Scan(context.Background(), trail.DirStore{Root: root}, v, time.Time{}, time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			checkExactly(t, sc, v.Take())
			if stats.Digests == 0 || stats.LogFiles == 0 {
				t.Fatalf("read nothing: %+v", stats)
			}
			if calls() != 1 {
				t.Fatalf("ListPublicKeys called %d times, want 1 (cached)", calls())
			}
			if sc.Want == "" {
				for _, st := range v.Statuses() {
					if st.Signature != "valid" || len(st.Problems) > 0 {
						t.Fatalf("untouched digest %s: %s %v", st.ID, st.Signature, st.Problems)
					}
				}
			}
		})
	}
}

// TestScanS3 checks the same trails in a local S3 bucket (signatures from
// object metadata), with keys read offline from list-public-keys JSON.
func TestScanS3(t *testing.T) {
	for _, sc := range scenarios() {
		t.Run(sc.Name, func(t *testing.T) {
			tr := build(sc)
			srv := httptest.NewServer(tr.S3())
			defer srv.Close()
			ks, err := trail.ParseKeysFile(tr.PublicKeysJSON())
			if err != nil {
				t.Fatal(err)
			}
			v := trail.NewVerifier(trail.Config{}, ks, nil)
			if _, err := trail.Scan(context.Background(), trail.S3Store{API: s3Client(srv.URL), Bucket: tr.Bucket, Prefix: "AWSLogs/"}, v, time.Time{}, time.Time{}); err != nil {
				t.Fatal(err)
			}
			checkExactly(t, sc, v.Take())
		})
	}
}

// TestStartingDigest: a digest with null previous fields starts a new
// chain; it is reported with the StartLogging call that explains it, or
// as unexplained (high) when none does.
func TestStartingDigest(t *testing.T) {
	k, _ := keys()
	for _, explained := range []bool{true, false} {
		tr := trailtest.New(k, base)
		tr.Build(2)
		restart := base.Add(4 * time.Hour)
		tr.AddLog(restart.Add(5*time.Minute), 2, explained)
		tr.AddDigest(restart, restart.Add(time.Hour), true)
		root := t.TempDir()
		if err := tr.WriteDir(root); err != nil {
			t.Fatal(err)
		}
		v := trail.NewVerifier(trail.Config{}, trail.StaticKeys{{Fingerprint: tr.Fingerprint, Key: &k.PublicKey}}, nil)
		if _, err := trail.Scan(context.Background(), trail.DirStore{Root: root}, v, time.Time{}, time.Time{}); err != nil {
			t.Fatal(err)
		}
		fs := v.Take()
		if len(fs) != 1 || fs[0].Attributes["kind"] != trail.KindChainStart {
			t.Fatalf("explained=%v: %s", explained, dump(fs))
		}
		wantSev, wantStatus := schema.SeverityHigh, "unexplained"
		if explained {
			wantSev, wantStatus = schema.SeverityInfo, "explained"
		}
		if fs[0].Severity != wantSev || fs[0].Attributes["status"] != wantStatus {
			t.Fatalf("explained=%v: %s", explained, dump(fs))
		}
		if explained && !strings.Contains(fs[0].Summary, "cloudtrail:StartLogging") {
			t.Fatalf("summary does not name the call: %s", fs[0].Summary)
		}
	}
}

func TestNameTime(t *testing.T) {
	for name, want := range map[string]string{
		"AWSLogs/1/CloudTrail/eu-west-1/2026/11/03/1_CloudTrail_eu-west-1_20261103T0810Z_Ab.json.gz":                          "2026-11-03T08:10:00Z",
		"AWSLogs/1/CloudTrail-Digest/eu-west-1/2026/11/03/1_CloudTrail-Digest_eu-west-1_t_eu-west-1_20261103T090000Z.json.gz": "2026-11-03T09:00:00Z",
		"x/1_CloudTrail-Digest_eu-west-1_my_trail_2_eu-west-1_20261103T090000Z_backfill.json.gz":                              "2026-11-03T09:00:00Z",
	} {
		got, ok := trail.NameTime(name)
		if !ok || got.Format(time.RFC3339) != want {
			t.Errorf("NameTime(%s) = %v %v, want %s", name, got, ok, want)
		}
	}
	if !trail.IsBackfill("a_20261103T090000Z_backfill.json.gz") || trail.IsBackfill("a_20261103T090000Z.json.gz") {
		t.Error("IsBackfill")
	}
}

func TestDecodeConfig(t *testing.T) {
	var n yaml.Node
	if err := yaml.Unmarshal([]byte("listed_grace: -1m\nmax_tracked: -2\naws: {region: eu-west-1, endpoint: nope}\n"), &n); err != nil {
		t.Fatal(err)
	}
	_, err := trail.DecodeConfig(n.Content[0])
	for _, want := range []string{"listed_grace: must be positive", "max_tracked: must be positive", "aws.endpoint"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want %q", err, want)
		}
	}
	c, err := trail.DecodeConfig(&yaml.Node{})
	if err != nil || c.GapAfter.D() != 2*time.Hour || c.UnlistedAfter.D() != 2*time.Hour || !*c.Enabled {
		t.Fatalf("defaults: %+v %v", c, err)
	}
}
