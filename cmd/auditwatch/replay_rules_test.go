package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"auditwatch/pipeline"
	"auditwatch/schema"
	"auditwatch/sigma"
)

// TestReplayRulePack replays every example record of the project's rule
// pack (rules/) through `replay --rules rules` and checks the findings
// against the examples: each single-event rule fires on its positive
// examples and on none of its negatives; each correlation fires; every
// finding names the rule, its author and its techniques.
func TestReplayRulePack(t *testing.T) {
	root := findRoot(t)
	rulesDir := filepath.Join(root, "rules")
	files, err := sigma.Files([]string{rulesDir})
	if err != nil {
		t.Fatal(err)
	}
	input := filepath.Join(t.TempDir(), "records.jsonl")
	var all []byte
	type expect struct {
		pos, neg []string
		corr     bool
		titles   map[string]bool
	}
	exp := map[string]*expect{}
	titleFile := map[string]string{}
	for _, f := range files {
		e := &expect{titles: map[string]bool{}}
		exp[f] = e
		b, _ := os.ReadFile(f)
		e.corr = strings.Contains(string(b), "correlation:")
		for _, l := range strings.Split(string(b), "\n") {
			if title, ok := strings.CutPrefix(l, "title: "); ok {
				e.titles[title] = true
				titleFile[title] = f
			}
		}
		tb, err := os.ReadFile(sigma.TestsFile(f))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(strings.TrimSpace(string(tb)), "\n") {
			var tc struct {
				Match  bool `json:"match"`
				Record struct {
					EventID string `json:"eventID"`
					Request struct {
						ID string `json:"id"`
					} `json:"request"`
				} `json:"record"`
			}
			var full map[string]json.RawMessage
			if err := json.Unmarshal([]byte(l), &tc); err != nil {
				t.Fatal(err)
			}
			json.Unmarshal([]byte(l), &full)
			all = append(append(all, full["record"]...), '\n')
			id := tc.Record.EventID + tc.Record.Request.ID
			if tc.Match {
				e.pos = append(e.pos, id)
			} else {
				e.neg = append(e.neg, id)
			}
		}
	}
	if err := os.WriteFile(input, all, 0o600); err != nil {
		t.Fatal(err)
	}
	// every match a finding: each positive example fires on its own
	cfg := filepath.Join(t.TempDir(), "every.yaml")
	if err := os.WriteFile(cfg, []byte("rules:\n  every_match: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fs, stderr, code := replay(t, context.Background(), "--config", cfg, "--rules", rulesDir, input)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	// the default cool-down groups repeated matches of a rule by one
	// principal: fewer findings, and the first positive example of each
	// rule still raises one at once
	grouped, stderr, code := replay(t, context.Background(), "--rules", rulesDir, input)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	firstFired := map[string]bool{}
	for _, f := range grouped {
		if f.Detector == schema.DetectorSigma && f.Revision == 0 {
			firstFired[f.EventIDs[0]] = true
		}
	}
	if len(grouped) >= len(fs) {
		t.Errorf("grouped: %d findings, every match: %d", len(grouped), len(fs))
	}
	for file, e := range exp {
		if !e.corr && len(e.pos) > 0 && !firstFired[e.pos[0]] {
			t.Errorf("%s: grouped: no finding for the first positive example %s", filepath.Base(file), e.pos[0])
		}
	}
	fired := map[string]map[string]bool{} // file → event ids of its single-event findings
	corrFired := map[string]int{}
	for _, f := range fs {
		if f.Detector != schema.DetectorSigma {
			continue
		}
		a := f.Attributes
		if a[sigma.AttrAuthor] != "auditwatch project" || a[sigma.AttrRuleTitle] == "" || !strings.Contains(f.Summary, a[sigma.AttrRuleTitle]) {
			t.Errorf("finding without rule title and author: %+v", f)
		}
		// the console line (pipeline.FormatFinding) shows the summary: it
		// names the author too
		var line strings.Builder
		pipeline.FormatFinding(&line, &f)
		if !strings.Contains(line.String(), a[sigma.AttrRuleTitle]) || !strings.Contains(line.String(), "(by auditwatch project)") {
			t.Errorf("console line without rule title and author: %s", line.String())
		}
		file := titleFile[a[sigma.AttrRuleTitle]]
		if a[sigma.AttrCorrType] != "" {
			corrFired[file]++
			continue
		}
		if a[sigma.AttrTechniques] == "" {
			t.Errorf("%s: no techniques", a[sigma.AttrRuleTitle])
		}
		if fired[file] == nil {
			fired[file] = map[string]bool{}
		}
		fired[file][f.EventIDs[0]] = true
	}
	for file, e := range exp {
		name := filepath.Base(file)
		if e.corr {
			if corrFired[file] != 1 {
				t.Errorf("%s: correlation fired %d times, want once", name, corrFired[file])
			}
			continue
		}
		for _, id := range e.pos {
			if !fired[file][id] {
				t.Errorf("%s: no finding for positive example %s", name, id)
			}
		}
		for _, id := range e.neg {
			if fired[file][id] {
				t.Errorf("%s: finding for negative example %s", name, id)
			}
		}
	}
}
