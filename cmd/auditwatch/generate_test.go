package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"auditwatch/gen"
	"auditwatch/schema"
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

// TestGeneratedAnomaliesReplay runs replay over generated traffic with
// --learn-until at the end of the learning period: no finding is raised
// that a label does not explain (normal traffic stays quiet), and every
// label is found by its detector or by one it also matches.
func TestGeneratedAnomaliesReplay(t *testing.T) {
	dir := t.TempDir()
	lf := filepath.Join(dir, "labels.jsonl")
	data := filepath.Join(dir, "mixed.log")
	f, err := os.Create(data)
	if err != nil {
		t.Fatal(err)
	}
	var errb bytes.Buffer
	code := run([]string{"generate", "--format", "mixed", "--seed", "4", "--events", "40000", "--labels", lf}, nil, f, &errb)
	f.Close()
	if code != 0 {
		t.Fatalf("generate: exit %d: %s", code, errb.String())
	}
	m := regexp.MustCompile(`learning period ends (\S+)`).FindStringSubmatch(errb.String())
	if m == nil {
		t.Fatalf("generate summary names no learning end: %s", errb.String())
	}
	code, stdout, stderr := runCmd(t, "replay", "--learn-until", m[1], data)
	if code != 0 {
		t.Fatalf("replay: exit %d: %s", code, stderr)
	}
	lb, err := os.ReadFile(lf)
	if err != nil {
		t.Fatal(err)
	}
	labels, err := gen.ReadLabels(bytes.NewReader(lb))
	if err != nil {
		t.Fatal(err)
	}
	byEvent := map[string]int{}
	for i, l := range labels {
		for _, id := range l.EventIDs {
			byEvent[id] = i
		}
	}
	found := make([]map[string]bool, len(labels))
	for i := range found {
		found[i] = map[string]bool{}
	}
	findings := 0
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		if line == "" {
			continue
		}
		var f schema.Finding
		if err := json.Unmarshal([]byte(line), &f); err != nil {
			t.Fatalf("finding %q: %v", line, err)
		}
		findings++
		explained := false
		for _, id := range f.EventIDs {
			if i, ok := byEvent[id]; ok {
				found[i][f.Detector] = true
				explained = true
			}
		}
		if !explained {
			t.Errorf("finding on normal traffic: %s %s %s %s: %s", f.Detector, f.Principal, f.SourceIP, f.Resource, f.Summary)
		}
	}
	for i, l := range labels {
		ok := found[i][l.Detector]
		for _, d := range l.AlsoMatches {
			ok = ok || found[i][d]
		}
		if !ok {
			t.Errorf("%s (%s %s, %s) not found by any detector", l.ID, l.Source, l.Kind, l.Detector)
		} else if !found[i][l.Detector] {
			t.Logf("%s (%s %s) found only by %v, not by %s", l.ID, l.Source, l.Kind, found[i], l.Detector)
		}
	}
	t.Logf("%d labels, %d findings", len(labels), findings)
}
