// Package clickhouse owns auditwatch's ClickHouse schema: the versioned DDL
// migrations for the events and findings tables, embedded in the binary.
//
// One set of files serves two dialects. Each migration is a text/template
// rendered with Dialect: current servers (and embedded chDB) get
// LowCardinality columns, bloom-filter skip indexes and non-replicated insert
// deduplication; 18.x servers, which have none of these, get plain String
// columns. Both get the same column names and types as seen by queries, so
// one set of queries and one insert path work everywhere. No type that 18.x
// lacks (IPv6, DateTime64, Map, JSON) is used at all.
package clickhouse

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"
)

//go:embed *.sql
var files embed.FS

// Dialect selects the DDL variant.
type Dialect struct {
	// DB is the database name (already validated as an identifier).
	DB string
	// Modern is true for servers >= 21.8 and chDB: skip indexes,
	// LowCardinality, TTL and non-replicated insert deduplication.
	Modern bool
}

// LC is the type of low-cardinality string columns.
func (d Dialect) LC() string {
	if d.Modern {
		return "LowCardinality(String)"
	}
	return "String"
}

// DialectFor picks the dialect from a server's version() string.
func DialectFor(db, version string) (Dialect, error) {
	major, minor, err := ParseVersion(version)
	if err != nil {
		return Dialect{}, err
	}
	return Dialect{DB: db, Modern: major > 21 || (major == 21 && minor >= 8)}, nil
}

// ParseVersion reads "18.16.1" or "26.7.3.1" into major and minor.
func ParseVersion(v string) (major, minor int, err error) {
	parts := strings.SplitN(strings.TrimSpace(v), ".", 3)
	if len(parts) < 2 {
		return 0, 0, fmt.Errorf("unrecognized server version %q", v)
	}
	if major, err = strconv.Atoi(parts[0]); err == nil {
		minor, err = strconv.Atoi(parts[1])
	}
	if err != nil {
		return 0, 0, fmt.Errorf("unrecognized server version %q: %w", v, err)
	}
	return major, minor, nil
}

// Migration is one versioned schema step.
type Migration struct {
	Version    int
	Name       string
	Statements []string
	// OncePerShard marks, by index, the statements a cluster runs on one
	// replica of each shard (ClusterMigrations); nil for one server.
	OncePerShard map[int]bool
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)

// ValidIdent reports whether s is a plain identifier safe to use unquoted.
func ValidIdent(s string) bool { return identRE.MatchString(s) }

var fileRE = regexp.MustCompile(`^(\d{4})_([a-z0-9_]+)\.sql$`)

// Migrations renders every migration for d, in version order.
func Migrations(d Dialect) ([]Migration, error) {
	if !ValidIdent(d.DB) {
		return nil, fmt.Errorf("database name %q is not a plain identifier", d.DB)
	}
	ents, err := fs.ReadDir(files, ".")
	if err != nil {
		return nil, err
	}
	var out []Migration
	for _, e := range ents {
		m := fileRE.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migration file %s: name must be NNNN_name.sql", e.Name())
		}
		v, _ := strconv.Atoi(m[1])
		src, err := files.ReadFile(e.Name())
		if err != nil {
			return nil, err
		}
		tpl, err := template.New(e.Name()).Option("missingkey=error").Parse(string(src))
		if err != nil {
			return nil, fmt.Errorf("migration %s: %w", e.Name(), err)
		}
		var buf bytes.Buffer
		if err := tpl.Execute(&buf, d); err != nil {
			return nil, fmt.Errorf("migration %s: %w", e.Name(), err)
		}
		out = append(out, Migration{Version: v, Name: m[2], Statements: SplitStatements(buf.String())})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i := 1; i < len(out); i++ {
		if out[i].Version == out[i-1].Version {
			return nil, fmt.Errorf("two migrations with version %d", out[i].Version)
		}
	}
	return out, nil
}

// SplitStatements splits a migration at semicolons that end a line and
// drops "--" comment lines. Migrations put no semicolon inside literals.
func SplitStatements(src string) []string {
	var out []string
	var cur strings.Builder
	flush := func() {
		if s := strings.TrimSpace(cur.String()); s != "" {
			out = append(out, s)
		}
		cur.Reset()
	}
	for _, line := range strings.Split(src, "\n") {
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, "--") {
			continue
		}
		if strings.HasSuffix(t, ";") {
			cur.WriteString(strings.TrimSuffix(strings.TrimRight(line, " \t"), ";"))
			flush()
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
	}
	flush()
	return out
}

// MigrationsTable is the DDL of the table recording applied migrations.
func MigrationsTable(d Dialect) string {
	return "CREATE TABLE IF NOT EXISTS " + d.DB + ".schema_migrations (version UInt32, name String, dialect String, applied_at DateTime('UTC')) ENGINE = MergeTree() ORDER BY version"
}

// Tables lists the day-partitioned tables, for retention.
var Tables = []string{"events", "principal_events", "ip_events", "findings", "access_keys"}

// TTL returns the ALTER statements that set a retention TTL on every
// partitioned table (current servers only; 18.x drops partitions instead);
// in a cluster on the replicated local tables.
func TTL(d Dialect, days int, clustered bool) []string {
	if !d.Modern || days <= 0 {
		return nil
	}
	var out []string
	for _, t := range LocalTables(clustered) {
		out = append(out, fmt.Sprintf("ALTER TABLE %s.%s MODIFY TTL day + toIntervalDay(%d)", d.DB, t, days))
	}
	return out
}
