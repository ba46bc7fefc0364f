package main

import (
	"auditwatch/internal/testenv"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"auditwatch/schema"
)

const scenarioLearnUntil = "2026-11-28T00:29:44.92306143Z"

func findRoot(t testing.TB) string { return testenv.RepoRoot(t) }

func sharedData(t testing.TB) string { return testenv.SharedTestdata(t) }

// replay runs the replay command and returns its findings.
func replay(t *testing.T, ctx context.Context, args ...string) ([]schema.Finding, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := runReplay(ctx, args, nil, &out, &errb)
	return parseFindings(t, out.Bytes()), errb.String(), code
}

func parseFindings(t *testing.T, b []byte) []schema.Finding {
	t.Helper()
	var fs []schema.Finding
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var f schema.Finding
		if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
			t.Fatalf("bad finding line %q: %v", sc.Text(), err)
		}
		fs = append(fs, f)
	}
	return fs
}

func findingIDs(fs []schema.Finding) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.ID
	}
	return out
}

type label struct {
	ID          string    `json:"incident_id"`
	Kind        string    `json:"kind"`
	Anomaly     bool      `json:"anomaly"`
	AlsoMatches []string  `json:"also_matches"`
	Actor       string    `json:"actor"`
	EntityID    string    `json:"entity_id"`
	Addresses   []string  `json:"remote_addresses"`
	Start       time.Time `json:"time_start"`
	End         time.Time `json:"time_end"`
	RequestIDs  []string  `json:"request_ids"`
}

// labelDetector maps the scenario's incident kinds to our detectors.
var labelDetector = map[string]string{
	"first_time_accessor":     schema.DetectorFirstTimeAccess,
	"new_source_ip":           schema.DetectorUnexpectedIP,
	"auth_failure_spike":      schema.DetectorAuthFailureSpike,
	"invalid_token":           schema.DetectorAuthFailureSpike,
	"permission_denied_burst": schema.DetectorAuthFailureSpike,
	"bulk_read":               schema.DetectorAccessVolumeSpike,
	"root_token_use":          schema.DetectorPrivilegedUse,
}

// principal is what a finding names for the label's actor: the entity id,
// "root" for the root token (it has no entity), none for anonymous
// failures.
func (l label) principal() string {
	switch {
	case l.EntityID != "":
		return l.EntityID
	case l.Actor == "root":
		return "root"
	}
	return ""
}

// explains reports whether f is this incident raised by one of the
// detectors the label names (its kind or also_matches).
func (l label) explains(f schema.Finding) bool {
	dets := []string{labelDetector[l.Kind]}
	for _, k := range l.AlsoMatches {
		dets = append(dets, labelDetector[k])
	}
	return slices.Contains(dets, f.Detector) && f.Principal == l.principal() &&
		slices.Contains(l.Addresses, f.SourceIP) && !f.Time.Before(l.Start) && !f.Time.After(l.End)
}

func loadLabels(t *testing.T, path string) []label {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var ls []label
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var l label
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		ls = append(ls, l)
	}
	return ls
}

// TestReplayOpenBaoScenario replays the real OpenBao audit log with the
// warm-up as history. Every labelled anomaly must be found by its
// detector with its principal and address, and every finding must be
// explained by a label.
//
// The 35 findings, all explained by the labels (0 unexplained):
//
//	A1   first_time_access ×2: billing-worker's first new secret, then an update
//	     with the second (every new secret is an update: none is hidden)
//	A2   unexpected_ip ×1: reporting-etl from 198.51.100.77
//	A3   auth_failure_spike ×4 (one burst on 203.0.113.200): opens at 5 failures,
//	     updates at 10 and 20, and when alice's lockout adds a new failure kind (31)
//	A3b  auth_failure_spike ×1: the same burst's update when invalid tokens start (49)
//	A3c  first_time_access ×5 (one per new secret) and auth_failure_spike ×1
//	     (web-frontend's principal key; its address key stays quiet because
//	     one identity's failures are its own burst)
//	A4   first_time_access ×13 (one per new secret) and access_volume_spike ×2 (10, 15 distinct)
//	A5   privileged_use ×3 (1, 2, 4 root-token uses), unexpected_ip ×1 (203.0.113.66),
//	     first_time_access ×2 (infra/aws-root, then the token it mints: token
//	     creation is access)
//
// BOOT (root-token bootstrap) lies before --learn-until: it is history and
// raises nothing by design (the operator declared it baseline). Without
// --learn-until it is found as privileged_use (checked below).
func TestReplayOpenBaoScenario(t *testing.T) {
	root := findRoot(t)
	dir := filepath.Join(root, "testdata", "openbao-scenario")
	labels := loadLabels(t, filepath.Join(dir, "labels.jsonl"))
	fs, stderr, code := replay(t, context.Background(), "--learn-until", scenarioLearnUntil, filepath.Join(dir, "audit.log"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, l := range labels {
		if !l.Anomaly {
			continue
		}
		det := labelDetector[l.Kind]
		found := false
		for _, f := range fs {
			if f.Detector == det && l.explains(f) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("%s (%s): no %s finding for principal %q from %v in %s..%s", l.ID, l.Kind, det, l.principal(), l.Addresses, l.Start, l.End)
		}
	}
	var unexplained []schema.Finding
	perLabel := map[string]int{}
	for _, f := range fs {
		if f.Time.Before(mustTime(t, scenarioLearnUntil)) {
			t.Errorf("finding inside the history: %+v", f)
		}
		var by string
		for _, l := range labels {
			if l.explains(f) {
				by = l.ID
				break
			}
		}
		if by == "" {
			unexplained = append(unexplained, f)
		}
		perLabel[by]++
	}
	if len(unexplained) != 0 {
		t.Errorf("%d findings no label explains, want 0:", len(unexplained))
		for _, f := range unexplained {
			t.Errorf("  %s %s %s %s %s", f.Time.Format(time.RFC3339Nano), f.Detector, f.Principal, f.SourceIP, f.Summary)
		}
	}
	want := map[string]int{"A1": 2, "A2": 1, "A3": 4, "A3b": 1, "A3c": 6, "A4": 15, "A5": 6}
	for id, n := range want {
		if perLabel[id] != n {
			t.Errorf("%s: %d findings, want %d", id, perLabel[id], n)
		}
	}
	if len(fs) != 35 {
		t.Errorf("%d findings, want 35", len(fs))
	}
	// One incident per attack: every finding carries an incident id; the
	// findings of one label share one incident, and no incident spans two
	// labels (A3b continues A3's burst from the same address: one attack).
	attack := func(id string) string {
		if id == "A3b" {
			return "A3"
		}
		return id
	}
	incOf, labelOf := map[string]string{}, map[string]string{}
	for _, f := range fs {
		if f.IncidentID == "" {
			t.Errorf("finding %s has no incident id", f.ID)
			continue
		}
		var by string
		for _, l := range labels {
			if l.explains(f) {
				by = attack(l.ID)
				break
			}
		}
		if prev, ok := incOf[by]; ok && prev != f.IncidentID {
			t.Errorf("%s: findings in incidents %s and %s, want one", by, prev, f.IncidentID)
		}
		incOf[by] = f.IncidentID
		if prev, ok := labelOf[f.IncidentID]; ok && prev != by {
			t.Errorf("incident %s spans %s and %s", f.IncidentID, prev, by)
		}
		labelOf[f.IncidentID] = by
	}
	if len(labelOf) != 6 {
		t.Errorf("%d incidents, want 6 (A1, A2, A3+A3b, A3c, A4, A5)", len(labelOf))
	}
	// Each burst is one incident: every revision of a DedupeKey grows.
	last := map[string]schema.Finding{}
	for _, f := range fs {
		if p, ok := last[f.DedupeKey]; ok && (f.Revision != p.Revision+1 || f.Count <= p.Count) {
			t.Errorf("dedupe key %s: revision %d count %d after revision %d count %d", f.DedupeKey, f.Revision, f.Count, p.Revision, p.Count)
		}
		last[f.DedupeKey] = f
	}

	// Without history, the bootstrap's root-token use is found.
	all, stderr, code := replay(t, context.Background(), filepath.Join(dir, "audit.log"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var boot label
	for _, l := range labels {
		if l.ID == "BOOT" {
			boot = l
		}
	}
	bootFound := false
	for _, f := range all {
		if boot.explains(f) && f.Detector == schema.DetectorPrivilegedUse && slices.Contains(boot.RequestIDs, f.EventIDs[0]) {
			bootFound = true
		}
	}
	if !bootFound {
		t.Error("BOOT root-token use not found without --learn-until")
	}
	// Cold (no state, no learning cut): no critical finding outside the
	// labelled incidents; the audit device's start-up test entry
	// (sys/audit/test) never pages.
	for _, f := range all {
		if f.Severity != schema.SeverityCritical {
			continue
		}
		explained := false
		for _, l := range labels {
			explained = explained || l.explains(f)
		}
		if !explained {
			t.Errorf("critical finding outside the labelled incidents: %s %s %s", f.Detector, f.Summary, f.EventIDs)
		}
	}
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// splitAuditLog writes the audit log in two files, cut at the first line
// at or after at where no request waits for its response.
func splitAuditLog(t *testing.T, path, dir string, at time.Time) (string, string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(b), "\n")
	pending := map[string]bool{}
	cut := -1
	for i, l := range lines {
		var e struct {
			Time    time.Time `json:"time"`
			Type    string    `json:"type"`
			Request struct {
				ID string `json:"id"`
			} `json:"request"`
		}
		if json.Unmarshal([]byte(l), &e) == nil && i > 0 {
			if e.Type == "request" {
				pending[e.Request.ID] = true
			} else {
				delete(pending, e.Request.ID)
			}
		}
		if !e.Time.Before(at) && len(pending) == 0 {
			cut = i + 1
			break
		}
	}
	if cut < 0 {
		t.Fatal("no clean cut in the audit log")
	}
	a, c := filepath.Join(dir, "part1.log"), filepath.Join(dir, "part2.log")
	os.WriteFile(a, []byte(strings.Join(lines[:cut], "")), 0o644)
	os.WriteFile(c, []byte(strings.Join(lines[cut:], "")), 0o644)
	return a, c
}

// TestReplayRestart: half the log with --state, stop, the rest with the
// same state: the findings equal one uninterrupted run, none repeated.
// Then a run interrupted mid-input resumes from its last checkpoint.
func TestReplayRestart(t *testing.T) {
	root := findRoot(t)
	log := filepath.Join(root, "testdata", "openbao-scenario", "audit.log")
	full, stderr, code := replay(t, context.Background(), "--learn-until", scenarioLearnUntil, log)
	if code != 0 || len(full) == 0 {
		t.Fatalf("exit %d, %d findings: %s", code, len(full), stderr)
	}
	tmp := t.TempDir()
	// Cut in the middle of the A3 failure burst: its open burst, windows
	// and the reorder buffer cross the restart.
	p1, p2 := splitAuditLog(t, log, tmp, mustTime(t, "2026-11-28T00:33:05Z"))
	state := filepath.Join(tmp, "state")
	first, stderr, code := replay(t, context.Background(), "--state", state, "--learn-until", scenarioLearnUntil, p1)
	if code != 0 {
		t.Fatalf("first half: exit %d: %s", code, stderr)
	}
	second, stderr, code := replay(t, context.Background(), "--state", state, "--learn-until", scenarioLearnUntil, p2)
	if code != 0 {
		t.Fatalf("second half: exit %d: %s", code, stderr)
	}
	if len(first) == 0 || len(second) == 0 {
		t.Fatalf("split does not exercise the restart: %d + %d findings", len(first), len(second))
	}
	got := append(slices.Clone(first), second...)
	if !slices.Equal(findingIDs(got), findingIDs(full)) {
		t.Fatalf("restarted replay differs from one run:\n got %v\nwant %v", findingIDs(got), findingIDs(full))
	}
	// Same state, same inputs again: already replayed, nothing repeated.
	again, stderr, code := replay(t, context.Background(), "--state", state, "--learn-until", scenarioLearnUntil, p1, p2)
	if code != 0 || len(again) != 0 || !strings.Contains(stderr, "already replayed") {
		t.Fatalf("re-run over the same state: exit %d, %d findings, %s", code, len(again), stderr)
	}

	// Interrupted: stop once some findings are out (after a checkpoint),
	// then run the same input again over the same state.
	state2 := filepath.Join(tmp, "state2")
	ctx, cancel := context.WithCancel(context.Background())
	var out1, err1 bytes.Buffer
	w := &cancelAfter{w: &out1, n: 5, cancel: cancel}
	cfg := filepath.Join(root, "cmd", "auditwatch", "testdata", "replay-short-lateness.yaml")
	full, stderr, code = replay(t, context.Background(), "--config", cfg, "--learn-until", scenarioLearnUntil, log)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if code := runReplay(ctx, []string{"--config", cfg, "--state", state2, "--learn-until", scenarioLearnUntil, "--checkpoint-every", "20", log}, nil, w, &err1); code != 1 {
		t.Fatalf("interrupted run: exit %d, want 1: %s", code, err1.String())
	}
	part := parseFindings(t, out1.Bytes())
	rest, stderr, code := replay(t, context.Background(), "--config", cfg, "--state", state2, "--learn-until", scenarioLearnUntil, "--checkpoint-every", "20", log)
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

// cancelAfter cancels once n findings lines have been written.
type cancelAfter struct {
	w      *bytes.Buffer
	n      int
	cancel func()
}

func (c *cancelAfter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	if bytes.Count(c.w.Bytes(), []byte("\n")) >= c.n {
		c.cancel()
	}
	return n, err
}

func TestReplayConfigErrors(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(findRoot(t), "testdata", "openbao-scenario", "audit.log")
	cases := []struct {
		name, yaml, want string
	}{
		{"unknown key", "detectors:\n  unexpected_ip:\n    learnin_period: 1h\n", "learnin_period"},
		{"bad values", "detectors:\n  unexpected_ip:\n    ipv4_prefix: 40\n    allow:\n      - principal: x\n        cidrs: [not-a-cidr]\n  auth_failure_spike:\n    keys: [user]\n",
			"detectors.unexpected_ip.ipv4_prefix"},
		{"unknown section", "detector:\n  x: 1\n", "detector"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".yaml")
			os.WriteFile(p, []byte(c.yaml), 0o644)
			_, stderr, code := replay(t, context.Background(), "--config", p, log)
			if code != 2 || !strings.Contains(stderr, c.want) {
				t.Fatalf("exit %d, stderr %q; want 2 naming %q", code, stderr, c.want)
			}
		})
	}
	_, stderr, code := replay(t, context.Background(), "--learn-until", "yesterday", log)
	if code != 2 || !strings.Contains(stderr, "--learn-until") {
		t.Fatalf("bad --learn-until: exit %d %q", code, stderr)
	}
	// Every bad field is named, not just the first.
	p := filepath.Join(dir, "bad_values.yaml")
	_, stderr, _ = replay(t, context.Background(), "--config", p, log)
	for _, w := range []string{"detectors.unexpected_ip.ipv4_prefix", "detectors.unexpected_ip.allow[0].cidrs[0]", "detectors.auth_failure_spike.keys[0]"} {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr does not name %s: %q", w, stderr)
		}
	}
}

// A bad record is named (input and line) and skipped; the good records
// around it are all used.
func TestReplayBadRecord(t *testing.T) {
	log := filepath.Join(findRoot(t), "testdata", "openbao-scenario", "audit.log")
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(b), "\n")
	// A broken line (with a terminal escape) in the middle of the anomalies.
	bad := filepath.Join(t.TempDir(), "audit-bad.log")
	at := 1300
	mixed := strings.Join(lines[:at], "") + "{\"type\":\"request\",\x1b[31m broken\n" + strings.Join(lines[at:], "")
	if err := os.WriteFile(bad, []byte(mixed), 0o644); err != nil {
		t.Fatal(err)
	}
	want, _, _ := replay(t, context.Background(), "--learn-until", scenarioLearnUntil, log)
	got, stderr, code := replay(t, context.Background(), "--learn-until", scenarioLearnUntil, bad)
	if code != 2 {
		t.Fatalf("exit %d with a rejected record, want 2: %s", code, stderr)
	}
	if !strings.Contains(stderr, fmt.Sprintf("%s:%d:", bad, at+1)) || strings.Contains(stderr, "\x1b") {
		t.Fatalf("stderr does not name the bad record safely: %q", stderr)
	}
	if !slices.Equal(findingIDs(got), findingIDs(want)) {
		t.Fatalf("a bad record changed the findings:\n got %v\nwant %v", findingIDs(got), findingIDs(want))
	}
}
