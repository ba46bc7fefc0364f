package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
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
// found.
func TestRunSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test builds and kills the binary; not run with -short")
	}
	work := t.TempDir()
	data := filepath.Join(work, "generated.log")
	labelsPath := filepath.Join(work, "labels.jsonl")
	f, err := os.Create(data)
	if err != nil {
		t.Fatal(err)
	}
	var genErr bytes.Buffer
	code := run([]string{"generate", "--format", "mixed", "--seed", "11", "--events", "15000", "--machines", "24",
		"--humans", "10", "--duration", "6h", "--labels", labelsPath}, nil, f, &genErr)
	f.Close()
	if code != 0 {
		t.Fatalf("generate: exit %d: %s", code, genErr.String())
	}
	m := regexp.MustCompile(`learning period ends (\S+)`).FindStringSubmatch(genErr.String())
	if m == nil {
		t.Fatalf("generate names no learning end: %s", genErr.String())
	}
	raw, err := os.ReadFile(data)
	if err != nil {
		t.Fatal(err)
	}

	live := filepath.Join(work, "live", "audit.log")
	os.MkdirAll(filepath.Dir(live), 0o755)
	findings := filepath.Join(work, "findings.jsonl")
	events := filepath.Join(work, "events.jsonl")
	cfgPath := filepath.Join(work, "run.yaml")
	cfg := fmt.Sprintf(`sources:
  - name: live
    type: filetail
    filetail: {path: %q, poll_interval: 50ms, idle_flush: 500ms}
state: {dir: %q, checkpoint_interval: 150ms, checkpoint_events: 2000, idle_drain: 4s}
detectors:
  learn_until: %s
files: {findings: %q, events: %q}
logging: {level: warn, format: text}
shutdown_timeout: 10s
`, live, filepath.Join(work, "state"), m[1], findings, events)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}

	// The reference: one uninterrupted replay of the whole stream.
	want, stderr, code := replay(t, t.Context(), "--config", cfgPath, data)
	if code != 0 {
		t.Fatalf("replay: exit %d: %s", code, stderr)
	}
	if len(want) == 0 {
		t.Fatal("replay raised no findings")
	}

	// Append the stream in random-sized chunks (cutting lines anywhere)
	// over about 15 s while the pipeline is killed and restarted.
	rng := rand.New(rand.NewPCG(42, uint64(time.Now().UnixNano())))
	appended := make(chan struct{})
	go func() {
		defer close(appended)
		out, err := os.OpenFile(live, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			t.Error(err)
			return
		}
		defer out.Close()
		step := len(raw) / 300
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

	kills := 0
	p := startAuditwatch(t, "run", "--config", cfgPath)
	for kills < 12 {
		time.Sleep(time.Duration(200+rng.IntN(1300)) * time.Millisecond)
		p.kill()
		kills++
		p = startAuditwatch(t, "run", "--config", cfgPath)
	}
	<-appended
	// Let it catch up and drain, then stop it cleanly.
	deadline := time.Now().Add(40 * time.Second)
	for len(readFindings(t, findings)) < len(want) && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(5 * time.Second) // anything extra would show now
	p.stop(t)
	got := readFindings(t, findings)
	t.Logf("%d kills; %d findings (replay %d); input %d bytes", kills, len(got), len(want), len(raw))

	// No finding written twice; exactly the replay's findings.
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
	for _, f := range want {
		wantIDs[f.ID] = true
		if count[f.ID] == 0 {
			t.Errorf("missing finding %s: %s %s rev %d %s", f.ID, f.Detector, f.Principal, f.Revision, f.Summary)
		}
	}
	for _, f := range got {
		if !wantIDs[f.ID] {
			t.Errorf("finding %s not in the uninterrupted replay: %s %s rev %d %s", f.ID, f.Detector, f.Principal, f.Revision, f.Summary)
		}
	}

	// Every label found by its detector (or one it also matches).
	lb, err := os.ReadFile(labelsPath)
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
	for _, f := range got {
		for _, id := range f.EventIDs {
			if i, ok := byEvent[id]; ok {
				found[i][f.Detector] = true
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
	ef, err := os.Open(events)
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
	r := ingest.NewReader(bytes.NewReader(raw), data, ingest.DefaultOptions())
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
