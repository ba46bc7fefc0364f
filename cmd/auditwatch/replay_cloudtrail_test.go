package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"auditwatch/schema"
)

// labelledIDs reads the eventIDs of a labels file (Stratus labels.jsonl,
// invictus labels.derived.jsonl), optionally only those of one file.
func labelledIDs(t *testing.T, path, file string) map[string]bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l struct {
			File    string `json:"file"`
			EventID string `json:"eventID"`
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if file == "" || l.File == file {
			out[l.EventID] = true
		}
	}
	return out
}

func evidenceLabelled(f schema.Finding, ids map[string]bool) bool {
	for _, id := range f.EventIDs {
		if !ids[id] {
			return false
		}
	}
	return len(f.EventIDs) > 0
}

// TestReplayCloudTrailSamples replays the public CloudTrail samples. They
// are minutes of activity in accounts with no history, so the test config
// (testdata/replay-short-learning.yaml) shortens the learning periods to a
// minute. What we expect to catch, and nothing else:
//
//   - Stratus secretsmanager-batch-retrieve-secrets (5 BatchGetSecretValue by
//     filter in 1 s): access_volume_spike for christophe from 88.223.251.255,
//     opened at the third call (a filter call weighs 10 secrets; a principal
//     still learning alerts at 30) and updated at the fifth; 2 findings.
//   - Stratus ec2-download-user-data (15 UnauthorizedOperation by the
//     assumed role, 2 AccessDenied AssumeRole by christophe, in 7 s):
//     auth_failure_spike for the role: opened at 5 failures, updated at 10;
//     and the address burst of 255.18.64.253 (two identities fail from it,
//     so it names no single principal): 2 more.
//   - Stratus cloudtrail-delete (DeleteTrail) and cloudtrail-event-selectors
//     (PutEventSelectors): privileged_use (audit tampering), critical, 1 each.
//   - invictus-ir S3 delivery (55 objects): bert-jan's secret-retrieval burst
//     (Put/GetSecretValue on 20 Stratus secrets, KMS decrypts, SSM
//     parameters, BatchGetSecretValue) as access_volume_spike and
//     first_time_access; his CloudTrail tampering (DeleteTrail,
//     PutEventSelectors, StopLogging) as privileged_use; the
//     GetPasswordData and DescribeInstanceAttribute failure bursts of the
//     Stratus roles and his AccessDenied AssumeRole calls as
//     auth_failure_spike. Every finding's evidence is labelled Stratus
//     activity except exactly 2: unexpected_ip for bert-jan from 10.8.8.10
//     and 10.107.159.90, console calls (health, S3 Storage Lens) without the
//     Stratus marker from addresses the first minute did not show.
func TestReplayCloudTrailSamples(t *testing.T) {
	shared := sharedData(t)
	cfg := filepath.Join(findRoot(t), "cmd", "auditwatch", "testdata", "replay-short-learning.yaml")
	stratus := filepath.Join(shared, "cloudtrail", "json-array", "stratus-red-team")
	stratusLabels := filepath.Join(stratus, "labels.jsonl")

	type want struct {
		detector, principal, ip string
		min, max                int
	}
	cases := []struct {
		file  string
		wants []want
	}{
		{"aws.credential-access.secretsmanager-batch-retrieve-secrets.json", []want{
			{schema.DetectorAccessVolumeSpike, "arn:aws:iam::165109126369:user/christophe", "88.223.251.255", 2, 2}}},
		{"aws.discovery.ec2-download-user-data.json", []want{
			{schema.DetectorAuthFailureSpike, "arn:aws:iam::321848314756:role/stratus-red-team-get-usr-data-role", "255.18.64.253", 2, 2}}},
		{"aws.defense-evasion.cloudtrail-delete.json", []want{
			{schema.DetectorPrivilegedUse, "arn:aws:iam::847129010505:user/christophe", "8.1.250.216", 1, 1}}},
		{"aws.defense-evasion.cloudtrail-event-selectors.json", []want{
			{schema.DetectorPrivilegedUse, "arn:aws:iam::958312252124:user/christophe", "221.254.191.250", 1, 1}}},
	}
	for _, c := range cases {
		t.Run(strings.TrimSuffix(c.file, ".json"), func(t *testing.T) {
			fs, stderr, code := replay(t, context.Background(), "--config", cfg, filepath.Join(stratus, c.file))
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			ids := labelledIDs(t, stratusLabels, c.file)
			matched := 0
			for _, w := range c.wants {
				n := 0
				for _, f := range fs {
					if f.Detector == w.detector && f.Principal == w.principal && f.SourceIP == w.ip {
						n++
						if !evidenceLabelled(f, ids) {
							t.Errorf("finding evidence %v not all labelled events of %s", f.EventIDs, c.file)
						}
						if f.Detector == schema.DetectorPrivilegedUse && f.Severity != schema.SeverityCritical {
							t.Errorf("audit tampering severity %s, want critical", f.Severity)
						}
					}
				}
				if n < w.min || n > w.max {
					t.Errorf("%d %s findings for %s from %s, want %d..%d", n, w.detector, w.principal, w.ip, w.min, w.max)
				}
				matched += n
			}
			// Anything else: only the address key of the same burst.
			for _, f := range fs {
				if !evidenceLabelled(f, ids) {
					t.Errorf("unexpected finding on unlabelled evidence: %+v", f)
				}
			}
			if extra := len(fs) - matched; c.file == "aws.discovery.ec2-download-user-data.json" {
				for _, f := range fs {
					if f.Principal != c.wants[0].principal && (f.Attributes["key"] != "ip" || f.Principal != "" || f.SourceIP != "255.18.64.253") {
						t.Errorf("unexpected finding %s %s %s", f.Detector, f.Principal, f.SourceIP)
					}
				}
				if extra != 2 {
					t.Errorf("%d address-key findings, want 2", extra)
				}
			} else if extra != 0 {
				t.Errorf("%d unexpected findings", extra)
			}
		})
	}

	t.Run("invictus-s3-delivery", func(t *testing.T) {
		dir := filepath.Join(shared, "cloudtrail", "s3-delivery", "invictus-aws_dataset")
		objs, err := filepath.Glob(filepath.Join(dir, "*.json.gz"))
		if err != nil || len(objs) != 55 {
			t.Fatalf("%d S3 objects (%v), want 55", len(objs), err)
		}
		fs, stderr, code := replay(t, context.Background(), append([]string{"--config", cfg}, objs...)...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		ids := labelledIDs(t, filepath.Join(dir, "labels.derived.jsonl"), "")
		const bert = "arn:aws:iam::123837392027:user/bert-jan"
		has := func(det, principalSuffix string, action ...string) bool {
			for _, f := range fs {
				if f.Detector == det && strings.HasSuffix(f.Principal, principalSuffix) && evidenceLabelled(f, ids) &&
					(len(action) == 0 || slices.Contains(action, f.Attributes["action"])) {
					return true
				}
			}
			return false
		}
		checks := []struct {
			det, who string
			actions  []string
		}{
			// Reads of secret material, not the setup's writes: the
			// secrets the detonation creates and reads within seconds
			// are a rollout for first_time_access, but the bulk read is
			// a volume spike; its SSM parameter reads are first accesses.
			{schema.DetectorAccessVolumeSpike, bert, []string{"secretsmanager:GetSecretValue"}},
			{schema.DetectorFirstTimeAccess, bert, []string{"ssm:GetParameter", "ssm:GetParameters"}},
			{schema.DetectorPrivilegedUse, bert, []string{"cloudtrail:DeleteTrail"}},
			{schema.DetectorPrivilegedUse, bert, []string{"cloudtrail:PutEventSelectors"}},
			{schema.DetectorPrivilegedUse, bert, []string{"cloudtrail:StopLogging"}},
			{schema.DetectorAuthFailureSpike, "role/stratus-red-team-ec2-get-password-data-role", []string{"ec2:GetPasswordData"}},
			{schema.DetectorAuthFailureSpike, "role/stratus-red-team-get-usr-data-role", []string{"ec2:DescribeInstanceAttribute"}},
			{schema.DetectorAuthFailureSpike, bert, []string{"sts:AssumeRole"}},
		}
		for _, c := range checks {
			if !has(c.det, c.who, c.actions...) {
				t.Errorf("no %s finding for %s on %v with labelled evidence", c.det, c.who, c.actions)
			}
		}
		var unlabelled []schema.Finding
		for _, f := range fs {
			if !evidenceLabelled(f, ids) {
				// bounded evidence may mix in an unlabelled event of the same
				// burst; a finding counts as unlabelled when none is labelled
				any := false
				for _, id := range f.EventIDs {
					any = any || ids[id]
				}
				if !any {
					unlabelled = append(unlabelled, f)
				}
			}
		}
		if len(unlabelled) != 2 {
			t.Errorf("%d findings without labelled evidence, want 2", len(unlabelled))
		}
		for _, f := range unlabelled {
			if f.Detector != schema.DetectorUnexpectedIP || f.Principal != bert || (f.SourceIP != "10.8.8.10" && f.SourceIP != "10.107.159.90") {
				t.Errorf("unlabelled finding %s %s %s %s", f.Detector, f.Principal, f.SourceIP, f.Summary)
			}
		}
	})
}

// TestReplayPantherRootActivity: every record of the Panther root-activity
// rule tests made by the account's root user raises privileged_use
// (aws_root), and the others (an assumed role, an IAM user) do not. This
// alerts on more than Panther's rules do (they ignore some root calls such
// as ListAccessKeys): any root-account use is a finding outside a
// maintenance window.
func TestReplayPantherRootActivity(t *testing.T) {
	shared := sharedData(t)
	dir := filepath.Join(shared, "cloudtrail", "labelled", "panther-analysis")
	b, err := os.ReadFile(filepath.Join(dir, "panther-cloudtrail-rule-tests.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	tmp := t.TempDir()
	for _, i := range []int{65, 66, 213, 214, 215, 216, 217, 218, 219, 220, 221, 222} {
		var rec struct {
			UserIdentity struct {
				Type string `json:"type"`
			} `json:"userIdentity"`
			EventName string `json:"eventName"`
		}
		if err := json.Unmarshal([]byte(lines[i]), &rec); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		p := filepath.Join(tmp, fmt.Sprintf("case-%d.json", i))
		os.WriteFile(p, []byte(lines[i]+"\n"), 0o644)
		fs, stderr, code := replay(t, context.Background(), p)
		if code != 0 {
			t.Fatalf("line %d: exit %d: %s", i, code, stderr)
		}
		root := 0
		for _, f := range fs {
			if f.Detector == schema.DetectorPrivilegedUse && f.Attributes["kind"] == "aws_root" {
				root++
			}
		}
		if want := rec.UserIdentity.Type == "Root"; (root == 1) != want || root > 1 {
			t.Errorf("line %d (%s by %s): %d aws_root findings", i, rec.EventName, rec.UserIdentity.Type, root)
		}
	}
}
