package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"testing"
	"time"

	"auditwatch/gen"
	"auditwatch/ingest"
)

// TestRunSurvivesSIGKILL appends a generated stream with labelled
// anomalies to a file that `auditwatch run` tails, SIGKILLs the process at
// random points 12 times (restarting it each time), then lets it finish.
// Every input event must have reached the detectors (the events file), every
// finding must be written exactly once, the findings must be exactly those
// of an uninterrupted replay of the same stream (so each anomaly raised
// exactly its findings, none lost, none repeated), and every label must be
// found. The run's secrets appear nowhere (faultRun.GrepSecrets).
func TestRunSurvivesSIGKILL(t *testing.T) {
	t.Parallel()
	f := newFaultRun(t, faultStream{Seed: 11, Events: 15000, Machines: 24, Humans: 10, Duration: "6h", Labels: true})
	if f.LearnUntil == "" {
		t.Fatal("generate names no learning end")
	}
	f.WriteConfig(faultConfig{
		State:  "checkpoint_interval: 150ms, checkpoint_events: 2000, idle_drain: 4s",
		Events: true,
		Extra:  "detectors:\n  learn_until: " + f.LearnUntil,
	})
	// The reference: one uninterrupted replay of the whole stream.
	want := f.Replay()
	if len(want) == 0 {
		t.Fatal("replay raised no findings")
	}

	// Append the stream in random-sized chunks (cutting lines anywhere)
	// over about 15 s while the pipeline is killed and restarted.
	// Then let it catch up and drain, and stop it cleanly.
	got, kills := f.KilledRun(300, 12, 200*time.Millisecond, 1300*time.Millisecond, 40*time.Second, 5*time.Second, len(want), nil)
	t.Logf("%d kills; %d findings (replay %d); input %d bytes", kills, len(got), len(want), len(f.Raw))

	// No finding written twice; exactly the replay's findings.
	assertSameFindings(t, got, want)

	// Every label found by its detector (or one it also matches).
	lb, err := os.ReadFile(f.Labels)
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
	for _, fd := range got {
		for _, id := range fd.EventIDs {
			if i, ok := byEvent[id]; ok {
				found[i][fd.Detector] = true
			}
		}
	}
	for i, l := range labels {
		ok := found[i][l.Detector]
		for _, d := range l.AlsoMatches {
			ok = ok || found[i][d]
		}
		if !ok {
			t.Errorf("label %s (%s %s) not found", l.ID, l.Kind, l.Detector)
		}
	}

	// Every input event reached the detectors at least once.
	seen := map[string]bool{}
	ef, err := os.Open(f.Events)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	sc := bufio.NewScanner(ef)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var v struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(sc.Bytes(), &v) == nil {
			seen[v.ID] = true
		}
	}
	r := ingest.NewReader(bytes.NewReader(f.Raw), f.Data, ingest.DefaultOptions())
	total, missing := 0, 0
	for {
		ev, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			continue
		}
		total++
		if !seen[ev.ID] {
			missing++
			if missing <= 5 {
				t.Errorf("event %s (%s) never reached the detectors", ev.ID, ev.Time.Format(time.RFC3339))
			}
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d events never reached the detectors", missing, total)
	}
	if total < 15000 {
		t.Errorf("only %d events parsed from the input", total)
	}
}
