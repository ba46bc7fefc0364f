package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"auditwatch/gen"
	"auditwatch/schema"
)

var recordTime = regexp.MustCompile(`"(?:eventTime|time)":"([^"]+)"`)

// TestBaselineThenNoLearningPeriod: `auditwatch baseline` over the first
// day of two days of generated traffic, then a replay of the second day on
// that state with no learning cut: every injected anomaly of the second
// day is found, and nothing else (no learning-period findings). Without
// the baseline the same replay misses the anomalies that need a learned
// principal: it is still in its learning period.
func TestBaselineThenNoLearningPeriod(t *testing.T) {
	start := time.Now().UTC().Add(-50 * time.Hour).Truncate(time.Hour)
	g, err := gen.New(gen.Config{Seed: 11, Events: 80_000, Anomalies: true, Start: start, Duration: 48 * time.Hour, LearningFraction: 0.5}.Defaults())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	hist, next := filepath.Join(dir, "day1.log"), filepath.Join(dir, "day2.log")
	hbytes, nbytes := splitAtLearningEnd(t, g)
	for p, b := range map[string][]byte{hist: hbytes, next: nbytes} {
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	state := filepath.Join(dir, "state")
	var out, errb bytes.Buffer
	if code := runBaseline(context.Background(), []string{"--since", "30d", "--state", state, hist}, nil, &out, &errb); code != 0 {
		t.Fatalf("baseline exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "baseline: learned ") {
		t.Fatalf("baseline output %q", out.String())
	}
	labels := g.Labels()
	check := func(fs []schema.Finding) (missed, unexplained int) {
		for _, l := range labels {
			found := false
			for _, f := range fs {
				found = found || genLabelFound(l, f, l.Detector)
			}
			if !found {
				missed++
			}
		}
		for _, f := range fs {
			ok := false
			for _, l := range labels {
				ok = ok || genLabelFound(l, f, l.Detector)
				for _, d := range l.AlsoMatches {
					ok = ok || genLabelFound(l, f, d)
				}
			}
			if !ok {
				unexplained++
				t.Logf("unexplained: %s %s %s: %s", f.Detector, f.Principal, f.SourceIP, f.Reason)
			}
		}
		return missed, unexplained
	}
	fs, stderr, code := replayBin(t, "--state", state, next)
	if code != 0 {
		t.Fatalf("replay exit %d: %s", code, stderr)
	}
	if missed, unexplained := check(fs); missed != 0 || unexplained != 0 {
		t.Errorf("after baseline: %d of %d anomalies missed, %d unexplained findings; want 0 and 0", missed, len(labels), unexplained)
	}
	cold, stderr, code := replayBin(t, next)
	if code != 0 {
		t.Fatalf("cold replay exit %d: %s", code, stderr)
	}
	if missed, _ := check(cold); missed == 0 {
		t.Error("without a baseline every anomaly was found too: the test does not show what baseline adds")
	}
	// Too old for --since: nothing learned is an error.
	if code := runBaseline(context.Background(), []string{"--since", "1h", "--state", filepath.Join(dir, "s2"), hist}, nil, &out, &errb); code == 0 {
		t.Error("baseline with nothing within --since succeeded")
	}
}
