package clickhouse

import (
	"strings"
	"testing"
)

func TestMigrationsRenderPerDialect(t *testing.T) {
	legacy, err := Migrations(Dialect{DB: "aw", Modern: false})
	if err != nil {
		t.Fatal(err)
	}
	modern, err := Migrations(Dialect{DB: "aw", Modern: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(legacy) != len(modern) || len(legacy) < 3 {
		t.Fatalf("%d legacy and %d modern migrations", len(legacy), len(modern))
	}
	// Versions increase; numbers are reserved per change, so there may
	// be gaps (Migrate applies every version not recorded as applied).
	for i, m := range legacy {
		if i == 0 && m.Version != 1 || i > 0 && m.Version <= legacy[i-1].Version {
			t.Errorf("migration %s has version %d after %d", m.Name, m.Version, map[bool]int{true: 0, false: legacy[max(i-1, 0)].Version}[i == 0])
		}
		for _, st := range m.Statements {
			for _, bad := range []string{"LowCardinality", "INDEX", "TTL", "IPv6", "DateTime64", "Map(", "SETTINGS", "{{", ";"} {
				if strings.Contains(strings.ReplaceAll(st, "SETTINGS index_granularity = 1024", ""), bad) {
					t.Errorf("legacy %s contains %q:\n%s", m.Name, bad, st)
				}
			}
			if !strings.Contains(st, "aw.") {
				t.Errorf("legacy %s statement does not name the database:\n%s", m.Name, st)
			}
		}
	}
	all := ""
	for _, m := range modern {
		all += strings.Join(m.Statements, "\n")
	}
	for _, want := range []string{"LowCardinality(String)", "TYPE bloom_filter", "non_replicated_deduplication_window", "PARTITION BY toYYYYMMDD(day)", "CREATE MATERIALIZED VIEW IF NOT EXISTS aw.events_by_principal_mv", "DROP TABLE IF EXISTS aw.events_by_principal_mv", "CREATE MATERIALIZED VIEW IF NOT EXISTS aw.access_keys_by_principal_mv TO aw.access_keys"} {
		if !strings.Contains(all, want) {
			t.Errorf("modern DDL lacks %q", want)
		}
	}
	if _, err := Migrations(Dialect{DB: "a; DROP", Modern: true}); err == nil {
		t.Error("non-identifier database accepted")
	}
}

func TestDialectFor(t *testing.T) {
	for v, modern := range map[string]bool{"18.16.1": false, "21.7.2": false, "21.8.1": true, "26.7.3.1": true} {
		d, err := DialectFor("aw", v)
		if err != nil || d.Modern != modern {
			t.Errorf("DialectFor(%s) = %+v, %v; want modern=%v", v, d, err, modern)
		}
	}
	if _, err := DialectFor("aw", "x"); err == nil {
		t.Error("bad version accepted")
	}
	if got := TTL(Dialect{DB: "aw", Modern: true}, 90, false); len(got) != len(Tables) || !strings.Contains(got[0], "toIntervalDay(90)") {
		t.Errorf("TTL = %v", got)
	}
	if got := TTL(Dialect{DB: "aw"}, 90, false); got != nil {
		t.Errorf("legacy TTL = %v", got)
	}
}

func TestSplitStatements(t *testing.T) {
	got := SplitStatements("-- comment;\nCREATE a;\n\nCREATE b\n  x;\nCREATE c\n")
	if strings.Join(got, "|") != "CREATE a|CREATE b\n  x|CREATE c" {
		t.Errorf("SplitStatements = %q", got)
	}
}
