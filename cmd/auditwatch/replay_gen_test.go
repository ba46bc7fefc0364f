package main

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"auditwatch/gen"
	"auditwatch/schema"
)

// genLabelFound reports whether f is label l: its detector, principal
// (none required for an address-keyed brute force), address, and evidence
// or time inside the anomaly.
func genLabelFound(l gen.Label, f schema.Finding, det string) bool {
	if f.Detector != det || f.SourceIP != l.SourceIP {
		return false
	}
	if l.Key != "source_ip" && f.Principal != l.Principal {
		return false
	}
	for _, id := range f.EventIDs {
		if slices.Contains(l.EventIDs, id) {
			return true
		}
	}
	return !f.Time.Before(l.Time) && !f.Time.After(l.EndTime)
}

// TestReplayGeneratedAnomalies replays generated traffic (CloudTrail and
// Vault interleaved, 20 labelled anomalies of every kind) with the
// generator's learning period as history: every label is found by its
// detector with its principal and address, and no finding is unexplained.
func TestReplayGeneratedAnomalies(t *testing.T) {
	g, err := gen.New(gen.Config{Seed: 7, Events: 60_000, Anomalies: true}.Defaults())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "mixed.log")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	var buf []byte
	for {
		var ok bool
		if buf, _, ok = g.Next(buf[:0]); !ok {
			break
		}
		w.Write(buf)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	labels := g.Labels()
	if len(labels) == 0 {
		t.Fatal("generator made no labels")
	}
	fs, stderr, code := replay(t, context.Background(), "--learn-until", g.LearningEnd().Format(time.RFC3339Nano), path)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	explained := make([]bool, len(fs))
	for _, l := range labels {
		found := false
		for i, f := range fs {
			if genLabelFound(l, f, l.Detector) {
				found, explained[i] = true, true
			}
			for _, d := range l.AlsoMatches {
				if genLabelFound(l, f, d) {
					explained[i] = true
				}
			}
		}
		if !found {
			t.Errorf("label %s (%s, %s): no %s finding for %q from %s", l.ID, l.Kind, l.Source, l.Detector, l.Principal, l.SourceIP)
		}
	}
	n := 0
	for i, ok := range explained {
		if !ok {
			n++
			t.Logf("unexplained: %s %s %s %s %s / %s", fs[i].Time.Format(time.RFC3339), fs[i].Detector, fs[i].Principal, fs[i].SourceIP, fs[i].Summary, fs[i].Reason)
		}
	}
	// Every finding is a labelled anomaly (its detector or one it also
	// matches): bursts and their updates, nothing from normal traffic.
	if n != 0 {
		t.Errorf("%d of %d findings explained by no label, want 0", n, len(fs))
	}
	t.Logf("%d findings for %d labels", len(fs), len(labels))
}
