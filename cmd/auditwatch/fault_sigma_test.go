package main

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"auditwatch/schema"
)

// TestRunCorrelationsSurviveSIGKILL: `auditwatch run` with correlation
// rules (value_count, temporal_ordered, event_count, whose windows are
// open at every moment of the generated stream) tails a file being
// appended to and is SIGKILLed at random points 8 times. The Sigma
// findings written must be exactly those of an uninterrupted replay of
// the same stream: none lost, none written twice. The run's secrets appear
// nowhere (faultRun.GrepSecrets).
func TestRunCorrelationsSurviveSIGKILL(t *testing.T) {
	t.Parallel()
	f := newFaultRun(t, faultStream{Seed: 11, Events: 15000, Machines: 24, Humans: 10, Duration: "6h"})
	rules, err := filepath.Abs("testdata/rules-correlation")
	if err != nil {
		t.Fatal(err)
	}
	f.WriteConfig(faultConfig{
		State: "checkpoint_interval: 150ms, checkpoint_events: 1000, idle_drain: 4s",
		Extra: fmt.Sprintf("rules: {paths: [%q]}", rules),
	})
	sigmaOnly := func(fs []schema.Finding) []schema.Finding {
		var out []schema.Finding
		for _, fd := range fs {
			if fd.Detector == schema.DetectorSigma {
				out = append(out, fd)
			}
		}
		return out
	}
	want := sigmaOnly(f.Replay())
	corr := 0
	for _, fd := range want {
		if fd.Attributes["correlation"] != "" {
			corr++
		}
	}
	if corr < 100 {
		t.Fatalf("the reference replay raised %d correlation findings: too few to test", corr)
	}

	got, kills := f.KilledRun(200, 8, 200*time.Millisecond, 1000*time.Millisecond, 40*time.Second, 3*time.Second, len(want), sigmaOnly)
	t.Logf("%d kills; %d Sigma findings (replay %d, %d of them correlations)", kills, len(got), len(want), corr)
	assertSameFindings(t, got, want)
}
