package alert

import (
	"auditwatch/internal/testenv"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func repoRoot(t *testing.T) string { return testenv.RepoRoot(t) }

func TestExampleConfig(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "alerts.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseYAML(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("the example config does not validate: %v", err)
	}
	if len(cfg.Outputs) != 4 || cfg.Outputs[2].HEC == nil || !cfg.Outputs[2].HEC.Ack || cfg.Outputs[3].Syslog.TLS == nil {
		t.Errorf("outputs decoded wrongly: %+v", cfg.Outputs)
	}
	if cfg.Outputs[2].HEC.BatchSize != 200 || cfg.Outputs[3].Syslog.MaxMessageBytes != 8192 || cfg.Outputs[0].Slack.MinInterval.D() != time.Second {
		t.Errorf("defaults or values wrong: hec batch %d, syslog max %d, slack interval %s",
			cfg.Outputs[2].HEC.BatchSize, cfg.Outputs[3].Syslog.MaxMessageBytes, cfg.Outputs[0].Slack.MinInterval)
	}
	if len(cfg.Routes) != 3 || cfg.Routes[0].Match.Principals[0] != "arn:aws:iam::*:role/break-glass*" || !cfg.Routes[0].Continue {
		t.Errorf("routes decoded wrongly: %+v", cfg.Routes)
	}
	if s := cfg.Silences[0]; s.Reason == "" || !s.Until.Equal(time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("silence decoded wrongly: %+v", s)
	}
	if cfg.Retry.MaxAttempts != 12 || cfg.GroupWindow.D() != time.Hour {
		t.Errorf("retry/group window: %+v %s", cfg.Retry, cfg.GroupWindow)
	}
}

func TestParseYAMLStrictAndDefaults(t *testing.T) {
	cfg, err := ParseYAML([]byte("sources: {anything: 1}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.GroupWindow.D() != time.Hour || cfg.Retry.MaxAttempts == 0 || cfg.MaxFieldBytes != 2048 {
		t.Errorf("defaults not applied without an alerts section: %+v", cfg)
	}
	_, err = ParseYAML([]byte("alerts:\n  group_window: 5m\n  outputs:\n    - name: s\n      type: slack\n      slack:\n        chanel: '#x'\n"))
	if err == nil || !strings.Contains(err.Error(), "line 7") || !strings.Contains(err.Error(), "chanel") {
		t.Errorf("unknown nested key: %v, want an error naming line 7 and the key", err)
	}
	_, err = ParseYAML([]byte("alerts:\n  retry: {initial: soon}\n"))
	if err == nil {
		t.Error("a bad duration decoded")
	}
}

func TestValidateNamesEveryField(t *testing.T) {
	yaml := `
alerts:
  max_field_bytes: 10
  retry: {initial: 1s, max: 100ms, multiplier: 0.5, jitter: 2, max_attempts: 3, attempt_timeout: 1s}
  outputs:
    - name: dup
      type: slack
      min_severity: urgent
      slack: {mode: bot}
    - name: dup
      type: hec
      hec: {url: "not a url"}
    - name: sys
      type: syslog
      syslog: {address: "no-port", format: xml}
    - name: k
      type: kafka
      kafka: {}
    - name: what
      type: pager
  routes:
    - detectors: [made_up]
      outputs: [nowhere]
    - outputs: []
  event_outputs: [dup, ghost, k]
  silences:
    - principals: ["*"]
`
	cfg, err := ParseYAML([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	err = cfg.Validate()
	if err == nil {
		t.Fatal("Validate accepted a bad config")
	}
	for _, want := range []string{
		"alerts.max_field_bytes", "alerts.retry.max", "alerts.retry.multiplier", "alerts.retry.jitter",
		"alerts.dead_letter.path",
		"alerts.outputs[0].min_severity", "alerts.outputs[0].slack.token", "alerts.outputs[0].slack.channel",
		"alerts.outputs[1].name: duplicate", "alerts.outputs[1].hec.url", "alerts.outputs[1].hec.token",
		"alerts.outputs[2].syslog.address", "alerts.outputs[2].syslog.format",
		"alerts.outputs[3].kafka.brokers", "alerts.outputs[3].kafka.topic",
		"alerts.outputs[4].type", "alerts.routes[0].detectors[0]", "alerts.routes[0].outputs[0]: unknown output \"nowhere\"",
		"alerts.routes[1].outputs: required", "alerts.event_outputs[0]", "alerts.event_outputs[1]: unknown output \"ghost\"", "alerts.event_outputs[2]: kafka output \"k\" has no events_topic",
		"alerts.silences[0].until", "alerts.silences[0].reason",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate error lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("error was:\n%v", err)
	}
}

func TestGlob(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"*", "", true},
		{"*", "arn:aws:iam::1:role/a/b", true},
		{"arn:aws:iam::*:role/admin*", "arn:aws:iam::123:role/admin-ops", true},
		{"arn:aws:iam::*:role/admin*", "arn:aws:iam::123:role/ops-admin", false},
		{"secret/data/prod/*", "secret/data/prod/db/password", true},
		{"secret/data/prod/*", "secret/data/production", false},
		{"10.0.0.?", "10.0.0.7", true},
		{"10.0.0.?", "10.0.0.77", false},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "axxbyy", false},
		{"exact", "exact", true},
		{"exact", "exactly", false},
	}
	for _, tt := range tests {
		if got := glob(tt.pattern, tt.s); got != tt.want {
			t.Errorf("glob(%q, %q) = %v, want %v", tt.pattern, tt.s, got, tt.want)
		}
	}
	// Hostile input stays linear: this would take ages with backtracking.
	long := strings.Repeat("a", 20000)
	if glob(strings.Repeat("*a", 30)+"b", long) {
		t.Error("matched")
	}
}

func TestFromNode(t *testing.T) {
	var root struct {
		Alerts yaml.Node `yaml:"alerts"`
	}
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "alerts.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &root); err != nil {
		t.Fatal(err)
	}
	cfg, err := FromNode(&root.Alerts)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil || len(cfg.Outputs) != 4 {
		t.Fatalf("FromNode: %d outputs, %v", len(cfg.Outputs), err)
	}
	if err := yaml.Unmarshal([]byte("alerts:\n  group_window: 1m\n  bogus: 1\n"), &root); err != nil {
		t.Fatal(err)
	}
	if _, err := FromNode(&root.Alerts); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Errorf("unknown key through FromNode: %v", err)
	}
	if cfg, err := FromNode(&yaml.Node{}); err != nil || cfg.GroupWindow.D() != time.Hour {
		t.Errorf("empty node: %v", err)
	}
}
