package store

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"auditwatch/store/chsql"
)

type dashboard struct {
	Panels []struct {
		Title   string `json:"title"`
		Targets []struct {
			RawSQL string `json:"rawSql"`
			Expr   string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
	Templating struct {
		List []struct {
			Name string `json:"name"`
		} `json:"list"`
	} `json:"templating"`
}

func loadDashboards(t *testing.T) map[string]dashboard {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "dashboards", "*.json"))
	if err != nil || len(files) < 2 {
		t.Fatalf("dashboards: %v %v", files, err)
	}
	out := map[string]dashboard{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[filepath.Base(f)] = d
	}
	return out
}

var (
	reTimeFilter = regexp.MustCompile(`\$__timeFilter\(([a-z_]+)\)`)
	reInterval   = regexp.MustCompile(`\$__timeInterval\(([a-z_]+)\)`)
	reVar        = regexp.MustCompile(`\$\{([a-z_]+):sqlstring\}`)
)

// expandGrafana substitutes Grafana's $__interval_ms and the ClickHouse
// plugin's macros the way it
// renders them, and text variables with the sqlstring format (a quoted,
// escaped literal).
func expandGrafana(sql string, from, to time.Time, vars map[string]string, db string) string {
	f, tt := fmt.Sprintf("toDateTime(%d)", from.Unix()), fmt.Sprintf("toDateTime(%d)", to.Unix())
	sql = reTimeFilter.ReplaceAllString(sql, "$1 >= "+f+" AND $1 <= "+tt)
	sql = reInterval.ReplaceAllString(sql, "toStartOfInterval($1, INTERVAL 60 second)")
	sql = strings.ReplaceAll(sql, "$__interval_ms", "60000") // Grafana's global variable
	sql = strings.ReplaceAll(sql, "$__fromTime", f)
	sql = strings.ReplaceAll(sql, "$__toTime", tt)
	sql = reVar.ReplaceAllStringFunc(sql, func(m string) string {
		return chsql.QuoteString(vars[reVar.FindStringSubmatch(m)[1]])
	})
	return WithDB(sql, db)
}

// TestDashboardSQL runs every SQL panel of the secret-access board, with
// empty, known and hostile variables, on both stores.
func TestDashboardSQL(t *testing.T) {
	for _, bc := range backends {
		t.Run(bc.name, func(t *testing.T) { testDashboardSQL(t, bc) })
	}
}

func testDashboardSQL(t *testing.T, bc backendCase) {
	dbSeq++
	db := fmt.Sprintf("aw_dash_%d", dbSeq)
	st := openRW(t, bc.cfg(t, db))
	ctx := context.Background()
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	evs, fs := known(now)
	if err := st.InsertEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	if err := st.InsertFindings(ctx, fs); err != nil {
		t.Fatal(err)
	}
	d := loadDashboards(t)["secret-access.json"]
	var names []string
	for _, v := range d.Templating.List {
		names = append(names, v.Name)
	}
	if strings.Join(names, ",") != "principal,resource,ip" {
		t.Errorf("secret-access variables = %v, want principal, resource, ip", names)
	}
	varSets := []map[string]string{
		{},
		{"principal": "entity-alice", "resource": "secret/data/prod/db", "ip": "10.0.0.1"},
		{"principal": "x'); DROP TABLE events; --", "resource": "\\'", "ip": "\x1b"},
	}
	n := 0
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			if tg.RawSQL == "" {
				t.Errorf("panel %q has a target without SQL", p.Title)
				continue
			}
			for vi, vars := range varSets {
				sql := expandGrafana(tg.RawSQL, now.Add(-24*time.Hour), now, vars, db)
				if strings.Contains(sql, "$") {
					t.Fatalf("panel %q: unexpanded macro in %s", p.Title, sql)
				}
				res, err := st.Raw(ctx, sql, nil)
				if err != nil {
					t.Errorf("panel %q (variables %d): %v\n%s", p.Title, vi, err, sql)
					continue
				}
				if vi == 1 && len(res.Rows) == 0 && !strings.Contains(p.Title, "New principals") {
					t.Errorf("panel %q finds nothing for alice's known events", p.Title)
				}
				n++
			}
		}
	}
	if n < 8*len(varSets) {
		t.Errorf("ran %d panel queries, want at least %d", n, 8*len(varSets))
	}
	if _, err := st.Raw(ctx, "SELECT count() FROM "+db+".events", nil); err != nil {
		t.Fatalf("events table damaged by a hostile variable: %v", err)
	}
}

// The pipeline-health board's PromQL is checked against the metrics the
// running binary exports: cmd/auditwatch TestDashboardsAgainstBinary.
