package sigma

import (
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"auditwatch/internal/testenv"
)

// packPlaceholders are the expand placeholders the test-only rules of
// rules/testdata use (a deployment sets rules.placeholders).
var packPlaceholders = map[string][]string{"breakglass_users": {"breakglass-1", "breakglass-2"}}

// Every modifier the evaluator knows (FormModifiers) is one the parser
// accepts and reports in Forms.
func TestFormModifiersParse(t *testing.T) {
	val := map[string]string{"cidr": "10.0.0.0/8", "lt": "5", "lte": "5", "gt": "5", "gte": "5",
		"minute": "5", "hour": "5", "day": "5", "week": "5", "month": "5", "year": "2026",
		"exists": "true", "fieldref": "b", "base64offset": "x", "expand": "'%breakglass_users%'"}
	for _, m := range FormModifiers {
		v := val[m]
		if v == "" {
			v = "x"
		}
		key := "a|" + m
		if m == "base64offset" {
			key += "|contains"
		}
		if strings.HasPrefix(m, "re|") {
			key = "a|re|" + strings.TrimPrefix(m, "re|")
		}
		src := fmt.Sprintf("title: t\nlogsource: {product: vault}\ndetection:\n  s:\n    %s: %s\n  condition: s\n", key, v)
		rules, probs := ParseFile("m.yml", []byte(src), Options{Placeholders: packPlaceholders})
		if len(probs) > 0 || len(rules) != 1 {
			t.Errorf("%s: %v", m, probs)
			continue
		}
		if !slices.Contains(rules[0].Forms(), m) {
			t.Errorf("%s: forms %v", m, rules[0].Forms())
		}
	}
}

// The project's rules (rules/, and the test-only rules of rules/testdata
// for modifiers with no honest use on secret-store logs) use every
// modifier and condition form: computed from the parsed rules.
func TestPackCoversEveryForm(t *testing.T) {
	root := filepath.Join(testenv.RepoRoot(t), "rules")
	used := map[string][]string{} // form → rule files using it
	pack := map[string]bool{}     // forms used outside testdata
	for _, dir := range []string{root, filepath.Join(root, "testdata")} {
		set, res, err := Check([]string{dir}, Options{Placeholders: packPlaceholders})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range append(res.Invalid, res.Unsupported...) {
			t.Errorf("%v", p)
		}
		for _, r := range set.Rules {
			for _, f := range r.Forms() {
				used[f] = append(used[f], filepath.Base(r.File))
				if dir == root {
					pack[f] = true
				}
			}
		}
		// the test-only rules run their examples too
		for _, tr := range RunTests(set, res.Files) {
			if tr.Missing {
				t.Errorf("%s: no examples", tr.File)
			}
			for _, f := range tr.Failures {
				t.Error(f)
			}
		}
	}
	var missing, testOnly []string
	for _, f := range append(slices.Clone(FormModifiers), FormConditions...) {
		switch {
		case len(used[f]) == 0:
			missing = append(missing, f)
		case !pack[f]:
			testOnly = append(testOnly, f)
		}
	}
	if len(missing) > 0 {
		t.Errorf("no rule uses %q", missing)
	}
	sort.Strings(testOnly)
	t.Logf("only in rules/testdata: %q", testOnly)
}
