package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"auditwatch/ingest"
	"auditwatch/internal/testenv"
	"auditwatch/schema"
	"auditwatch/sigma"
)

// BenchmarkReplayRules replays the same 1,000,000 generated requests four
// times per iteration, in one process: without rules, with one Sigma rule,
// with every rule of SigmaHQ's CloudTrail set (../shared, 57) and the
// project's pack (rules/), and with SigmaHQ's 57 alone. Reported: events
// per CPU second of each, and the ratios rules/none (target >= 0.8) and
// rules/one-rule CPU (target < 2). Run with -cpu 1 -benchtime 1x.
func BenchmarkReplayRules(b *testing.B) {
	path, learn := benchInput1M(b)
	root := testenv.RepoRoot(b)
	sigmahq := filepath.Join(testenv.SharedTestdata(b), "sigma", "cloudtrail")
	pack := filepath.Join(root, "rules")
	one := filepath.Join(pack, "aws", "aws_kms_key_deletion_or_disable.yml")
	set, err := sigma.Load([]string{sigmahq, pack}, sigma.Options{})
	if err != nil {
		b.Fatal(err)
	}
	nRules := len(set.Rules)
	runs := []struct {
		name string
		args []string
	}{
		{"none", nil},
		{"one", []string{"--rules", one}},
		{"all", []string{"--rules", sigmahq, "--rules", pack}},
		{"sigmahq", []string{"--rules", sigmahq}},
	}
	cpu := make([]time.Duration, len(runs))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for k, r := range runs {
			runtime.GC()
			c0 := cpuNow()
			args := append(append([]string{"--learn-until", learn.Format(time.RFC3339Nano)}, r.args...), path)
			if code := runReplay(context.Background(), args, nil, io.Discard, io.Discard); code != 0 {
				b.Fatalf("replay %s: exit %d", r.name, code)
			}
			cpu[k] += cpuNow() - c0
		}
	}
	ev := float64(1_000_000 * b.N)
	b.ReportMetric(float64(nRules), "rules")
	b.ReportMetric(ev/cpu[0].Seconds(), "none-events/cpu-s")
	b.ReportMetric(ev/cpu[1].Seconds(), "one-rule-events/cpu-s")
	b.ReportMetric(ev/cpu[2].Seconds(), "all-rules-events/cpu-s")
	b.ReportMetric(cpu[0].Seconds()/cpu[2].Seconds(), "all-rules/none-throughput")
	b.ReportMetric(cpu[2].Seconds()/cpu[1].Seconds(), "all/one-rule-cpu")
	b.ReportMetric(cpu[0].Seconds()/cpu[3].Seconds(), "sigmahq/none-throughput")
	b.ReportMetric(cpu[3].Seconds()/cpu[1].Seconds(), "sigmahq/one-rule-cpu")
}

// TestReplayRulesSmoke is BenchmarkReplayRules' smoke run (CI runs no
// benchmarks): on a small generated file, the same three replays run, the
// rules leave the detectors' findings alone, the one rule's findings are
// among the whole set's, and the whole set's Sigma findings are exactly
// those of the rules evaluated on every original record (replay keeps a
// record only when a rule matches it: none is lost).
func TestReplayRulesSmoke(t *testing.T) {
	work := t.TempDir()
	data := filepath.Join(work, "mixed.log")
	f, err := os.Create(data)
	if err != nil {
		t.Fatal(err)
	}
	var genErr bytes.Buffer
	if code := run([]string{"generate", "--format", "mixed", "--seed", "11", "--events", "6000", "--machines", "12", "--humans", "5", "--duration", "24h"}, nil, f, &genErr); code != 0 {
		t.Fatalf("generate: %s", genErr.String())
	}
	f.Close()
	root := testenv.RepoRoot(t)
	paths := []string{filepath.Join(root, "rules")}
	if dir, ok := testenv.LookupSharedTestdata(t); ok {
		paths = append(paths, filepath.Join(dir, "sigma", "cloudtrail"))
	}
	// one rule that matches often, also part of the whole set
	one := filepath.Join(work, "one", "kv_read.yml")
	os.MkdirAll(filepath.Dir(one), 0o755)
	if err := os.WriteFile(one, []byte("title: KV read\nid: 44444444-0000-4000-8000-000000000001\nlogsource: {product: vault}\ndetection:\n  sel:\n    request.operation: read\n    request.path|contains: /data/\n  condition: sel\nlevel: low\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	paths = append(paths, filepath.Dir(one))
	split := func(fs []schema.Finding) (det, sig map[string]bool) {
		det, sig = map[string]bool{}, map[string]bool{}
		for _, f := range fs {
			if f.Detector == schema.DetectorSigma {
				sig[f.ID] = true
			} else {
				det[f.ID] = true
			}
		}
		return det, sig
	}
	none, stderr, code := replay(t, t.Context(), data)
	if code != 0 {
		t.Fatal(stderr)
	}
	oneF, stderr, code := replay(t, t.Context(), "--rules", one, data)
	if code != 0 {
		t.Fatal(stderr)
	}
	args := []string{}
	for _, p := range paths {
		args = append(args, "--rules", p)
	}
	allF, stderr, code := replay(t, t.Context(), append(args, data)...)
	if code != 0 {
		t.Fatal(stderr)
	}
	d0, _ := split(none)
	d1, s1 := split(oneF)
	d2, s2 := split(allF)
	if fmt.Sprint(d0) != fmt.Sprint(d1) || fmt.Sprint(d0) != fmt.Sprint(d2) {
		t.Errorf("detector findings differ with rules: %d, %d, %d", len(d0), len(d1), len(d2))
	}
	if len(s1) == 0 || len(s2) <= len(s1) {
		t.Fatalf("sigma findings: one rule %d, all %d", len(s1), len(s2))
	}
	for id := range s1 {
		if !s2[id] {
			t.Errorf("one rule's finding %s missing from the whole set's", id)
		}
	}
	// the reference: every record kept and evaluated, in file order
	set, err := sigma.Load(paths, sigma.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rf, err := os.Open(data)
	if err != nil {
		t.Fatal(err)
	}
	defer rf.Close()
	opts := ingest.DefaultOptions()
	opts.KeepRaw = true
	r := ingest.NewReader(rf, data, opts)
	cfg, err := sigma.DecodeConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	det, err := sigma.NewDetector(&nopEngine{}, set)
	if err != nil {
		t.Fatal(err)
	}
	det.Configure(cfg)
	want := map[string]bool{}
	for {
		ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range det.Process(ev) {
			want[f.ID] = true
		}
	}
	if fmt.Sprint(want) != fmt.Sprint(s2) {
		t.Errorf("replay: %d Sigma findings, every record evaluated: %d", len(s2), len(want))
	}
	t.Logf("%d detector findings; Sigma: one rule %d, all %d", len(d0), len(s1), len(s2))
}
