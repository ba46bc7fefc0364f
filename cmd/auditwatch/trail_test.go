package main

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"auditwatch/trail/trailtest"
)

// TestTrailVerify runs `auditwatch trail verify` on each tampering of a
// signed trail, in a directory (keys offline: list-public-keys JSON, or
// PEM) and in a local S3 bucket (keys from a local ListPublicKeys): the
// untouched trail exits 0, each tampering exits 1 with exactly its
// failure line.
func TestTrailVerify(t *testing.T) {
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-secret")
	key, other := trailtest.NewKey(), trailtest.NewKey()
	base := time.Date(2026, 11, 3, 8, 0, 0, 0, time.UTC)
	for i, sc := range trailtest.Scenarios(other) {
		tr := trailtest.BuildScenario(key, base, sc)
		dir := t.TempDir()
		if err := tr.WriteDir(dir); err != nil {
			t.Fatal(err)
		}
		keys := filepath.Join(t.TempDir(), "keys")
		if i%2 == 0 {
			os.WriteFile(keys, tr.PublicKeysJSON(), 0o600)
		} else {
			der := x509.MarshalPKCS1PublicKey(&key.PublicKey)
			os.WriteFile(keys, pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: der}), 0o600)
		}
		s3srv := httptest.NewServer(tr.S3())
		ctsrv := httptest.NewServer(trailtest.CloudTrail([]*rsa.PublicKey{&key.PublicKey}, base.Add(-time.Hour), base.Add(24*time.Hour), nil, nil))
		for _, args := range [][]string{
			{"verify", "--public-keys", keys, dir},
			{"verify", "--region", "eu-west-1", "--endpoint", ctsrv.URL, "--s3-endpoint", s3srv.URL, "--path-style", "s3://" + tr.Bucket + "/AWSLogs"},
		} {
			var out, errb bytes.Buffer
			code := runTrail(context.Background(), args, nil, &out, &errb)
			want := 1
			if sc.Want == "" {
				want = 0
			}
			fails := 0
			for _, l := range strings.Split(out.String(), "\n") {
				if strings.HasPrefix(l, "FAIL") {
					fails++
					if !strings.Contains(l, "\t"+sc.Want+"\t") || !strings.Contains(l, "\t"+sc.Sev+"\t") {
						t.Errorf("%s %v: unexpected failure line %q", sc.Name, args[len(args)-1], l)
					}
				}
			}
			if code != want || (want == 1 && fails != 1) || (want == 0 && fails != 0) {
				t.Errorf("%s %v: exit %d (want %d), %d failure lines\n%s%s", sc.Name, args[len(args)-1], code, want, fails, out.String(), errb.String())
			}
			if !strings.Contains(out.String(), "summary: ") || !strings.Contains(out.String(), "digest\t") {
				t.Errorf("%s: no digest lines or summary:\n%s", sc.Name, out.String())
			}
		}
		s3srv.Close()
		ctsrv.Close()
	}
}

// TestTrailVerifyUsage: bad arguments exit 2 with a message.
func TestTrailVerifyUsage(t *testing.T) {
	for _, args := range [][]string{{}, {"verify"}, {"verify", "--start", "yesterday", "."}, {"verify", "--public-keys", "/nonexistent", "."}} {
		var out, errb bytes.Buffer
		if code := runTrail(context.Background(), args, nil, &out, &errb); code != 2 || errb.Len() == 0 {
			t.Errorf("%v: exit %d, stderr %q", args, code, errb.String())
		}
	}
}

// TestRunTrail runs `auditwatch run` with a directory source over a
// CloudTrail copy whose log file was edited and another deleted, keys
// from a file: the trail_integrity findings reach the findings file. The
// run carries known secrets (secretRun) that appear nowhere it writes.
func TestRunTrail(t *testing.T) {
	t.Parallel()
	sec := newSecretRun(t)
	httpAddr := freeAddr(t)
	key := trailtest.NewKey()
	tr := trailtest.New(key, time.Date(2026, 11, 3, 8, 0, 0, 0, time.UTC))
	tr.Build(3)
	tr.EditByte(tr.Logs[3])
	tr.Delete(tr.Logs[1])
	work := t.TempDir()
	drop := filepath.Join(work, "trail")
	if err := tr.WriteDir(drop); err != nil {
		t.Fatal(err)
	}
	keys := filepath.Join(work, "keys.json")
	os.WriteFile(keys, tr.PublicKeysJSON(), 0o600)
	findings := filepath.Join(work, "findings.jsonl")
	cfgPath := filepath.Join(work, "run.yaml")
	cfg := fmt.Sprintf(`sources:
  - name: trail-copy
    type: dir
    format: cloudtrail
    dir: {path: %q, poll_interval: 100ms, settle_time: 10ms}
trail: {public_keys_file: %q, listed_grace: 1s, check_interval: 100ms}
state: {dir: %q, checkpoint_interval: 200ms, idle_drain: 1s}
files: {findings: %q}
http: {listen: %q}
logging: {level: info, format: text}
shutdown_timeout: 10s
%s`, drop, keys, filepath.Join(work, "state"), findings, httpAddr, sec.AlertsYAML(""))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := sec.Start("run", "--config", cfgPath)
	fs := waitFindings(t, p, findings, 2, 2*time.Second, 60*time.Second)
	sec.WaitDeadLetters(work, 30*time.Second)
	sec.ScrapeMetrics(httpAddr)
	p.stop(t)
	sec.Grep(map[string]string{}, work, cfgPath)
	kinds := map[string]int{}
	for _, f := range fs {
		if f.Detector != "trail_integrity" || f.Severity != "critical" {
			t.Errorf("unexpected finding %s %s %s", f.Detector, f.Severity, f.Summary)
		}
		kinds[f.Attributes["kind"]]++
	}
	if kinds["log_modified"] != 1 || kinds["log_missing"] != 1 || len(fs) != 2 {
		t.Fatalf("findings %v, want one log_modified and one log_missing", kinds)
	}
}
