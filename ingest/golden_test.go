package ingest

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// goldenInputs are representative inputs whose normalized output is
// pinned: "repo:" paths are in this repository, "shared:" ones in
// ../shared/testdata.
var goldenInputs = []string{
	"repo:ingest/testdata/cloudtrail-sample.jsonl",
	"repo:testdata/openbao-scenario/audit.log",
	"shared:cloudtrail/lookup-events/aws-cli/lookup-events-consolelogin.json",
	"shared:cloudtrail/eventbridge/cloud-custodian/event-cloudsearch.json",
	"shared:cloudtrail/ndjson/elastic-integrations/test-console-login-json.log",
	"shared:cloudtrail/ndjson/elastic-integrations/test-tls-details-json.log",
	"shared:cloudtrail/ndjson/elastic-integrations/test-user-authentication.log",
	"shared:cloudtrail/json-array/stratus-red-team/aws.credential-access.secretsmanager-batch-retrieve-secrets.json",
	"shared:cloudtrail/json-array/stratus-red-team/aws.discovery.ec2-download-user-data.json",
	"shared:cloudtrail/single-event/cloud-custodian/event-cloud-trail-run-instances.json",
	"shared:cloudtrail/s3-delivery/invictus-aws_dataset/218007301253_CloudTrail_us-east-1_20230710T1230Z_9SJSsrxJ0ChF5VFb.json.gz",
	"shared:vault/ndjson/elastic-integrations/test-audit.log",
	"shared:vault/ndjson/elastic-integrations/test-faked-all-fields.log",
	"shared:vault/ndjson/hashicorp-vault-issue-176/vault-0.1-audit.log",
	"shared:vault/pretty-single/datadog-integrations-core/vault-audit-request-pretty.json",
	"shared:vault/syslog/ibm-qradar-dsm-docs/vault-audit-request.syslog",
}

func TestGolden(t *testing.T) {
	root := repoRoot(t)
	for _, in := range goldenInputs {
		where, rel, _ := strings.Cut(in, ":")
		name := strings.NewReplacer("/", "__", ".", "_").Replace(rel) + ".jsonl"
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(root, rel)
			if where == "shared" {
				path = filepath.Join(sharedTestdata(t), rel)
			}
			res := readFile(t, path, testOptions())
			var got bytes.Buffer
			for _, ev := range res.events {
				got.Write(ev.AppendJSON(nil))
				got.WriteByte('\n')
			}
			for _, err := range res.errs {
				got.WriteString("error: " + strings.ReplaceAll(err.Error(), path, filepath.Base(path)) + "\n")
			}
			golden := filepath.Join(root, "ingest", "testdata", "golden", name)
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./ingest -run Golden -update)", err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				gl, wl := strings.Split(got.String(), "\n"), strings.Split(string(want), "\n")
				for i := 0; i < len(gl) && i < len(wl); i++ {
					if gl[i] != wl[i] {
						t.Fatalf("%s differs from %s at line %d:\n got %s\nwant %s", rel, golden, i+1, gl[i], wl[i])
					}
				}
				t.Fatalf("%s: %d lines, golden has %d", rel, len(gl), len(wl))
			}
		})
	}
}
