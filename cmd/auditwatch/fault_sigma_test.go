package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
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
// the same stream: none lost, none written twice.
func TestRunCorrelationsSurviveSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test builds and kills the binary; not run with -short")
	}
	work := t.TempDir()
	data := filepath.Join(work, "generated.log")
	f, err := os.Create(data)
	if err != nil {
		t.Fatal(err)
	}
	var genErr bytes.Buffer
	code := run([]string{"generate", "--format", "mixed", "--seed", "11", "--events", "15000", "--machines", "24",
		"--humans", "10", "--duration", "6h"}, nil, f, &genErr)
	f.Close()
	if code != 0 {
		t.Fatalf("generate: exit %d: %s", code, genErr.String())
	}
	raw, err := os.ReadFile(data)
	if err != nil {
		t.Fatal(err)
	}
	rules, err := filepath.Abs("testdata/rules-correlation")
	if err != nil {
		t.Fatal(err)
	}
	live := filepath.Join(work, "live", "audit.log")
	os.MkdirAll(filepath.Dir(live), 0o755)
	findings := filepath.Join(work, "findings.jsonl")
	cfgPath := filepath.Join(work, "run.yaml")
	cfg := fmt.Sprintf(`sources:
  - name: live
    type: filetail
    filetail: {path: %q, poll_interval: 50ms, idle_flush: 500ms}
state: {dir: %q, checkpoint_interval: 150ms, checkpoint_events: 1000, idle_drain: 4s}
rules: {paths: [%q]}
files: {findings: %q}
logging: {level: warn, format: text}
shutdown_timeout: 10s
`, live, filepath.Join(work, "state"), rules, findings)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	sigmaOnly := func(fs []schema.Finding) []schema.Finding {
		var out []schema.Finding
		for _, f := range fs {
			if f.Detector == schema.DetectorSigma {
				out = append(out, f)
			}
		}
		return out
	}
	want, stderr, code := replay(t, t.Context(), "--config", cfgPath, data)
	if code != 0 {
		t.Fatalf("replay: exit %d: %s", code, stderr)
	}
	want = sigmaOnly(want)
	corr := 0
	for _, f := range want {
		if f.Attributes["correlation"] != "" {
			corr++
		}
	}
	if corr < 100 {
		t.Fatalf("the reference replay raised %d correlation findings: too few to test", corr)
	}

	appended := make(chan struct{})
	go func() {
		defer close(appended)
		out, err := os.OpenFile(live, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			t.Error(err)
			return
		}
		defer out.Close()
		step := len(raw) / 200
		for off := 0; off < len(raw); {
			n := min(len(raw)-off, step/2+rand.IntN(step))
			if _, err := out.Write(raw[off : off+n]); err != nil {
				t.Error(err)
				return
			}
			off += n
			time.Sleep(50 * time.Millisecond)
		}
	}()
	rng := rand.New(rand.NewPCG(7, uint64(time.Now().UnixNano())))
	kills := 0
	p := startAuditwatch(t, "run", "--config", cfgPath)
	for kills < 8 {
		time.Sleep(time.Duration(200+rng.IntN(1000)) * time.Millisecond)
		p.kill()
		kills++
		p = startAuditwatch(t, "run", "--config", cfgPath)
	}
	<-appended
	deadline := time.Now().Add(40 * time.Second)
	for len(sigmaOnly(readFindings(t, findings))) < len(want) && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(3 * time.Second)
	p.stop(t)
	got := sigmaOnly(readFindings(t, findings))
	t.Logf("%d kills; %d Sigma findings (replay %d, %d of them correlations)", kills, len(got), len(want), corr)

	count := map[string]int{}
	for _, f := range got {
		count[f.ID]++
	}
	for id, n := range count {
		if n != 1 {
			t.Errorf("finding %s written %d times", id, n)
		}
	}
	wantIDs := map[string]bool{}
	missing := 0
	for _, f := range want {
		wantIDs[f.ID] = true
		if count[f.ID] == 0 {
			missing++
			if missing <= 5 {
				t.Errorf("missing finding %s: %s", f.ID, f.Summary)
			}
		}
	}
	extra := 0
	for _, f := range got {
		if !wantIDs[f.ID] {
			extra++
			if extra <= 5 {
				t.Errorf("finding %s not in the uninterrupted replay: %s", f.ID, f.Summary)
			}
		}
	}
	if missing+extra > 0 {
		t.Errorf("%d missing, %d extra of %d", missing, extra, len(want))
	}
}
