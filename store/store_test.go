package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"auditwatch/config/duration"
	"auditwatch/schema"
	chschema "auditwatch/schema/clickhouse"
	"auditwatch/store/chsql"
	"auditwatch/store/chtest"
)

func TestMain(m *testing.M) { os.Exit(chtest.Main(m)) }

// backendCase opens a fresh database on one backend.
type backendCase struct {
	name string
	cfg  func(t *testing.T, db string) Config
}

var dbSeq int

func chdbCfg(t *testing.T, db string) Config {
	return Config{Backend: BackendCHDB, Database: db, CHDB: chdbConfig(t)}
}

func serverCfg(t *testing.T, db string) Config {
	srv := chtest.StartServer(t)
	c := Config{Backend: BackendClickHouse, Database: db}
	c.ClickHouse.Addr = []string{srv.Addr}
	return c
}

var backends = []backendCase{{"chdb", chdbCfg}, {"clickhouse-server", serverCfg}}

func openRW(t *testing.T, cfg Config) *DB {
	t.Helper()
	st, err := Open(context.Background(), cfg, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st.(*DB)
}

// known is the data every runbook query is checked against.
func known(now time.Time) ([]schema.Event, []schema.Finding) {
	at := func(ago time.Duration) time.Time { return now.Add(-ago).Truncate(time.Second) }
	ev := func(id string, ago time.Duration, principal, name, resource, ip, outcome string) schema.Event {
		e := schema.Event{Time: at(ago), Source: schema.SourceVault, ID: id, Principal: principal, PrincipalName: name,
			Action: "vault:read", Resource: resource, SourceIP: ip, SourceIPRaw: ip, Outcome: outcome, Policies: []string{"default"}}
		if outcome == schema.OutcomeFailure {
			e.Error, e.FailureKind = "permission denied", schema.FailurePermissionDenied
		}
		return e
	}
	hostile := "secret/data/x'); DROP TABLE events; --\n\x1b[31mred\t\\"
	evs := []schema.Event{
		ev("a1", 2*time.Hour, "entity-alice", "alice", "secret/data/prod/db", "10.0.0.1", "success"),
		ev("a2", 3*time.Hour, "entity-alice", "alice", "secret/data/prod/db", "10.0.0.1", "success"),
		ev("a3", 30*time.Minute, "entity-alice", "alice", "secret/data/prod/db", "10.0.0.1", "failure"),
		ev("a4", 5*time.Hour, "entity-alice", "alice", "secret/data/prod/api", "10.0.0.2", "success"),
		ev("a-old", 10*24*time.Hour, "entity-alice", "alice", "secret/data/prod/db", "10.0.0.1", "success"),
		ev("b1", 4*time.Hour, "entity-bob", "bob", "secret/data/prod/db", "192.0.2.7", "success"),
		ev("d1", 6*time.Hour, "entity-dave", "dave", hostile, "2001:db8::5", "success"),
	}
	for i, o := range []string{"success", "failure"} {
		e := ev(fmt.Sprintf("c%d", i), time.Duration(20+i)*time.Minute, "arn:aws:iam::111122223333:user/carol", "carol",
			"arn:aws:secretsmanager:us-east-1:111122223333:secret:payments", "203.0.113.9", o)
		e.Source, e.Action, e.AccessKey = schema.SourceCloudTrail, "secretsmanager:GetSecretValue", "AKIAEXAMPLEKEY000001"
		if o == "failure" {
			e.Error, e.FailureKind = "AccessDenied", schema.FailurePermissionDenied
		}
		evs = append(evs, e)
	}
	fs := []schema.Finding{
		{ID: "f1", Detector: schema.DetectorAuthFailureSpike, Severity: schema.SeverityMedium, Time: at(time.Hour), Principal: "entity-alice", Resource: "secret/data/prod/db",
			SourceIP: "10.0.0.1", Count: 5, DedupeKey: "burst-1", Revision: 0, Summary: "5 failures", EventIDs: []string{"a3"},
			FirstTime: at(2 * time.Hour), LastTime: at(time.Hour), Attributes: map[string]string{"window": "5m"}, IncidentID: "inc-1"},
		{ID: "f2", Detector: schema.DetectorAuthFailureSpike, Severity: schema.SeverityHigh, Time: at(50 * time.Minute), Principal: "entity-alice", Resource: "secret/data/prod/db",
			SourceIP: "10.0.0.1", Count: 9, DedupeKey: "burst-1", Revision: 1, Summary: "9 failures", FirstTime: at(2 * time.Hour), LastTime: at(50 * time.Minute)},
		{ID: "f3", Detector: schema.DetectorUnexpectedIP, Severity: schema.SeverityHigh, Time: at(20 * time.Minute), Principal: "arn:aws:iam::111122223333:user/carol",
			SourceIP: "203.0.113.9", Count: 1, DedupeKey: "ip-1", Summary: "new IP"},
		{ID: "f-old", Detector: schema.DetectorUnexpectedIP, Severity: schema.SeverityLow, Time: at(48 * time.Hour), DedupeKey: "ip-old", Summary: "old"},
	}
	return evs, fs
}

// table renders a result as sorted "a|b|c" lines of the chosen columns.
func table(t *testing.T, r *Result, cols ...string) []string {
	t.Helper()
	idx := make([]int, len(cols))
	for i, c := range cols {
		idx[i] = -1
		for j, rc := range r.Columns {
			if rc == c {
				idx[i] = j
			}
		}
		if idx[i] < 0 {
			t.Fatalf("result has no column %q (has %v)", c, r.Columns)
		}
	}
	var out []string
	for _, row := range r.Rows {
		var parts []string
		for _, i := range idx {
			parts = append(parts, fmt.Sprint(row[i]))
		}
		out = append(out, strings.Join(parts, "|"))
	}
	sort.Strings(out)
	return out
}

func eq(t *testing.T, what string, got, want []string) {
	t.Helper()
	sort.Strings(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s:\n got  %q\n want %q", what, got, want)
	}
}

func TestBackends(t *testing.T) {
	for _, bc := range backends {
		t.Run(bc.name, func(t *testing.T) {
			dbSeq++
			db := fmt.Sprintf("aw_it_%d", dbSeq)
			cfg := bc.cfg(t, db)
			ctx := context.Background()
			st := openRW(t, cfg)
			for i := 0; i < 2; i++ { // idempotent
				if err := st.Migrate(ctx); err != nil {
					t.Fatalf("migrate run %d: %v", i+1, err)
				}
			}
			r, err := st.Raw(ctx, "SELECT toUInt64(count()) FROM "+db+".schema_migrations", nil)
			if err != nil {
				t.Fatal(err)
			}
			ms, err := chschema.Migrations(st.Dialect())
			if err != nil {
				t.Fatal(err)
			}
			if len(ms) < 5 || r.Rows[0][0] != uint64(len(ms)) {
				t.Fatalf("schema_migrations has %v rows after two runs, want %d", r.Rows[0][0], len(ms))
			}

			now := time.Now().UTC()
			evs, fs := known(now)
			w, err := NewWriter(st, BatchConfig{MaxRows: 4, MaxInterval: duration.Duration(time.Hour), RetryBackoff: duration.Duration(time.Millisecond)}, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Add(ctx, evs); err != nil {
				t.Fatal(err)
			}
			if err := w.AddFindings(ctx, fs); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(ctx); err != nil {
				t.Fatal(err)
			}
			// A retried block (the writer's first: same rows, same token) and
			// an overlapping block must not change any answer.
			for _, blk := range [][]schema.Event{evs[:4], evs[:3]} {
				if err := st.InsertEvents(ctx, blk); err != nil {
					t.Fatal(err)
				}
			}
			if err := st.InsertFindings(ctx, fs[:4]); err != nil {
				t.Fatal(err)
			}
			// The incident id is stored with its finding (migration 0010).
			if r, err := st.Raw(ctx, "SELECT any(incident_id) FROM "+db+".findings WHERE id = 'f1'", nil); err != nil || len(r.Rows) != 1 || r.Rows[0][0] != "inc-1" {
				t.Errorf("incident_id of f1: %v %v, want inc-1", r, err)
			}
			if st.Dialect().Modern { // the server drops the retried block itself
				r, err := st.Raw(ctx, "SELECT toUInt64(count()) FROM "+db+".events", nil)
				if err != nil {
					t.Fatal(err)
				}
				if want := uint64(len(evs) + 3); r.Rows[0][0] != want {
					t.Errorf("events rows = %v, want %d: the retried block was not deduplicated by its token", r.Rows[0][0], want)
				}
			}

			ro, err := OpenReadOnly(ctx, cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer ro.Close()
			if err := ro.(*DB).Exec(ctx, "CREATE TABLE "+db+".evil (a UInt8) ENGINE = Memory"); err == nil {
				t.Error("read-only store executed CREATE TABLE")
			}
			q := func(name string, a QueryArgs) *Result {
				t.Helper()
				res, err := ro.Query(ctx, name, a)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				return res
			}
			day, week, month := now.Add(-24*time.Hour), now.Add(-7*24*time.Hour), now.Add(-30*24*time.Hour)

			eq(t, "who-accessed", table(t, q("who-accessed", QueryArgs{Resource: "secret/data/prod/db", Since: day}), "principal", "source_ip", "events", "failures"),
				[]string{"entity-alice|10.0.0.1|3|1", "entity-bob|192.0.2.7|1|0"})
			eq(t, "who-accessed 30d", table(t, q("who-accessed", QueryArgs{Resource: "secret/data/prod/db", Since: month}), "principal", "events"),
				[]string{"entity-alice|4", "entity-bob|1"})
			hostile := evs[6].Resource
			eq(t, "who-accessed hostile resource", table(t, q("who-accessed", QueryArgs{Resource: hostile, Since: day}), "principal", "source_ip", "events"),
				[]string{"entity-dave|2001:db8::5|1"})
			eq(t, "principal", table(t, q("principal", QueryArgs{Principal: "entity-alice", Since: week}), "action", "resource", "events", "failures"),
				[]string{"vault:read|secret/data/prod/db|3|1", "vault:read|secret/data/prod/api|1|0"})
			eq(t, "ip cidr", table(t, q("ip", QueryArgs{IP: "10.0.0.0/24", Since: week}), "principal", "resource", "events"),
				[]string{"entity-alice|secret/data/prod/db|3", "entity-alice|secret/data/prod/api|1"})
			eq(t, "ip single", table(t, q("ip", QueryArgs{IP: "192.0.2.7", Since: week}), "principal", "events"),
				[]string{"entity-bob|1"})
			eq(t, "ip v6", table(t, q("ip", QueryArgs{IP: "2001:db8::/32", Since: week}), "principal", "events"),
				[]string{"entity-dave|1"})
			eq(t, "blast-radius key", table(t, q("blast-radius", QueryArgs{AccessKey: "AKIAEXAMPLEKEY000001", Since: month}), "kind", "value", "events", "failures"),
				[]string{
					"resource|arn:aws:secretsmanager:us-east-1:111122223333:secret:payments|2|1",
					"source_ip|203.0.113.9|2|1",
					"principal|arn:aws:iam::111122223333:user/carol|2|1",
					"action|secretsmanager:GetSecretValue|2|1",
					"failure|secretsmanager:GetSecretValue arn:aws:secretsmanager:us-east-1:111122223333:secret:payments permission_denied AccessDenied|1|1",
				})
			eq(t, "blast-radius principal", table(t, q("blast-radius", QueryArgs{Principal: "entity-alice", Since: month}), "kind", "value", "events"),
				[]string{"resource|secret/data/prod/db|4", "resource|secret/data/prod/api|1", "source_ip|10.0.0.1|4", "source_ip|10.0.0.2|1",
					"principal|entity-alice|5", "action|vault:read|5", "failure|vault:read secret/data/prod/db permission_denied permission denied|1"})
			eq(t, "failures", table(t, q("failures", QueryArgs{Since: now.Add(-time.Hour)}), "principal", "source_ip", "failures"),
				[]string{"entity-alice|10.0.0.1|1", "arn:aws:iam::111122223333:user/carol|203.0.113.9|1"})
			eq(t, "findings", table(t, q("findings", QueryArgs{Since: day}), "detector", "dedupe_key", "revision", "count"),
				[]string{"auth_failure_spike|burst-1|1|9", "unexpected_ip|ip-1|0|1"})

			// Every value comes back typed, times in UTC.
			r = q("who-accessed", QueryArgs{Resource: "secret/data/prod/db", Since: day, Limit: 1})
			if len(r.Rows) != 1 {
				t.Fatalf("limit 1 gave %d rows", len(r.Rows))
			}
			if ts, ok := r.Rows[0][7].(time.Time); !ok || !ts.Equal(evs[2].Time) {
				t.Errorf("last_seen = %#v, want %v", r.Rows[0][7], evs[2].Time)
			}
			if _, err := ro.Query(ctx, "who-accessed", QueryArgs{Since: day}); err == nil {
				t.Error("who-accessed without a resource succeeded")
			}
		})
	}
}

func TestBoundStringsRoundTrip(t *testing.T) {
	nasty := []string{"", "'", "\\", "\\'", "'; DROP TABLE x; --", "\x00\x01\x1b[2J", "\xff\xfe", "tab\there\nnl\r", "{x:String}", "é✓"}
	for _, bc := range backends {
		t.Run(bc.name, func(t *testing.T) {
			dbSeq++
			st := openRW(t, bc.cfg(t, fmt.Sprintf("aw_rt_%d", dbSeq)))
			for _, s := range nasty {
				r, err := st.Raw(context.Background(), "SELECT {s:String} = unhex({h:String}), toUInt64(length({s:String}))",
					chsql.Params{chsql.Str("s", s), chsql.Str("h", fmt.Sprintf("%X", s))})
				if err != nil {
					t.Fatalf("%q: %v", s, err)
				}
				if fmt.Sprint(r.Rows[0][0]) != "1" || r.Rows[0][1] != uint64(len(s)) {
					t.Errorf("%q arrived altered: %v", s, r.Rows[0])
				}
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	c := Config{Backend: "mysql", Database: "bad-name", RetentionDays: -1}
	err := c.Validate()
	for _, want := range []string{"storage.backend", "storage.database", "storage.retention_days", "storage.batch.max_rows"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to name %s", err, want)
		}
	}
	var d Config
	d.SetDefaults()
	if err := d.Validate(); err != nil || d.Backend != BackendCHDB {
		t.Errorf("defaults: backend %q, Validate() = %v", d.Backend, err)
	}
}

func TestRetention(t *testing.T) {
	for _, bc := range backends {
		t.Run(bc.name, func(t *testing.T) {
			dbSeq++
			db := fmt.Sprintf("aw_ret_%d", dbSeq)
			cfg := bc.cfg(t, db)
			cfg.RetentionDays = 30
			st := openRW(t, cfg)
			ctx := context.Background()
			if err := st.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			now := time.Now().UTC()
			evs := chtest.NewGen(5, now.Add(-100*24*time.Hour), time.Hour).Events(10)
			evs = append(evs, chtest.NewGen(6, now.Add(-2*time.Hour), time.Hour).Events(10)...)
			if err := st.InsertEvents(ctx, evs); err != nil {
				t.Fatal(err)
			}
			dropped, err := st.DropExpired(ctx, now)
			if err != nil {
				t.Fatal(err)
			}
			if len(dropped) == 0 {
				r, _ := st.Raw(ctx, "SELECT table, partition_id, toString(max_date), toUInt64(rows) FROM system.parts WHERE database = {db:String} AND active ORDER BY table", chsql.Params{chsql.Str("db", db)})
				t.Fatalf("no partition dropped; parts: %v", r)
			}
			r, err := st.Raw(ctx, "SELECT toUInt64(count()) FROM "+db+".events", nil)
			if err != nil {
				t.Fatal(err)
			}
			if r.Rows[0][0] != uint64(10) {
				t.Errorf("%v rows left after retention, want the 10 recent ones (dropped %v)", r.Rows[0][0], dropped)
			}
			for _, tb := range []string{"principal_events", "ip_events"} { // week partitions
				r, err = st.Raw(ctx, "SELECT toUInt64(count()) FROM "+db+"."+tb, nil)
				if err != nil || r.Rows[0][0] != uint64(10) {
					t.Errorf("%s after retention: %v %v", tb, r, err)
				}
			}
			if st.Dialect().Modern {
				r, err := st.Raw(ctx, "SELECT create_table_query FROM system.tables WHERE database = {db:String} AND name = 'events'", chsql.Params{chsql.Str("db", db)})
				if err != nil || len(r.Rows) != 1 || !strings.Contains(fmt.Sprint(r.Rows[0][0]), "TTL") {
					t.Errorf("modern events table has no TTL: %v %v", r, err)
				}
			}
		})
	}
}

func TestLoadConfigFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("sources: []\nstorage:\n  backend: clickhouse\n  database: audit\n  clickhouse:\n    addr: [db:9440]\n    password: {env: CH_PW}\n    tls: {enabled: true}\n  batch: {max_rows: 1000, max_interval: 2s}\n"), 0o644)
	c, err := LoadConfigFile(good)
	if err != nil {
		t.Fatal(err)
	}
	if c.Backend != BackendClickHouse || c.ClickHouse.Addr[0] != "db:9440" || c.ClickHouse.Password.Env != "CH_PW" || !c.ClickHouse.TLS.Enabled ||
		c.Batch.MaxRows != 1000 || c.Batch.MaxInterval.D() != 2*time.Second || c.Query.MaxResultRows == 0 {
		t.Errorf("decoded %+v", c)
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("storage:\n  backend: chdb\n  pasword: x\n"), 0o644)
	if _, err := LoadConfigFile(bad); err == nil || !strings.Contains(err.Error(), "pasword") || !strings.Contains(err.Error(), bad) {
		t.Errorf("unknown key: %v", err)
	}
	none := filepath.Join(dir, "none.yaml")
	os.WriteFile(none, []byte("sources: []\n"), 0o644)
	if c, err := LoadConfigFile(none); err != nil || c.Backend != BackendCHDB {
		t.Errorf("no storage section: %+v %v", c, err)
	}
}

// A store created at migration 0003 (events_by_principal filled by a
// view) with events in it, migrated to the current schema: 0004 backfills
// access_keys, 0005 replaces the views, 0018 copies events_by_principal
// into principal_events and 0019 events into ip_events; afterwards each
// table has one writer, the runbook queries answer from the copies and a
// new block lands once in each table.
func TestUpgradeFrom0003(t *testing.T) {
	for _, bc := range backends {
		t.Run(bc.name, func(t *testing.T) {
			db, st, dia, ms := unmigrated(t, bc, "aw_up")
			ctx := context.Background()
			for _, m := range ms[:3] {
				for _, q := range m.Statements {
					if err := st.Exec(ctx, q); err != nil {
						t.Fatalf("%04d: %v", m.Version, err)
					}
				}
				if err := st.recordMigration(ctx, st.b, dia, m); err != nil {
					t.Fatal(err)
				}
			}
			now := time.Now().UTC()
			evs, _ := known(now)
			var sel []string
			for _, e := range evs {
				ip := chsql.IP16(e.SourceIP)
				sel = append(sel, fmt.Sprintf("SELECT toDate(toDateTime(%d, 'UTC')), toDateTime(%d, 'UTC'), %s, %s, %s, %s, %s, %s, %s, toFixedString(unhex('%X'), 16), %s, %s, %s",
					e.Time.Unix(), e.Time.Unix(), chsql.QuoteString(e.ID), chsql.QuoteString(e.Principal), chsql.QuoteString(e.PrincipalName), chsql.QuoteString(e.AccessKey),
					chsql.QuoteString(e.Action), chsql.QuoteString(e.Resource), chsql.QuoteString(e.SourceIP), ip[:], chsql.QuoteString(e.Outcome), chsql.QuoteString(e.Error), chsql.QuoteString(e.FailureKind)))
			}
			if err := st.Exec(ctx, "INSERT INTO "+db+".events (day, time, id, principal, principal_name, access_key, action, resource, source_ip, ip, outcome, error, failure_kind) "+strings.Join(sel, " UNION ALL ")); err != nil {
				t.Fatal(err)
			}
			if err := st.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			count := func(sql string) uint64 {
				t.Helper()
				r, err := st.Raw(ctx, sql, nil)
				if err != nil {
					t.Fatal(err)
				}
				return r.Rows[0][0].(uint64)
			}
			for _, tb := range []string{"principal_events", "ip_events"} {
				if n := count("SELECT toUInt64(uniqExact(id)) FROM " + db + "." + tb); n != uint64(len(evs)) {
					t.Errorf("%s holds %d events after the upgrade, want %d", tb, n, len(evs))
				}
			}
			r, err := st.Raw(ctx, "SELECT DISTINCT access_key, principal FROM "+db+".access_keys", nil)
			if err != nil {
				t.Fatal(err)
			}
			eq(t, "access_keys after backfill", table(t, r, "access_key", "principal"), []string{"AKIAEXAMPLEKEY000001|arn:aws:iam::111122223333:user/carol"})
			r, err = st.Raw(ctx, "SELECT name, engine FROM system.tables WHERE database = {db:String} AND (engine = 'MaterializedView' OR name LIKE 'events%') ORDER BY name", chsql.Params{chsql.Str("db", db)})
			if err != nil {
				t.Fatal(err)
			}
			eq(t, "views and event tables", table(t, r, "name", "engine"), []string{"access_keys_by_principal_events_mv|MaterializedView", "events|ReplacingMergeTree"})
			month := now.Add(-30 * 24 * time.Hour)
			res, err := st.Query(ctx, "blast-radius", QueryArgs{AccessKey: "AKIAEXAMPLEKEY000001", Since: month})
			if err != nil {
				t.Fatal(err)
			}
			eq(t, "blast-radius by key after the upgrade", table(t, res, "kind", "events"), []string{"action|2", "failure|1", "principal|2", "resource|2", "source_ip|2"})
			res, err = st.Query(ctx, "ip", QueryArgs{IP: "2001:db8::/32", Since: month})
			if err != nil {
				t.Fatal(err)
			}
			eq(t, "ip after the upgrade", table(t, res, "principal", "events"), []string{"entity-dave|1"})
			// A block written now lands once in each table (no view copies
			// it a second time) and feeds access_keys through the new view.
			later := []schema.Event{evs[0]}
			later[0].ID, later[0].AccessKey = "after-upgrade", "AKIAEXAMPLEKEY000002"
			if err := st.InsertEvents(ctx, later); err != nil {
				t.Fatal(err)
			}
			for _, tb := range []string{"events", "principal_events", "ip_events"} {
				if n := count("SELECT toUInt64(count()) FROM " + db + "." + tb + " WHERE id = 'after-upgrade'"); n != 1 {
					t.Errorf("%s rows of the new block: %d, want 1", tb, n)
				}
			}
			r, err = st.Raw(ctx, "SELECT DISTINCT access_key, principal FROM "+db+".access_keys ORDER BY access_key", nil)
			if err != nil {
				t.Fatal(err)
			}
			eq(t, "access_keys after a new block", table(t, r, "access_key", "principal"), []string{"AKIAEXAMPLEKEY000001|arn:aws:iam::111122223333:user/carol", "AKIAEXAMPLEKEY000002|" + evs[0].Principal})
		})
	}
}

// unmigrated opens a new database of bc named after prefix with only the
// migrations table, and returns the migrations its dialect has.
func unmigrated(t *testing.T, bc backendCase, prefix string) (string, *DB, chschema.Dialect, []chschema.Migration) {
	t.Helper()
	dbSeq++
	db := fmt.Sprintf("%s_%d", prefix, dbSeq)
	st := openRW(t, bc.cfg(t, db))
	dia := st.Dialect()
	if _, err := prepareMigrations(context.Background(), st.b, dia); err != nil {
		t.Fatal(err)
	}
	ms, err := chschema.Migrations(dia)
	if err != nil {
		t.Fatal(err)
	}
	return db, st, dia, ms
}

// TestMigrateAfterInterruptedMigration: a process killed during its first
// start leaves a migration applied in part (its ALTER added a column, the
// migration is not recorded); the next Migrate completes it.
func TestMigrateAfterInterruptedMigration(t *testing.T) {
	for _, bc := range backends {
		t.Run(bc.name, func(t *testing.T) {
			_, st, dia, ms := unmigrated(t, bc, "aw_int")
			ctx := context.Background()
			cut := -1
			for i, m := range ms {
				if alterAddRE.MatchString(m.Statements[0]) {
					cut = i
					break
				}
				for _, q := range m.Statements {
					if err := st.Exec(ctx, q); err != nil {
						t.Fatalf("%04d: %v", m.Version, err)
					}
				}
				if err := st.recordMigration(ctx, st.b, dia, m); err != nil {
					t.Fatal(err)
				}
			}
			if cut < 0 {
				t.Fatal("no migration adds a column")
			}
			if err := st.Exec(ctx, ms[cut].Statements[0]); err != nil {
				t.Fatal(err)
			}
			if err := st.Migrate(ctx); err != nil {
				t.Fatalf("migrate after %04d was interrupted: %v", ms[cut].Version, err)
			}
			applied, err := prepareMigrations(ctx, st.b, dia)
			if err != nil {
				t.Fatal(err)
			}
			if len(applied) != len(ms) {
				t.Errorf("%d migrations recorded, want %d", len(applied), len(ms))
			}
			evs, fs := known(time.Now().UTC())
			if err := st.InsertEvents(ctx, evs); err != nil {
				t.Fatal(err)
			}
			if err := st.InsertFindings(ctx, fs); err != nil {
				t.Fatal(err)
			}
		})
	}
}
