package clickhouse

import (
	"strings"
	"testing"
)

func TestClusterMigrations(t *testing.T) {
	c := Cluster{Name: "aw_cluster", ZKPath: "/clickhouse/tables/{shard}/", Replica: "{replica}"}
	for _, modern := range []bool{false, true} {
		d := Dialect{DB: "aw", Modern: modern}
		single, err := Migrations(d)
		if err != nil {
			t.Fatal(err)
		}
		ms, err := ClusterMigrations(d, c)
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) != len(single) {
			t.Fatalf("%d cluster migrations for %d", len(ms), len(single))
		}
		all := map[string]bool{}
		for i, m := range ms {
			if m.Version != single[i].Version || len(m.Statements) < len(single[i].Statements) {
				t.Errorf("migration %d: %d statements for %d", m.Version, len(m.Statements), len(single[i].Statements))
			}
			for j, st := range m.Statements {
				all[st] = true
				// A statement run once per shard changes replicated tables only.
				if m.OncePerShard[j] && !strings.Contains(st, "_local") {
					t.Errorf("migration %d statement %d runs once per shard but names no local table:\n%s", m.Version, j+1, st)
				}
				if strings.Contains(st, "ENGINE = ReplacingMergeTree") || strings.Contains(st, "ENGINE = MergeTree") {
					t.Errorf("migration %d has a table that does not replicate:\n%s", m.Version, st)
				}
			}
		}
		joined := ""
		for st := range all {
			joined += st + "\n"
		}
		for _, want := range []string{
			"CREATE TABLE IF NOT EXISTS aw.events_local (",
			"ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/aw/events', '{replica}')",
			"CREATE TABLE IF NOT EXISTS aw.events AS aw.events_local ENGINE = Distributed(aw_cluster, aw, events_local)",
			"CREATE TABLE IF NOT EXISTS aw.findings AS aw.findings_local ENGINE = Distributed(aw_cluster, aw, findings_local)",
			"CREATE TABLE IF NOT EXISTS aw.resource_names AS aw.resource_names_local ENGINE = Distributed(aw_cluster, aw, resource_names_local)",
			"CREATE MATERIALIZED VIEW IF NOT EXISTS aw.access_keys_by_principal_mv TO aw.access_keys_local AS\nSELECT day, access_key, principal FROM aw.events_by_principal_local",
			"ALTER TABLE aw.events_local ADD COLUMN resource_name String DEFAULT resource AFTER resource",
			"ALTER TABLE aw.events ADD COLUMN resource_name String DEFAULT resource AFTER resource",
			"INSERT INTO aw.resource_names_local (resource_name, resource) SELECT DISTINCT resource_name, resource FROM aw.events_local",
		} {
			if !strings.Contains(joined, want) {
				t.Errorf("modern=%v: cluster DDL lacks %q", modern, want)
			}
		}
		if modern && !strings.Contains(joined, "ALTER TABLE aw.events_local ADD INDEX resource_name_idx") {
			t.Error("the skip index goes to the local table")
		}
		if strings.Contains(joined, "ALTER TABLE aw.events ADD INDEX") {
			t.Error("a skip index on the Distributed table")
		}
	}
	for _, bad := range []Cluster{{Name: "a-b", ZKPath: "/x", Replica: "r"}, {Name: "c", ZKPath: "/x'", Replica: "r"}, {Name: "c", ZKPath: "/x", Replica: ""}} {
		if _, err := ClusterMigrations(Dialect{DB: "aw"}, bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	if got := TTL(Dialect{DB: "aw", Modern: true}, 7, true); len(got) != len(Tables) || !strings.Contains(got[0], "aw.events_local MODIFY TTL") {
		t.Errorf("cluster TTL = %q", got)
	}
}
