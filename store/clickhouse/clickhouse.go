// Package clickhouse owns the ClickHouse server storage backend: a
// clickhouse-go v2 connection over the native protocol (optionally TLS),
// column-oriented block inserts, and queries whose parameters the server
// binds.
//
// Server versions: current servers (>= 21.8) get insert_deduplication_token
// on every block, so a retried block is dropped by the server, and
// {name:Type} parameters travel in the protocol's parameter field. 18.x
// servers have neither: their tables are ReplacingMergeTrees keyed by event
// id, so a retried block's rows collapse in the background and every runbook
// query counts distinct ids, and parameters are rendered by chsql.Bind as
// strict ASCII literals (every byte outside printable ASCII, and every quote
// and backslash, becomes a \xHH escape).
package clickhouse

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"auditwatch/internal/resname"
	"auditwatch/schema"
	chschema "auditwatch/schema/clickhouse"
	"auditwatch/store/chsql"
)

// paramsRevision is the first native protocol revision carrying query parameters.
const paramsRevision = 54459

// Limits bound read-only queries.
type Limits struct {
	MaxExecutionTime time.Duration
	MaxResultRows    uint64
}

// DB is a connection pool to one server and the auditwatch database on it.
type DB struct {
	conn     driver.Conn
	db       string
	version  string
	revision uint64
	modern   bool
	limits   *Limits
	logger   *slog.Logger
	// local is appended to table names for inserts: "_local" in a
	// cluster, where each block goes to the replicated tables of this
	// shard (the Distributed tables under the plain names are for reads).
	local string
}

// New connects and reads the server's version. With limits non-nil every
// query runs with readonly=1 and those limits.
func New(ctx context.Context, cfg Config, db string, limits *Limits, logger *slog.Logger) (*DB, error) {
	cfg.SetDefaults()
	if err := Prefix("storage.clickhouse", cfg.Validate()); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	opts := &ch.Options{
		Addr:         cfg.Addr,
		Auth:         ch.Auth{Database: "default", Username: cfg.User},
		DialTimeout:  cfg.DialTimeout.D(),
		MaxOpenConns: cfg.MaxOpenConns,
		MaxIdleConns: cfg.MaxOpenConns,
		Compression:  &ch.Compression{Method: ch.CompressionLZ4},
	}
	if !cfg.Password.IsZero() {
		pw, err := cfg.Password.Value()
		if err != nil {
			return nil, fmt.Errorf("storage.clickhouse.password: %w", err)
		}
		opts.Auth.Password = pw
	}
	if cfg.TLS.Enabled {
		tc := &tls.Config{ServerName: cfg.TLS.ServerName, InsecureSkipVerify: cfg.TLS.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
		if cfg.TLS.CAFile != "" {
			pem, err := os.ReadFile(cfg.TLS.CAFile)
			if err != nil {
				return nil, fmt.Errorf("storage.clickhouse.tls.ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("storage.clickhouse.tls.ca_file %s: no PEM certificates", cfg.TLS.CAFile)
			}
			tc.RootCAs = pool
		}
		opts.TLS = tc
	}
	conn, err := ch.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: open %v: %w", cfg.Addr, err)
	}
	sv, err := conn.ServerVersion()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("clickhouse: connect %v: %w", cfg.Addr, err)
	}
	version := fmt.Sprintf("%d.%d.%d", sv.Version.Major, sv.Version.Minor, sv.Version.Patch)
	d, err := chschema.DialectFor(db, version)
	if err != nil {
		conn.Close()
		return nil, err
	}
	logger.Info("clickhouse connected", "addr", cfg.Addr, "version", version, "tls", cfg.TLS.Enabled)
	out := &DB{conn: conn, db: db, version: version, revision: sv.Revision, modern: d.Modern, limits: limits, logger: logger}
	if cfg.Cluster.Enabled() {
		out.local = chschema.LocalSuffix
	}
	return out, nil
}

// Version returns the server's version.
func (d *DB) Version(ctx context.Context) (string, error) { return d.version, nil }

// Modern reports whether the server has skip indexes, TTL and non-replicated
// insert deduplication (>= 21.8).
func (d *DB) Modern() bool { return d.modern }

// readOnly is the query option of a read-only DB: readonly=1 and the limits.
func (d *DB) readOnly() ch.QueryOption {
	s := ch.Settings{
		"readonly":           1,
		"max_execution_time": int(d.limits.MaxExecutionTime.Seconds()),
		"max_result_rows":    int(min(d.limits.MaxResultRows, 1<<62)),
	}
	// Old protocol revisions carry only integer settings; there the
	// default overflow mode (throw) applies and queries LIMIT below the cap.
	if d.modern {
		s["result_overflow_mode"] = "break"
	}
	return ch.WithSettings(s)
}

// Exec runs a statement (read-only when the DB was opened with limits).
func (d *DB) Exec(ctx context.Context, sql string) error {
	if d.limits != nil {
		ctx = ch.Context(ctx, d.readOnly())
	}
	if err := d.conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("clickhouse: %w", err)
	}
	return nil
}

func (d *DB) insertCtx(ctx context.Context, token string) context.Context {
	if !d.modern {
		return ctx
	}
	// See store/chdb: no per-block collapsing on insert.
	s := ch.Settings{"optimize_on_insert": 0}
	if token != "" {
		s["insert_deduplication_token"] = token
	}
	return ch.Context(ctx, ch.WithSettings(s))
}

// InsertEvents inserts one block; see the package doc for deduplication.
func (d *DB) InsertEvents(ctx context.Context, evs []schema.Event, token string) error {
	if len(evs) == 0 {
		return nil
	}
	n := len(evs)
	day := make([]time.Time, n)
	tm := make([]time.Time, n)
	ip := make([]string, n)
	svc := make([]uint8, n)
	auth := make([]uint8, n)
	ro := make([]uint8, n)
	st := make([]uint16, n)
	pol := make([][]string, n)
	asn := make([]uint32, n)
	strs := make([][]string, 0, 28)
	get := []func(*schema.Event) string{
		func(e *schema.Event) string { return e.Source },
		func(e *schema.Event) string { return e.ID },
		func(e *schema.Event) string { return e.Principal },
		func(e *schema.Event) string { return e.PrincipalName },
		func(e *schema.Event) string { return e.PrincipalType },
		func(e *schema.Event) string { return e.Session },
		func(e *schema.Event) string { return e.Account },
		func(e *schema.Event) string { return e.AccessKey },
		func(e *schema.Event) string { return e.TokenHMAC },
		func(e *schema.Event) string { return e.AuthMethod },
		func(e *schema.Event) string { return e.Action },
		func(e *schema.Event) string { return e.Resource },
		func(e *schema.Event) string { return e.Mount },
		func(e *schema.Event) string { return e.MountType },
		func(e *schema.Event) string { return e.Namespace },
		func(e *schema.Event) string { return e.Region },
		func(e *schema.Event) string { return e.SourceIP },
		func(e *schema.Event) string { return e.SourceIPRaw },
		func(e *schema.Event) string { return e.UserAgent },
		func(e *schema.Event) string { return e.Outcome },
		func(e *schema.Event) string { return e.Error },
		func(e *schema.Event) string { return e.FailureKind },
		resname.Name,
		func(e *schema.Event) string { return e.KeyPrincipal },
		func(e *schema.Event) string { return e.KeyIssue },
		func(e *schema.Event) string { return e.Country },
		func(e *schema.Event) string { return e.ASOrg },
		func(e *schema.Event) string { return e.NetLabel },
		func(e *schema.Event) string { return e.TokenAccessor },
		func(e *schema.Event) string { return string(e.Raw) },
	}
	for range get {
		strs = append(strs, make([]string, n))
	}
	for i := range evs {
		e := &evs[i]
		t := chsql.ClampTime(e.Time)
		day[i] = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
		tm[i] = t
		a := chsql.IP16(e.SourceIP)
		ip[i] = string(a[:])
		svc[i], auth[i], ro[i] = b01(e.SourceIsService), b01(e.Auth), b01(e.ReadOnly)
		if e.HTTPStatus > 0 && e.HTTPStatus < 65536 {
			st[i] = uint16(e.HTTPStatus)
		}
		asn[i] = chsql.ASN32(e.ASN)
		pol[i] = e.Policies
		if pol[i] == nil {
			pol[i] = []string{}
		}
		for j, g := range get {
			strs[j][i] = g(e)
		}
	}
	col := func(name string) any {
		switch name {
		case "day":
			return day
		case "time":
			return tm
		case "ip":
			return ip
		case "source_is_service":
			return svc
		case "auth":
			return auth
		case "read_only":
			return ro
		case "http_status":
			return st
		case "policies":
			return pol
		case "asn":
			return asn
		}
		names := []string{"source", "id", "principal", "principal_name", "principal_type", "session", "account", "access_key",
			"token_hmac", "auth_method", "action", "resource", "mount", "mount_type", "namespace", "region", "source_ip",
			"source_ip_raw", "user_agent", "outcome", "error", "failure_kind", "resource_name",
			"key_principal", "key_issue", "country", "as_org", "net_label", "token_accessor", "raw"}
		for j, nm := range names {
			if nm == name {
				return strs[j]
			}
		}
		panic("clickhouse: no data for column " + name)
	}
	// The same events into principal_events and ip_events (migrations
	// 0005, 0018, 0019: no materialized view does this), concurrently on a second pooled
	// connection, with the same token; a retry of the whole block
	// completes whichever table missed it.
	perr := make(chan error, 1)
	go func() {
		err := d.sendColumns(ctx, "principal_events", chsql.PrincipalColumns, col, token)
		if err == nil {
			err = d.sendColumns(ctx, "ip_events", chsql.IPColumns, col, token)
		}
		if err == nil {
			pairs := chsql.ResourceNames(evs)
			names, res := make([]string, len(pairs)), make([]string, len(pairs))
			for i, p := range pairs {
				names[i], res[i] = p[0], p[1]
			}
			err = d.sendColumns(ctx, "resource_names", chsql.ResourceNameColumns, func(c string) any {
				if c == "resource" {
					return res
				}
				return names
			}, token)
		}
		perr <- err
	}()
	err := d.sendColumns(ctx, "events", chsql.EventColumns, col, token)
	return errors.Join(err, <-perr)
}

// InsertFindings inserts one block of findings.
func (d *DB) InsertFindings(ctx context.Context, fs []schema.Finding, token string) error {
	if len(fs) == 0 {
		return nil
	}
	cols := map[string]any{}
	n := len(fs)
	mk := func(name string) []string { s := make([]string, n); cols[name] = s; return s }
	day, tm, ft, lt := make([]time.Time, n), make([]time.Time, n), make([]time.Time, n), make([]time.Time, n)
	cnt, rev := make([]uint32, n), make([]uint32, n)
	late := make([]uint8, n)
	eids, ak, av := make([][]string, n), make([][]string, n), make([][]string, n)
	id, det, sev, pr, prn, res, sip, src, acc, sum, rea, dk := mk("id"), mk("detector"), mk("severity"), mk("principal"),
		mk("principal_name"), mk("resource"), mk("source_ip"), mk("source"), mk("account"), mk("summary"), mk("reason"), mk("dedupe_key")
	inc := mk("incident_id")
	for i := range fs {
		f := &fs[i]
		t := chsql.ClampTime(f.Time)
		day[i], tm[i] = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC), t
		ft[i], lt[i] = chsql.ClampTime(f.FirstTime), chsql.ClampTime(f.LastTime)
		cnt[i], rev[i] = u32(f.Count), u32(f.Revision)
		late[i] = b01(f.Late)
		eids[i] = f.EventIDs
		if eids[i] == nil {
			eids[i] = []string{}
		}
		ak[i], av[i] = chsql.Attributes(f.Attributes)
		id[i], det[i], sev[i], pr[i], prn[i], res[i] = f.ID, f.Detector, string(f.Severity), f.Principal, f.PrincipalName, f.Resource
		sip[i], src[i], acc[i], sum[i], rea[i], dk[i] = f.SourceIP, f.Source, f.Account, f.Summary, f.Reason, f.DedupeKey
		inc[i] = f.IncidentID
	}
	for k, v := range map[string]any{"day": day, "time": tm, "first_time": ft, "last_time": lt, "count": cnt, "revision": rev,
		"late": late, "event_ids": eids, "attr_keys": ak, "attr_values": av} {
		cols[k] = v
	}
	return d.sendColumns(ctx, "findings", chsql.FindingColumns, func(name string) any { return cols[name] }, token)
}

func (d *DB) sendColumns(ctx context.Context, table string, names []string, col func(string) any, token string) error {
	q := "INSERT INTO " + d.db + "." + table + d.local + " (" + strings.Join(names, ", ") + ")"
	b, err := d.conn.PrepareBatch(d.insertCtx(ctx, token), q)
	if err != nil {
		return fmt.Errorf("clickhouse: prepare insert into %s: %w", table, err)
	}
	defer b.Abort()
	for i, name := range names {
		if err := b.Column(i).Append(col(name)); err != nil {
			return fmt.Errorf("clickhouse: insert into %s column %s: %w", table, name, err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("clickhouse: insert into %s: %w", table, err)
	}
	return nil
}

// Query runs a SELECT. Current servers bind the parameters themselves;
// for 18.x they are rendered as strict literals (chsql.Bind).
func (d *DB) Query(ctx context.Context, sql string, ps chsql.Params) (*chsql.Result, error) {
	if err := chsql.Check(sql, ps); err != nil {
		return nil, err
	}
	var qopts []ch.QueryOption
	if d.limits != nil {
		qopts = append(qopts, d.readOnly())
	}
	if d.revision >= paramsRevision {
		p := ch.Parameters{}
		for _, x := range ps {
			p[x.Name] = x.Value
		}
		qopts = append(qopts, ch.WithParameters(p))
	} else {
		bound, err := chsql.Bind(sql, ps)
		if err != nil {
			return nil, err
		}
		sql = bound
	}
	rows, err := d.conn.Query(ch.Context(ctx, qopts...), sql)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: query: %w", err)
	}
	defer rows.Close()
	res := &chsql.Result{Columns: rows.Columns()}
	types := rows.ColumnTypes()
	for rows.Next() {
		ptrs := make([]any, len(types))
		for i, ct := range types {
			ptrs[i] = reflect.New(ct.ScanType()).Interface()
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, fmt.Errorf("clickhouse: scan: %w", err)
		}
		vals := make([]any, len(ptrs))
		for i, p := range ptrs {
			vals[i] = normalize(reflect.ValueOf(p).Elem().Interface())
		}
		res.Rows = append(res.Rows, vals)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("clickhouse: query: %w", err)
	}
	return res, nil
}

func normalize(v any) any {
	switch x := v.(type) {
	case string, int64, uint64, float64:
		return x
	case time.Time:
		return x.UTC()
	case uint8:
		return uint64(x)
	case uint16:
		return uint64(x)
	case uint32:
		return uint64(x)
	case int8:
		return int64(x)
	case int16:
		return int64(x)
	case int32:
		return int64(x)
	case float32:
		return float64(x)
	}
	return fmt.Sprint(v)
}

// Close closes the pool.
func (d *DB) Close() error { return d.conn.Close() }

func b01(v bool) uint8 {
	if v {
		return 1
	}
	return 0
}

func u32(v int) uint32 {
	if v < 0 {
		return 0
	}
	if v > 1<<32-1 {
		return 1<<32 - 1
	}
	return uint32(v)
}
