// Package store owns where events and findings are kept and how they are
// investigated: the storage config, opening the chosen backend (embedded
// chDB by default, a ClickHouse server, or off), schema migrations,
// retention, the batching Writer the pipeline feeds, and the catalog of
// runbook queries behind `auditwatch query`.
//
// Both backends speak one SQL dialect: the DDL in schema/clickhouse is
// rendered per server version and the runbook queries use only functions
// that 18.x servers and current ClickHouse share. User input reaches a
// query only as a bound {name:Type} parameter.
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"auditwatch/schema"
	chschema "auditwatch/schema/clickhouse"
	"auditwatch/store/chdb"
	"auditwatch/store/chsql"
	"auditwatch/store/clickhouse"
)

// ErrOff is returned by queries when storage is off.
var ErrOff = errors.New("storage is off (storage.backend: off)")

// Result is a query's answer.
type Result = chsql.Result

// Store keeps events and findings and answers runbook queries.
type Store interface {
	// InsertEvents writes one block; its deduplication token is derived
	// from its rows, so retrying the same block never doubles rows.
	InsertEvents(ctx context.Context, evs []schema.Event) error
	InsertFindings(ctx context.Context, fs []schema.Finding) error
	Migrate(ctx context.Context) error
	Query(ctx context.Context, name string, args QueryArgs) (*Result, error)
	Close() error
}

// backend is what a storage backend provides.
type backend interface {
	Version(ctx context.Context) (string, error)
	Modern() bool
	Exec(ctx context.Context, sql string) error
	InsertEvents(ctx context.Context, evs []schema.Event, token string) error
	InsertFindings(ctx context.Context, fs []schema.Finding, token string) error
	Query(ctx context.Context, sql string, ps chsql.Params) (*chsql.Result, error)
	Close() error
}

// Mode says whether a store is opened for writing or for read-only queries.
type Mode int

const (
	// ReadWrite opens for the pipeline and migrations.
	ReadWrite Mode = iota
	// ReadOnly opens for runbook queries: readonly=1 and the query limits.
	// An embedded store must exist and not be held by another process.
	ReadOnly
	// served is ReadOnly inside the process that holds the store (the
	// query endpoint of `run`).
	served
)

// DB is an open store on a backend.
type DB struct {
	b      backend
	cfg    Config
	logger *slog.Logger
	// unlock releases the embedded store's directory lock (nil otherwise).
	unlock func()
}

// Open opens the configured backend for writing (the pipeline, migrations).
// cfg gets its defaults applied and is validated first. reg, when not nil,
// gets auditwatch_store_info{backend}.
func Open(ctx context.Context, cfg Config, logger *slog.Logger, reg prometheus.Registerer) (Store, error) {
	st, err := open(ctx, cfg, ReadWrite, logger)
	if err != nil {
		return nil, err
	}
	if reg != nil {
		cfg.SetDefaults()
		info := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "auditwatch_store_info", Help: "The storage backend in use (value 1)."}, []string{"backend"})
		info.WithLabelValues(cfg.Backend).Set(1)
		if err := reg.Register(info); err != nil {
			st.Close()
			return nil, fmt.Errorf("storage metrics: %w", err)
		}
	}
	return st, nil
}

// OpenReadOnly opens the configured backend for runbook queries: every
// statement runs with readonly=1 and the storage.query limits.
func OpenReadOnly(ctx context.Context, cfg Config, logger *slog.Logger) (Store, error) {
	return open(ctx, cfg, ReadOnly, logger)
}

func open(ctx context.Context, cfg Config, mode Mode, logger *slog.Logger) (Store, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var (
		b   backend
		err error
	)
	switch cfg.Backend {
	case BackendOff:
		return offStore{}, nil
	case BackendCHDB:
		var lim *chdb.Limits
		if mode != ReadWrite {
			lim = &chdb.Limits{MaxExecutionTime: cfg.Query.MaxExecutionTime.D(), MaxResultRows: cfg.Query.MaxResultRows}
		}
		var unlock func()
		switch mode {
		case ReadWrite:
			if err := os.MkdirAll(cfg.CHDB.Path, 0o750); err != nil {
				return nil, fmt.Errorf("storage: create %s: %w", cfg.CHDB.Path, err)
			}
			// Wait out a query that opened the store a moment earlier.
			unlock, err = lockDir(ctx, cfg.CHDB.Path, cfg.Query.MaxExecutionTime.D()+10*time.Second)
		case ReadOnly:
			if err := storeExists(cfg.CHDB.Path); err != nil {
				return nil, err
			}
			unlock, err = lockDir(ctx, cfg.CHDB.Path, 0)
		}
		if err != nil {
			return nil, fmt.Errorf("storage: %w", err)
		}
		b, err = chdb.New(cfg.CHDB, cfg.Database, lim, logger)
		if err != nil {
			if unlock != nil {
				unlock()
			}
			return nil, fmt.Errorf("storage: open %s backend: %w", cfg.Backend, err)
		}
		return &DB{b: b, cfg: cfg, logger: logger, unlock: unlock}, nil
	case BackendClickHouse:
		var lim *clickhouse.Limits
		if mode != ReadWrite {
			lim = &clickhouse.Limits{MaxExecutionTime: cfg.Query.MaxExecutionTime.D(), MaxResultRows: cfg.Query.MaxResultRows}
		}
		b, err = clickhouse.New(ctx, cfg.ClickHouse, cfg.Database, lim, logger)
	}
	if err != nil {
		return nil, fmt.Errorf("storage: open %s backend: %w", cfg.Backend, err)
	}
	return &DB{b: b, cfg: cfg, logger: logger}, nil
}

// Dialect returns the DDL dialect of the backend.
func (d *DB) Dialect() chschema.Dialect {
	return chschema.Dialect{DB: d.cfg.Database, Modern: d.b.Modern()}
}

// InsertEvents writes one block with the deduplication token EventsToken(evs).
func (d *DB) InsertEvents(ctx context.Context, evs []schema.Event) error {
	return d.b.InsertEvents(ctx, evs, EventsToken(evs))
}

// InsertFindings writes one block of findings (token FindingsToken(fs)).
func (d *DB) InsertFindings(ctx context.Context, fs []schema.Finding) error {
	return d.b.InsertFindings(ctx, fs, FindingsToken(fs))
}

// Migrate creates the database and applies every migration not yet
// recorded in schema_migrations, then sets the retention TTL where the
// server supports it. Running it again changes nothing. With
// storage.clickhouse.cluster it migrates every replica in addr
// (migrateCluster).
func (d *DB) Migrate(ctx context.Context) error {
	if d.cfg.Backend == BackendClickHouse && d.cfg.ClickHouse.Cluster.Enabled() {
		return d.migrateCluster(ctx)
	}
	dia := d.Dialect()
	applied, err := prepareMigrations(ctx, d.b, dia)
	if err != nil {
		return err
	}
	ms, err := chschema.Migrations(dia)
	if err != nil {
		return err
	}
migrations:
	for _, m := range ms {
		if applied[uint64(m.Version)] {
			continue
		}
		for i, st := range m.Statements {
			if err := execMigration(ctx, d.b, st); err != nil {
				if d.migratedElsewhere(ctx, dia, m.Version) {
					continue migrations
				}
				return fmt.Errorf("migrate: %04d_%s statement %d: %w", m.Version, m.Name, i+1, err)
			}
		}
		if err := d.recordMigration(ctx, d.b, dia, m); err != nil {
			return err
		}
	}
	return d.setTTL(ctx, dia, false)
}

// migratedElsewhere reports whether another process records version as
// applied within migrateWait: stages starting together against one
// server migrate concurrently, and a statement of one fails on what the
// other's has already changed (a table renamed, a column added).
func (d *DB) migratedElsewhere(ctx context.Context, dia chschema.Dialect, version int) bool {
	deadline := time.Now().Add(migrateWait)
	for {
		applied, err := prepareMigrations(ctx, d.b, dia)
		if err == nil && applied[uint64(version)] {
			d.logger.Info("migration applied by another process", "version", version)
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// migrateWait is how long a failed migration statement waits for another
// process to record the migration.
const migrateWait = 30 * time.Second

// execMigration runs one migration statement. A migration is recorded
// after its last statement, so a process stopped in between (killed
// during its first start) runs it again: a column or index its ALTER adds
// that already exists was added then, and is not an error.
func execMigration(ctx context.Context, b backend, st string) error {
	err := b.Exec(ctx, st)
	if err != nil && alterAddRE.MatchString(st) && strings.Contains(err.Error(), "already exists") {
		return nil
	}
	return err
}

// alterAddRE matches a migration statement that adds a column or an index.
var alterAddRE = regexp.MustCompile(`(?i)^\s*ALTER\s+TABLE\s+\S+\s+ADD\s+(COLUMN|INDEX)\s`)

func (d *DB) setTTL(ctx context.Context, dia chschema.Dialect, clustered bool) error {
	for _, st := range chschema.TTL(dia, d.cfg.RetentionDays, clustered) {
		if err := d.b.Exec(ctx, st); err != nil {
			return fmt.Errorf("migrate: retention ttl: %w", err)
		}
	}
	return nil
}

func dialectName(dia chschema.Dialect) string {
	if dia.Modern {
		return "modern"
	}
	return "legacy"
}

// prepareMigrations creates the database and the migrations table on one
// server and returns the versions applied there.
func prepareMigrations(ctx context.Context, b backend, dia chschema.Dialect) (map[uint64]bool, error) {
	if err := b.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+dia.DB); err != nil {
		return nil, fmt.Errorf("migrate: create database %s: %w", dia.DB, err)
	}
	if err := b.Exec(ctx, chschema.MigrationsTable(dia)); err != nil {
		return nil, fmt.Errorf("migrate: migrations table: %w", err)
	}
	res, err := b.Query(ctx, "SELECT toUInt64(version) FROM "+dia.DB+".schema_migrations", nil)
	if err != nil {
		return nil, fmt.Errorf("migrate: read applied migrations: %w", err)
	}
	applied := map[uint64]bool{}
	for _, r := range res.Rows {
		if v, ok := r[0].(uint64); ok {
			applied[v] = true
		}
	}
	return applied, nil
}

func (d *DB) recordMigration(ctx context.Context, b backend, dia chschema.Dialect, m chschema.Migration) error {
	// INSERT … SELECT: the native protocol would wait for a data block after VALUES.
	rec := fmt.Sprintf("INSERT INTO %s.schema_migrations (version, name, dialect, applied_at) SELECT toUInt32(%d), %s, %s, toDateTime(%d)",
		dia.DB, m.Version, chsql.QuoteString(m.Name), chsql.QuoteString(dialectName(dia)), time.Now().Unix())
	if err := b.Exec(ctx, rec); err != nil {
		return fmt.Errorf("migrate: record %04d_%s: %w", m.Version, m.Name, err)
	}
	d.logger.Info("migration applied", "version", m.Version, "name", m.Name, "dialect", dialectName(dia))
	return nil
}

// DropExpired drops every partition whose newest day is older than the
// retention (day partitions, and the week partitions of principal_events
// and ip_events once their last day expired), on every server version
// (18.x has no TTL). It returns the partitions dropped.
func (d *DB) DropExpired(ctx context.Context, now time.Time) ([]string, error) {
	if d.cfg.RetentionDays <= 0 {
		return nil, nil
	}
	cutT := now.UTC().AddDate(0, 0, -d.cfg.RetentionDays)
	// A partition a TTL emptied has parts of no rows and no dates; it
	// goes too once it began a week before the cut.
	res, err := d.b.Query(ctx, `SELECT table, partition_id FROM system.parts
WHERE database = {db:String} AND active
GROUP BY table, partition_id
HAVING (max(max_date) < toDate({cut:String}) AND max(max_date) > toDate('1970-01-01'))
    OR (sum(rows) = 0 AND partition_id < {empty_cut:String})
ORDER BY table, partition_id`,
		chsql.Params{chsql.Str("db", d.cfg.Database), chsql.Str("cut", cutT.Format("2006-01-02")), chsql.Str("empty_cut", cutT.AddDate(0, 0, -7).Format("20060102"))})
	if err != nil {
		return nil, fmt.Errorf("retention: list partitions: %w", err)
	}
	var dropped []string
	for _, r := range res.Rows {
		table, _ := r[0].(string)
		part, _ := r[1].(string)
		if !chschema.ValidIdent(table) || len(part) != 8 || strings.Trim(part, "0123456789") != "" {
			continue
		}
		if err := d.b.Exec(ctx, fmt.Sprintf("ALTER TABLE %s.%s DROP PARTITION ID '%s'", d.cfg.Database, table, part)); err != nil {
			return dropped, fmt.Errorf("retention: drop %s partition %s: %w", table, part, err)
		}
		dropped = append(dropped, table+"/"+part)
	}
	return dropped, nil
}

// Exec runs a statement (tests and tools).
func (d *DB) Exec(ctx context.Context, sql string) error { return d.b.Exec(ctx, sql) }

// Raw runs a SELECT with bound parameters (dashboards tests and tools).
func (d *DB) Raw(ctx context.Context, sql string, ps chsql.Params) (*Result, error) {
	return d.b.Query(ctx, sql, ps)
}

// Close closes the backend (and releases the embedded store's lock).
func (d *DB) Close() error {
	err := d.b.Close()
	if d.unlock != nil {
		d.unlock()
	}
	return err
}

// storeExists reports ErrNoStore, naming the path, when the embedded data
// directory is missing: a read-only command never creates one.
func storeExists(path string) error {
	st, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: %s (nothing has been stored there; check --config or storage.chdb.path)", ErrNoStore, path)
	}
	if err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("storage: %s is not a directory", path)
	}
	return nil
}

// offStore discards writes and refuses queries.
type offStore struct{}

func (offStore) InsertEvents(context.Context, []schema.Event) error        { return nil }
func (offStore) InsertFindings(context.Context, []schema.Finding) error    { return nil }
func (offStore) Migrate(context.Context) error                             { return nil }
func (offStore) Query(context.Context, string, QueryArgs) (*Result, error) { return nil, ErrOff }
func (offStore) Close() error                                              { return nil }
