package store

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the SQL blocks of docs/RUNBOOK.md from the query catalog")

// runbookSQL is the SQL the runbook shows for a block name.
func runbookSQL(name string) (string, bool) {
	if q, v, ok := strings.Cut(name, "/"); ok {
		s, found := Queries[q].Variants[v]
		return s, found
	}
	q, ok := Queries[name]
	return q.SQL, ok && q.SQL != ""
}

// TestRunbookShowsEveryQuery keeps docs/RUNBOOK.md's SQL identical to the
// queries `auditwatch query` runs (go test ./store -run Runbook -update).
func TestRunbookShowsEveryQuery(t *testing.T) {
	path := filepath.Join("..", "docs", "RUNBOOK.md")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?s)<!-- sql:([a-z_/-]+) -->\n(.*?)<!-- /sql -->")
	seen := map[string]bool{}
	doc := re.ReplaceAllStringFunc(string(raw), func(m string) string {
		sm := re.FindStringSubmatch(m)
		sql, ok := runbookSQL(sm[1])
		if !ok {
			t.Errorf("RUNBOOK.md block %q names no query", sm[1])
			return m
		}
		seen[sm[1]] = true
		want := "<!-- sql:" + sm[1] + " -->\n```sql\n" + sql + "\n```\n<!-- /sql -->"
		if m != want && !*update {
			t.Errorf("RUNBOOK.md SQL for %s is out of date (run go test ./store -run Runbook -update)", sm[1])
		}
		return want
	})
	for _, n := range QueryNames() {
		if Queries[n].SQL != "" && !seen[n] {
			t.Errorf("RUNBOOK.md does not show query %s", n)
		}
		for v := range Queries[n].Variants {
			if !seen[n+"/"+v] {
				t.Errorf("RUNBOOK.md does not show query %s/%s", n, v)
			}
		}
	}
	if *update {
		if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
