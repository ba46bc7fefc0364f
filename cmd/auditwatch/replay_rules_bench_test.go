package main

import (
	"context"
	"io"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"auditwatch/internal/testenv"
	"auditwatch/sigma"
)

// BenchmarkReplayRules replays the same 1,000,000 generated requests three
// times per iteration, in one process: without rules, with one Sigma rule,
// and with every rule of SigmaHQ's CloudTrail set (../shared, 57) and the
// project's pack (rules/), 71 rules in all. Reported: events per CPU
// second of each, and the ratios rules/none (target >= 0.8) and
// all-rules/one-rule CPU (target < 2). Run with -cpu 1 -benchtime 1x.
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
}
