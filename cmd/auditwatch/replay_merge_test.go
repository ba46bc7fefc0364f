package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// generateTo runs `auditwatch generate` with args.
func generateTo(t *testing.T, args ...string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := runGenerate(context.Background(), args, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("generate %v: exit %d: %s", args, code, stderr.String())
	}
}

// Several inputs covering the same time span (generate's --out DIR writes
// the Vault and the CloudTrail half of one stream to two files) are read
// side by side in event-time order: no event is late, and the findings are
// those of the same traffic as one time-ordered stream.
func TestReplayMergesInputsByEventTime(t *testing.T) {
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "split")
	common := []string{"--events", "30000", "--seed", "5"}
	generateTo(t, append([]string{"--format", "mixed", "--out", dir}, common...)...)
	one := filepath.Join(tmp, "one.log")
	generateTo(t, append([]string{"--format", "mixed", "--out", one}, common...)...)
	files, err := os.ReadDir(dir)
	if err != nil || len(files) != 2 {
		t.Fatalf("generate --out DIR wrote %v (%v), want two files", files, err)
	}

	want, stderr, code := replay(t, context.Background(), one)
	if code != 0 || !strings.Contains(stderr, "(0 late)") {
		t.Fatalf("one stream: exit %d: %s", code, stderr)
	}
	if len(want) == 0 {
		t.Fatal("the generated traffic raises no findings: the comparison is empty")
	}
	for name, args := range map[string][]string{
		"directory": {dir},
		"files":     {filepath.Join(dir, files[1].Name()), filepath.Join(dir, files[0].Name())},
	} {
		got, stderr, code := replay(t, context.Background(), args...)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", name, code, stderr)
		}
		if !strings.Contains(stderr, "(0 late)") {
			t.Errorf("%s: events marked late: %s", name, stderr)
		}
		if !slices.Equal(findingIDs(got), findingIDs(want)) {
			t.Errorf("%s: %d findings, one stream gives %d:\n got %v\nwant %v", name, len(got), len(want), findingIDs(got), findingIDs(want))
		}
	}
}

// An interrupted replay of several inputs resumes each where it stopped
// and ends with the findings of one uninterrupted run.
func TestReplayMergedRestart(t *testing.T) {
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "split")
	generateTo(t, "--format", "mixed", "--out", dir, "--events", "30000", "--seed", "5")
	full, stderr, code := replay(t, context.Background(), dir)
	if code != 0 || len(full) < 6 {
		t.Fatalf("exit %d, %d findings: %s", code, len(full), stderr)
	}
	state := filepath.Join(tmp, "state")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out1, err1 bytes.Buffer
	w := &cancelAfter{w: &out1, n: len(full) / 2, cancel: cancel}
	if code := runReplay(ctx, []string{"--state", state, "--checkpoint-every", "500", dir}, nil, w, &err1); code != 1 {
		t.Fatalf("interrupted run: exit %d, want 1: %s", code, err1.String())
	}
	part := parseFindings(t, out1.Bytes())
	rest, stderr, code := replay(t, context.Background(), "--state", state, "--checkpoint-every", "500", dir)
	if code != 0 {
		t.Fatalf("resumed run: exit %d: %s", code, stderr)
	}
	if len(part) == 0 || len(part) >= len(full) {
		t.Fatalf("interrupted run emitted %d of %d findings", len(part), len(full))
	}
	merged := slices.Clone(part)
	seen := map[string]bool{}
	for _, f := range part {
		seen[f.ID] = true
	}
	for _, f := range rest {
		if !seen[f.ID] { // a finding re-emitted after the stop carries its old id
			merged = append(merged, f)
			seen[f.ID] = true
		}
	}
	if !slices.Equal(findingIDs(merged), findingIDs(full)) {
		t.Fatalf("interrupted+resumed differs from one run:\n got %v\nwant %v", findingIDs(merged), findingIDs(full))
	}
}
