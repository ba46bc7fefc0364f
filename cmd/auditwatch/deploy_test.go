package main

import (
	"path/filepath"
	"testing"

	"auditwatch/internal/configcheck"
)

// TestDeployExamples: the shipped configs load through the one path every
// command uses (configcheck.Load: strict decoding, defaults and validation
// of every section, storage included).
func TestDeployExamples(t *testing.T) {
	t.Setenv("AUDITWATCH_KAFKA_PASSWORD", "x")
	t.Setenv("AUDITWATCH_SLACK_TOKEN", "x")
	t.Setenv("AUDITWATCH_CLICKHOUSE_PASSWORD", "x")
	root := findRoot(t)
	// paths in the shipped configs (rules: paths) are relative to the
	// repository root, where make demo runs
	t.Chdir(root)
	for _, name := range []string{"run.example.yaml", "kafka.example.yaml", "quickstart.yaml"} {
		t.Run(name, func(t *testing.T) {
			l, err := configcheck.Load(filepath.Join(root, "deploy", name))
			if err != nil {
				t.Fatal(err)
			}
			if l.Config == nil || l.ShutdownTimeout <= 0 {
				t.Fatalf("%s: root section not loaded: %+v", name, l.Config)
			}
		})
	}
}
