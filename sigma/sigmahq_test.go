package sigma

import (
	"path/filepath"
	"testing"

	"auditwatch/internal/testenv"
)

// TestSigmaHQCloudTrail loads SigmaHQ's 57 published CloudTrail rules
// (../shared, DRL 1.1) and fires each on a record built from its detection
// to match it, and not on one built not to match it.
func TestSigmaHQCloudTrail(t *testing.T) {
	dir := filepath.Join(testenv.SharedTestdata(t), "sigma", "cloudtrail")
	files, err := Files([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 57 {
		t.Fatalf("%d rule files in %s, want 57", len(files), dir)
	}
	set, err := Load([]string{dir}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range set.Problems {
		t.Errorf("skipped: %v", p)
	}
	if len(set.Rules) != 57 {
		t.Fatalf("%d rules loaded, want 57", len(set.Rules))
	}
	var p Parser
	for _, r := range set.Rules {
		if r.License != "DRL-1.1" {
			t.Errorf("%s: license %q, want DRL-1.1 from the folder's LICENSE", r.File, r.License)
		}
		if r.Author == "" {
			t.Errorf("%s: no author", r.File)
		}
		pos := buildRecord(t, r, true)
		rec := mustRecord(t, &p, pos)
		if !hitBy(set, rec, r) {
			t.Errorf("%s: does not fire on %s", filepath.Base(r.File), describe(pos))
		}
		neg := buildRecord(t, r, false)
		rec = mustRecord(t, &p, neg)
		if hitBy(set, rec, r) {
			t.Errorf("%s: fires on %s", filepath.Base(r.File), describe(neg))
		}
	}
}

func hitBy(s *Set, rec *Record, r *Rule) bool {
	for _, h := range s.Match(rec, nil) {
		if h.Rule == r {
			if !r.Match(rec) {
				panic("index and rule disagree")
			}
			return true
		}
	}
	// the index must not hide a match
	if r.Match(rec) {
		panic("rule matches but the index did not offer it: " + r.File)
	}
	return false
}
