package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"auditwatch/internal/testenv"
)

// TestBenchReplayNormalizeScript is the smoke run of `make
// bench-replay-normalize` (scripts/bench-replay-normalize.sh): one round on
// 10,000 generated requests instead of `make bench-data`'s million. It
// checks the script runs both commands under the three collector settings,
// that every replay gave the same findings, and prints a ratio and rates
// for each setting.
func TestBenchReplayNormalizeScript(t *testing.T) {
	bin := auditwatchBinary(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "gen.log")
	f, err := os.Create(data)
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	gen := exec.Command(bin, "generate", "--format", "mixed", "--events", "10000", "--seed", "1", "--out", "-")
	gen.Stdout, gen.Stderr = f, &stderr
	err = gen.Run()
	f.Close()
	if err != nil {
		t.Fatalf("generate: %v\n%s", err, stderr.String())
	}
	learn := regexp.MustCompile(`learning period ends (\S+)`).FindStringSubmatch(stderr.String())
	if learn == nil {
		t.Fatalf("generate named no learning end: %s", stderr.String())
	}
	cmd := exec.Command(filepath.Join(testenv.RepoRoot(t), "scripts", "bench-replay-normalize.sh"))
	cmd.Env = append(os.Environ(), "BIN="+bin, "FILE="+data, "LEARN="+learn[1], "ROUNDS=1", "EVENTS=10000")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("script: %v\n%s", err, out)
	}
	summary := regexp.MustCompile(`(?m)^GC (shipped|400|100) +normalize +[0-9.]+ s +replay +[0-9.]+ s +replay/normalize [0-9.]+ +normalize [0-9]+ events/CPU-s +replay [0-9]+ events/CPU-s$`)
	if got := summary.FindAllString(string(out), -1); len(got) != 3 {
		t.Fatalf("want a summary line per collector setting, got %d:\n%s", len(got), out)
	}
	if runs := strings.Count(string(out), "round 1, GC "); runs != 3 {
		t.Fatalf("want 3 runs, got %d:\n%s", runs, out)
	}
	if !regexp.MustCompile(`replay [0-9.]+ s \([1-9][0-9]* findings\)`).MatchString(string(out)) {
		t.Fatalf("replays raised no findings on generated traffic with anomalies:\n%s", out)
	}
}
