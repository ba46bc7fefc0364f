package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// check-config says where each secret comes from and whether it is set,
// never any part of the value.
func TestCheckConfigPrintsSecretSourcesNotValues(t *testing.T) {
	root := filepath.Join("..", "..")
	const tok = "xoxb-111111-222222-checkconfigsecret"
	t.Setenv("SLACK_BOT_TOKEN", tok)
	dir := t.TempDir()
	hec := filepath.Join(dir, "hec")
	os.WriteFile(hec, []byte("hec-file-secret-value-0123\n"), 0o600)
	b, err := os.ReadFile(filepath.Join(root, "deploy", "alerts.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.ReplaceAll(string(b), "/run/secrets/splunk-hec-token", hec)
	path := filepath.Join(dir, "alerts.yaml")
	os.WriteFile(path, []byte(cfg), 0o600)
	var out, errOut bytes.Buffer
	if code := checkConfig(context.Background(), []string{path}, nil, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s%s", code, out.String(), errOut.String())
	}
	s := out.String()
	for _, want := range []string{"slack.token: set (from env SLACK_BOT_TOKEN)", "hec.token: set (from file " + hec + ")", "webhook_url: NOT SET"} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	for _, v := range []string{tok, "xoxb", "hec-file-secret", "0123"} {
		if strings.Contains(s+errOut.String(), v) {
			t.Errorf("output holds %q:\n%s", v, s)
		}
	}
}

// The sections other packages decode (identity:, canary:) have their
// secrets described too: the canary's heartbeat URL and Vault token, the
// audit-hash token.
func TestCheckConfigDescribesCanaryAndIdentitySecrets(t *testing.T) {
	const hook = "https://hc.example.com/ping/hb-checkconfig-secret-77"
	t.Setenv("AW_CC_HEARTBEAT", hook)
	dir := t.TempDir()
	path := filepath.Join(dir, "run.yaml")
	os.WriteFile(path, []byte(`sources:
  - {name: v, type: filetail, filetail: {path: /var/log/vault/audit.log}}
identity:
  audit_hash: {address: "http://127.0.0.1:8200", device: file, token: {env: AW_CC_AUDIT_HASH}}
canary:
  heartbeat_url: {env: AW_CC_HEARTBEAT}
  vault: {address: "http://127.0.0.1:8200", token: {file: `+filepath.Join(dir, "missing")+`}}
`), 0o600)
	var out, errOut bytes.Buffer
	if code := checkConfig(context.Background(), []string{path}, nil, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s%s", code, out.String(), errOut.String())
	}
	s := out.String()
	for _, want := range []string{"identity.audit_hash.token: NOT SET (env AW_CC_AUDIT_HASH", "canary.heartbeat_url: set (from env AW_CC_HEARTBEAT)",
		"canary.vault.token: NOT SET (file " + filepath.Join(dir, "missing")} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s+errOut.String(), "hb-checkconfig-secret") {
		t.Errorf("output holds the heartbeat URL:\n%s", s)
	}
}

// A credential written in the file by mistake, or a URL carrying one, is
// reported with its line and never echoed, not even its first characters.
func TestCheckConfigNeverQuotesInlineSecrets(t *testing.T) {
	dir := t.TempDir()
	tests := []struct{ cfg, want string }{
		{`alerts:
  outputs:
    - name: s
      type: slack
      slack:
        mode: bot
        token: xoxb-INLINE-1111111111
        channel: "#a"
`, ":7: alerts.outputs[0].slack.token: cannot unmarshal !!str into a secret"},
		{`alerts:
  outputs:
    - name: w
      type: webhook
      webhook:
        url: "ftp://user:URLPASSWORD@example.com/hook?token=URLQUERYTOKEN"
`, ":6: alerts.outputs[0].webhook.url: must be an http(s) URL"},
	}
	for i, tt := range tests {
		path := filepath.Join(dir, fmt.Sprintf("inline%d.yaml", i))
		os.WriteFile(path, []byte(tt.cfg), 0o600)
		var out, errOut bytes.Buffer
		if code := checkConfig(context.Background(), []string{path}, nil, &out, &errOut); code != 1 {
			t.Fatalf("exit %d, want 1: %s%s", code, out.String(), errOut.String())
		}
		s := out.String() + errOut.String()
		if !strings.Contains(s, path+tt.want) {
			t.Errorf("output lacks %q:\n%s", path+tt.want, s)
		}
		for _, v := range []string{"xoxb", "INLINE", "URLPASSWORD", "URLQUERYTOKEN"} {
			if strings.Contains(s, v) {
				t.Errorf("output holds %q:\n%s", v, s)
			}
		}
	}
}
