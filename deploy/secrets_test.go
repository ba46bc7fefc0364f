package deploy

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// tokenPatterns match what real credentials look like.
var tokenPatterns = []struct {
	name string
	re   *regexp.Regexp
}{
	{"Slack token", regexp.MustCompile(`xox[abposr]-[A-Za-z0-9-]{8,}`)},
	{"Slack webhook URL", regexp.MustCompile(`hooks\.slack\.com/services/[A-Za-z0-9/]+`)},
	{"AWS access key id", regexp.MustCompile(`\b(?:AKIA|ASIA)[A-Z0-9]{16}\b`)},
	{"AWS secret access key", regexp.MustCompile(`(?i)aws_secret_access_key\s*[:=]\s*["']?[A-Za-z0-9/+]{40}`)},
	// Splunk HEC tokens are UUIDs; so are KMS key ids, which are not secret.
	{"HEC token", regexp.MustCompile(`(?i)(?:hec|splunk)[^\n]{0,40}?[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)},
	{"private key", regexp.MustCompile(`-----BEGIN [A-Z ]*PRIVATE KEY-----`)},
	{"password literal", regexp.MustCompile(`(?i)\bpassword\s*[:=]\s*["']?[^\s"'{$<./][^\s"']{5,}`)},
}

// placeholder reports whether a match is an obvious placeholder.
func placeholder(s string) bool {
	l := strings.ToLower(s)
	for _, p := range []string{"replace", "example", "changeme", "placeholder", "xxxx", "00000000-0000-0000-0000-000000000000", "__file", "from_env"} {
		if strings.Contains(l, p) {
			return true
		}
	}
	return false
}

// findTokens lists the credential-looking strings in text.
func findTokens(text string) []string {
	var out []string
	for _, p := range tokenPatterns {
		for _, m := range p.re.FindAllString(text, -1) {
			if !placeholder(m) {
				out = append(out, p.name+": "+m)
			}
		}
	}
	return out
}

// TestNoCommittedSecrets scans every file under deploy/ and dashboards/,
// and the Dockerfile.
func TestNoCommittedSecrets(t *testing.T) {
	root := repoRoot(t)
	n := 0
	scan := func(p string) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		n++
		rel, _ := filepath.Rel(root, p)
		for _, f := range findTokens(string(b)) {
			t.Errorf("%s: looks like a real credential (%s)", rel, f)
		}
	}
	for _, dir := range []string{"deploy", "dashboards"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(p string, d fs.DirEntry, err error) error {
			if os.IsNotExist(err) {
				return filepath.SkipDir
			}
			if err != nil || d.IsDir() {
				return err
			}
			scan(p)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	scan(filepath.Join(root, "Dockerfile"))
	if n < 20 {
		t.Fatalf("scanned only %d files", n)
	}
}

// TestFindTokens: the scan finds real-looking credentials and lets
// placeholders through. The samples are assembled at run time so this file
// does not itself hold one.
func TestFindTokens(t *testing.T) {
	j := func(parts ...string) string { return strings.Join(parts, "") }
	for _, s := range []string{
		j("token: xo", "xb-", "1234567890-0987654321-AbCdEfGhIjKlMnOp"),
		j("url: https://hooks.", "slack.com/services/", "T0001/B0001/abcdefabcdef"),
		j("id: AK", "IA", "Z7Q3J5M2N8P4R6T1"),
		j("hec", "_token: ", "9d3c1b5e-4f7a-4b2c-", "8e6d-1a2b3c4d5e6f"),
		j("-----BEGIN RSA ", "PRIVATE KEY-----"),
		j("password", ": s3cr3t-Value"),
	} {
		if len(findTokens(s)) == 0 {
			t.Errorf("not flagged: %q", s)
		}
	}
	for _, s := range []string{
		j("SLACK_BOT_TOKEN=xo", "xb-REPLACE-ME"),
		j("password: {env: KAFKA_PASSWORD}"),
		j("password: {file: /run/secrets/x}"),
		j("--from-file=password=./kafka-password"),
		j("password: ${AUDITWATCH_CLICKHOUSE_PASSWORD:?set}"),
		j("<password from_env=\"X\"/>"),
		j("key/00000000-0000-0000-0000-000000000000"),
		j("splunk_hec_token:\n    environment: SPLUNK_HEC_TOKEN"),
	} {
		if f := findTokens(s); len(f) > 0 {
			t.Errorf("placeholder flagged: %q: %v", s, f)
		}
	}
}
