package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"auditwatch/ingest"
	"auditwatch/internal/resname"
	"auditwatch/schema"
)

// TestReplayHoneytokenScenario replays the recorded OpenBao scenario with
// secret/infra/aws-root declared a decoy (deploy/vault shows how to plant
// one): every event on it, in the learning history and after, gives one
// critical honeytoken finding, and no other event does.
func TestReplayHoneytokenScenario(t *testing.T) {
	root := findRoot(t)
	log := filepath.Join(root, "testdata", "openbao-scenario", "audit.log")
	const decoy = "secret/infra/aws-root"
	want := map[string]bool{}
	err := ingest.OpenPaths([]string{log}, ingest.DefaultOptions(), func(_ string, r *ingest.Reader) error {
		for {
			ev, err := r.Next()
			if err != nil {
				if err == io.EOF {
					return nil
				}
				continue
			}
			if resname.Name(&ev) == decoy {
				want[ev.ID] = true
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(want) == 0 {
		t.Fatal("the scenario has no event on the decoy path")
	}
	cfg := filepath.Join(t.TempDir(), "detectors.yaml")
	os.WriteFile(cfg, []byte("detectors:\n  honeytoken:\n    vault_paths: [secret/data/infra/aws-root]\n"), 0o600)
	// learn_until after the whole log: every event is history, decoys still fire.
	for _, learnUntil := range []string{scenarioLearnUntil, "2030-01-01T00:00:00Z"} {
		fs, stderr, code := replay(t, context.Background(), "--config", cfg, "--learn-until", learnUntil, log)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		got := map[string]bool{}
		for _, f := range fs {
			if f.Detector != schema.DetectorHoneytoken {
				continue
			}
			if f.Severity != schema.SeverityCritical || !strings.Contains(f.Summary, "honeytoken") || f.Attributes["honeytoken"] == "" {
				t.Errorf("finding %+v", f)
			}
			got[f.EventIDs[0]] = true
		}
		if len(got) != len(want) {
			t.Fatalf("learn_until %s: %d honeytoken findings, want %d (one per event on %s)", learnUntil, len(got), len(want), decoy)
		}
		for id := range want {
			if !got[id] {
				t.Errorf("event %s on the decoy raised nothing", id)
			}
		}
	}
}
