package main

import (
	"path/filepath"
	"testing"

	"auditwatch/alert"
	"auditwatch/config"
	"auditwatch/detect"
	"auditwatch/store"
)

// TestDeployExamples: the example configs decode strictly, every section
// included, and validate.
func TestDeployExamples(t *testing.T) {
	t.Setenv("AUDITWATCH_KAFKA_PASSWORD", "x")
	t.Setenv("AUDITWATCH_SLACK_TOKEN", "x")
	t.Setenv("AUDITWATCH_CLICKHOUSE_PASSWORD", "x")
	root := findRoot(t)
	for _, name := range []string{"run.example.yaml", "kafka.example.yaml"} {
		t.Run(name, func(t *testing.T) {
			c, err := config.Load(filepath.Join(root, "deploy", name))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := detect.DecodeConfig(&c.Detectors); err != nil {
				t.Errorf("detectors: %v", err)
			}
			if c.Alerts.Kind != 0 {
				a, err := alert.FromNode(&c.Alerts)
				if err == nil {
					a.DeadLetter.Path = "dead-letter.jsonl"
					err = a.Validate()
				}
				if err != nil {
					t.Errorf("alerts: %v", err)
				}
			}
			if c.Storage.Kind != 0 {
				if _, err := store.DecodeConfig(&c.Storage); err != nil {
					t.Errorf("storage: %v", err)
				}
			}
		})
	}
}
