package sigma

import (
	"path/filepath"
	"testing"

	"auditwatch/internal/testenv"
)

// TestRulePack loads the project's own rules (rules/) and runs every rule
// file's examples: each file has some, positive and negative.
func TestRulePack(t *testing.T) {
	dir := filepath.Join(testenv.RepoRoot(t), "rules")
	set, res, err := Check([]string{dir}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range append(res.Invalid, res.Unsupported...) {
		t.Errorf("%v", p)
	}
	if len(set.Rules) < 10 {
		t.Fatalf("%d rules loaded", len(set.Rules))
	}
	for _, r := range RunTests(set, res.Files) {
		if r.Missing {
			t.Errorf("%s: missing", r.File)
		}
		for _, f := range r.Failures {
			t.Error(f)
		}
	}
	// every example file has both kinds of case
	// (checked on the parsed files: a file of only positives proves little)
	for _, f := range res.Files {
		pos, neg := countCases(t, TestsFile(f))
		if pos == 0 || neg == 0 {
			t.Errorf("%s: %d positive and %d negative examples; want both", TestsFile(f), pos, neg)
		}
	}
}
