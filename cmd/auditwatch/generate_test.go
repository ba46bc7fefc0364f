package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, nil, &out, &errb)
	return code, out.String(), errb.String()
}

var genSmall = []string{"--events", "9000", "--machines", "24", "--humans", "10", "--duration", "6h"}

func TestGenerateMixed(t *testing.T) {
	dirs := []string{t.TempDir(), t.TempDir()}
	var vault, ct, labels [2][]byte
	for i, dir := range dirs {
		out := filepath.Join(dir, "out")
		lf := filepath.Join(out, "labels.jsonl") // inside the output directory, made by the command
		code, _, stderr := runCmd(t, append([]string{"generate", "--format", "mixed", "--seed", "5", "--out", out, "--labels", lf}, genSmall...)...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		if !strings.Contains(stderr, "9000 events") || !strings.Contains(stderr, "20 anomalies") {
			t.Fatalf("summary: %s", stderr)
		}
		var err error
		if vault[i], err = os.ReadFile(filepath.Join(out, "vault-audit.log")); err != nil {
			t.Fatal(err)
		}
		if ct[i], err = os.ReadFile(filepath.Join(out, "cloudtrail.jsonl")); err != nil {
			t.Fatal(err)
		}
		if labels[i], err = os.ReadFile(lf); err != nil {
			t.Fatal(err)
		}
	}
	nv, nc := bytes.Count(vault[0], []byte("\n")), bytes.Count(ct[0], []byte("\n"))
	if nv%2 != 0 || nv/2+nc != 9000 || nc == 0 || nv == 0 {
		t.Fatalf("%d vault lines and %d cloudtrail lines for 9000 requests", nv, nc)
	}
	if n := bytes.Count(labels[0], []byte("\n")); n != 20 {
		t.Fatalf("%d labels, want 20", n)
	}
	if !bytes.Equal(vault[0], vault[1]) || !bytes.Equal(ct[0], ct[1]) || !bytes.Equal(labels[0], labels[1]) {
		t.Fatal("the same flags gave different output")
	}
}

func TestGenerateStdoutAndS3(t *testing.T) {
	code, stdout, stderr := runCmd(t, append([]string{"generate", "--format", "vault", "--anomalies=false"}, genSmall...)...)
	if code != 0 || bytes.Count([]byte(stdout), []byte("\n")) != 18000 || !strings.Contains(stderr, "0 anomalies") {
		t.Fatalf("vault to stdout: exit %d, %d lines, %s", code, strings.Count(stdout, "\n"), stderr)
	}
	code, stdout, stderr = runCmd(t, append([]string{"generate", "--format", "mixed"}, genSmall...)...)
	nct := strings.Count(stdout, `"eventVersion"`)
	nv := strings.Count(stdout, `"type":"request"`)
	if code != 0 || nct == 0 || nv == 0 || nct+nv != 9000 || strings.Count(stdout, "\n") != nct+2*nv {
		t.Fatalf("mixed to stdout: exit %d, %d cloudtrail, %d vault requests, %s", code, nct, nv, stderr)
	}
	dir := t.TempDir()
	code, _, stderr = runCmd(t, append([]string{"generate", "--format", "cloudtrail", "--s3", "--out", dir}, genSmall...)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	objs, _ := filepath.Glob(filepath.Join(dir, "AWSLogs", "*", "CloudTrail", "*", "*", "*", "*", "*_CloudTrail_*.json.gz"))
	if len(objs) < 10 {
		t.Fatalf("%d S3 objects written", len(objs))
	}
}

func TestGenerateRateAppends(t *testing.T) {
	f := filepath.Join(t.TempDir(), "live.log")
	for i := 0; i < 2; i++ {
		code, _, stderr := runCmd(t, append([]string{"generate", "--format", "cloudtrail", "--rate", "60000", "--out", f}, genSmall...)...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
	}
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(b, []byte("\n")); n != 18000 {
		t.Fatalf("%d lines after two paced runs of 9000, want 18000 (appended)", n)
	}
}

func TestGenerateBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--format", "syslog"}, `--format "syslog"`},
		{[]string{"--format", "vault", "--s3", "--out", "x"}, "--s3 needs"},
		{[]string{"--format", "vault", "--start", "yesterday"}, `--start "yesterday"`},
		{[]string{"--format", "vault", "--events", "10"}, "generate.events"},
		{[]string{"--format", "vault", "extra"}, `unexpected argument "extra"`},
	} {
		code, _, stderr := runCmd(t, append([]string{"generate"}, tc.args...)...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("generate %v: exit %d, stderr %q, want exit 2 naming %q", tc.args, code, stderr, tc.want)
		}
	}
}
