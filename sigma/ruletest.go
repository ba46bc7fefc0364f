package sigma

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"auditwatch/schema"
)

// TestsFile is the example file beside a rule file: rules/x.yml has its
// examples in rules/x.tests.jsonl.
func TestsFile(ruleFile string) string {
	return strings.TrimSuffix(ruleFile, filepath.Ext(ruleFile)) + ".tests.jsonl"
}

// TestCase is one line of a tests file: an original record, and whether
// the rules of the file (single-event or correlation) raise a finding on
// it. The records of one file are fed in order into fresh correlation
// state, so a correlation example is a sequence of lines.
type TestCase struct {
	Match  bool            `json:"match"`
	Record json.RawMessage `json:"record"`
	// Note says what the case shows (optional).
	Note string `json:"note,omitempty"`
}

// TestResult is the outcome of one rule file's examples.
type TestResult struct {
	File     string // the tests file
	Cases    int
	Failures []string // "file:line: …"
	// Missing is true when the rule file has no tests file.
	Missing bool
}

// RunTests runs the examples of every rule file in files against the set
// (which must hold those files' rules).
func RunTests(s *Set, files []string) []TestResult {
	var out []TestResult
	for _, f := range files {
		out = append(out, runTestFile(s, f))
	}
	return out
}

func runTestFile(s *Set, ruleFile string) TestResult {
	tf := TestsFile(ruleFile)
	res := TestResult{File: tf}
	data, err := os.ReadFile(tf)
	if err != nil {
		if os.IsNotExist(err) {
			res.Missing = true
			return res
		}
		res.Failures = append(res.Failures, fmt.Sprintf("%s: %v", tf, err))
		return res
	}
	mine := map[*Rule]bool{}
	for _, r := range s.Rules {
		if r.File == ruleFile {
			mine[r] = true
		}
	}
	ev := NewEvaluator(s)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	line := 0
	for sc.Scan() {
		line++
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 || text[0] == '#' {
			continue
		}
		var tc TestCase
		if err := json.Unmarshal(text, &tc); err != nil {
			res.Failures = append(res.Failures, fmt.Sprintf("%s:%d: %v", tf, line, err))
			continue
		}
		if len(tc.Record) == 0 {
			res.Failures = append(res.Failures, fmt.Sprintf("%s:%d: no record", tf, line))
			continue
		}
		res.Cases++
		raw := append([]byte(nil), tc.Record...)
		rec, err := ev.p.Parse(raw, "")
		if err != nil {
			res.Failures = append(res.Failures, fmt.Sprintf("%s:%d: record: %v", tf, line, err))
			continue
		}
		e := schema.Event{Raw: raw, Time: rec.EventTime(), ID: recordID(rec)}
		fs := ev.ProcessRecord(&e, rec, nil)
		var got []string
		for _, f := range fs {
			for r := range mine {
				if f.Attributes[AttrRuleID] == clip(r.Key()) {
					got = append(got, r.Title)
				}
			}
		}
		switch {
		case tc.Match && len(got) == 0:
			res.Failures = append(res.Failures, fmt.Sprintf("%s:%d: want a finding, got none%s", tf, line, note(tc.Note)))
		case !tc.Match && len(got) > 0:
			res.Failures = append(res.Failures, fmt.Sprintf("%s:%d: want no finding, got %q%s", tf, line, got, note(tc.Note)))
		}
	}
	if err := sc.Err(); err != nil {
		res.Failures = append(res.Failures, fmt.Sprintf("%s:%d: %v", tf, line+1, err))
	}
	if res.Cases == 0 && len(res.Failures) == 0 {
		res.Failures = append(res.Failures, fmt.Sprintf("%s: no cases", tf))
	}
	return res
}

func note(n string) string {
	if n == "" {
		return ""
	}
	return " (" + n + ")"
}

func recordID(r *Record) string {
	for _, p := range [][]string{{"eventID"}, {"request", "id"}} {
		if v, ok := r.Field(p); ok {
			return v
		}
	}
	return ""
}
