package clickhouse

import (
	"fmt"
	"regexp"
	"strings"
)

// Cluster describes the replicated layout of the same migrations, for a
// ClickHouse cluster coordinated by ZooKeeper: every table T of the
// single-server schema becomes T_local, a Replicated*MergeTree whose
// replicas share ZKPath/<db>/T, and T itself a Distributed table over the
// cluster's T_local tables. Queries keep reading T (now through every
// shard); writers insert into T_local on the replicas of their shard.
type Cluster struct {
	// Name is the cluster in the servers' <remote_servers>.
	Name string
	// ZKPath is the ZooKeeper prefix of the tables' paths; it names the
	// shard with the {shard} macro.
	ZKPath string
	// Replica is the replica name, normally the {replica} macro.
	Replica string
}

// LocalSuffix names a table's replicated local part in a cluster.
const LocalSuffix = "_local"

var (
	createTableRE = regexp.MustCompile(`(?s)^CREATE TABLE IF NOT EXISTS (\w+)\.(\w+) (\(.*\))\s*ENGINE = (\w*)MergeTree\(([^)]*)\)(.*)$`)
	alterRE       = regexp.MustCompile(`(?s)^ALTER TABLE (\w+)\.(\w+) (.*)$`)
	createViewRE  = regexp.MustCompile(`(?s)^CREATE MATERIALIZED VIEW IF NOT EXISTS (\w+)\.(\w+) TO .*$`)
	dropRE        = regexp.MustCompile(`^DROP TABLE IF EXISTS (\w+)\.(\w+)$`)
	insertRE      = regexp.MustCompile(`(?s)^INSERT INTO \w+\.\w+ .*SELECT .*$`)
	columnAlterRE = regexp.MustCompile(`^(ADD|DROP|MODIFY|COMMENT|RENAME) COLUMN `)
)

// ClusterMigrations renders every migration for d in the cluster layout
// c. Each statement is marked for where it runs: on every server (its own
// tables, the Distributed tables, views) or once per shard (an ALTER of a
// replicated table, which its replicas share through ZooKeeper, and
// backfills, whose rows replicate). A statement of a form this does not
// know is an error, so a new migration cannot silently miss the cluster.
func ClusterMigrations(d Dialect, c Cluster) ([]Migration, error) {
	if !ValidIdent(c.Name) {
		return nil, fmt.Errorf("cluster name %q is not a plain identifier", c.Name)
	}
	for what, v := range map[string]string{"zookeeper path": c.ZKPath, "replica": c.Replica} {
		if v == "" || strings.ContainsAny(v, "'\\\n\x00") {
			return nil, fmt.Errorf("cluster %s %q is empty or holds a quote, backslash or newline", what, v)
		}
	}
	ms, err := Migrations(d)
	if err != nil {
		return nil, err
	}
	tables := map[string]bool{}
	local := func(sql string) string {
		return regexp.MustCompile(`\b`+regexp.QuoteMeta(d.DB)+`\.(\w+)\b`).ReplaceAllStringFunc(sql, func(m string) string {
			if tables[strings.TrimPrefix(m, d.DB+".")] {
				return m + LocalSuffix
			}
			return m
		})
	}
	out := make([]Migration, 0, len(ms))
	for _, m := range ms {
		cm := Migration{Version: m.Version, Name: m.Name, OncePerShard: map[int]bool{}}
		add := func(sql string, once bool) {
			if once {
				cm.OncePerShard[len(cm.Statements)] = true
			}
			cm.Statements = append(cm.Statements, sql)
		}
		for i, st := range m.Statements {
			switch {
			case createTableRE.MatchString(st):
				p := createTableRE.FindStringSubmatch(st)
				db, t, cols, variant, args, rest := p[1], p[2], p[3], p[4], p[5], p[6]
				eargs := fmt.Sprintf("'%s/%s/%s', '%s'", strings.TrimRight(c.ZKPath, "/"), db, t, c.Replica)
				if strings.TrimSpace(args) != "" {
					eargs += ", " + args
				}
				tables[t] = true
				add(fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s.%s%s %s\nENGINE = Replicated%sMergeTree(%s)%s", db, t, LocalSuffix, cols, variant, eargs, rest), false)
				add(fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s.%s AS %s.%s%s ENGINE = Distributed(%s, %s, %s%s)", db, t, db, t, LocalSuffix, c.Name, db, t, LocalSuffix), false)
			case alterRE.MatchString(st):
				p := alterRE.FindStringSubmatch(st)
				if !tables[p[2]] {
					return nil, fmt.Errorf("migration %04d_%s statement %d: ALTER of %s, which is no table of the schema", m.Version, m.Name, i+1, p[2])
				}
				add(fmt.Sprintf("ALTER TABLE %s.%s%s %s", p[1], p[2], LocalSuffix, p[3]), true)
				if columnAlterRE.MatchString(p[3]) { // the Distributed table has the same columns
					add(st, false)
				}
			case createViewRE.MatchString(st):
				// A view fires on its own server's inserts into the local
				// table; its target replicates like any other table.
				add(local(st), false)
			case dropRE.MatchString(st):
				p := dropRE.FindStringSubmatch(st)
				if tables[p[2]] {
					add(fmt.Sprintf("DROP TABLE IF EXISTS %s.%s%s", p[1], p[2], LocalSuffix), false)
					delete(tables, p[2])
				}
				add(st, false)
			case insertRE.MatchString(st):
				add(local(st), true)
			default:
				return nil, fmt.Errorf("migration %04d_%s statement %d has no cluster form:\n%s", m.Version, m.Name, i+1, st)
			}
		}
		out = append(out, cm)
	}
	return out, nil
}

// LocalTables lists the day-partitioned tables by the names that hold
// their rows: T, or T_local in a cluster.
func LocalTables(clustered bool) []string {
	if !clustered {
		return Tables
	}
	out := make([]string, len(Tables))
	for i, t := range Tables {
		out[i] = t + LocalSuffix
	}
	return out
}
