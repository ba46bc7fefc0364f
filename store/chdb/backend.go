package chdb

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"auditwatch/schema"
	"auditwatch/store/chsql"
)

// Config is the embedded backend's part of the storage config.
type Config struct {
	// Path is the engine's data directory.
	Path string `yaml:"path"`
	// LibPath is libchdb.so's path; empty searches (see package doc).
	LibPath string `yaml:"lib_path"`
}

// Limits bound a read-only connection's queries.
type Limits struct {
	MaxExecutionTime time.Duration
	MaxResultRows    uint64
}

// DB is an embedded database: one connection to the engine and the name of
// the auditwatch database in it.
type DB struct {
	conn *Conn
	// pconn writes the principal_events, ip_events and resource_names
	// blocks of each InsertEvents
	// while conn writes the events block (nil when read-only). The engine
	// runs statements of different connections concurrently.
	pconn  *Conn
	db     string
	logger *slog.Logger
}

// New opens the engine at cfg.Path. With limits non-nil the connection is
// read-only (readonly=1) and every query is bounded by them.
func New(cfg Config, db string, limits *Limits, logger *slog.Logger) (*DB, error) {
	if err := Load(cfg.LibPath); err != nil {
		return nil, err
	}
	if cfg.Path == "" {
		return nil, errors.New("chdb: path is empty")
	}
	if err := os.MkdirAll(cfg.Path, 0o750); err != nil {
		return nil, fmt.Errorf("chdb: create data path: %w", err)
	}
	args := []string{"--path=" + cfg.Path}
	if limits != nil {
		args = append(args,
			"--max_execution_time="+strconv.Itoa(int(limits.MaxExecutionTime.Seconds())),
			"--max_result_rows="+strconv.FormatUint(limits.MaxResultRows, 10),
			"--result_overflow_mode=break",
			"--readonly=1")
	}
	c, err := Connect(args...)
	if err != nil {
		return nil, err
	}
	var pc *Conn
	if limits == nil {
		if pc, err = Connect(args...); err != nil {
			c.Close()
			return nil, err
		}
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger.Debug("chdb opened", "path", cfg.Path, "lib", LoadedPath(), "readonly", limits != nil)
	return &DB{conn: c, pconn: pc, db: db, logger: logger}, nil
}

// Version returns the engine's version() string.
func (d *DB) Version(ctx context.Context) (string, error) {
	out, err := d.conn.Query("SELECT version()", "TabSeparated", nil)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}

// Modern reports that chDB has the current server's features.
func (d *DB) Modern() bool { return true }

// Exec runs a statement that returns nothing of interest.
func (d *DB) Exec(ctx context.Context, sql string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	_, err := d.conn.Query(sql, "TabSeparated", nil)
	return err
}

// InsertEvents inserts one block into events and the same events into
// principal_events and ip_events, events concurrently with the others on a
// second connection (migrations 0005, 0018, 0019: no materialized view
// does these writes). token, when set, is
// both blocks' insert_deduplication_token: the same token within a
// table's deduplication window inserts nothing, so retrying a block that
// landed in one table and not the other completes it without doubling.
func (d *DB) InsertEvents(ctx context.Context, evs []schema.Event, token string) error {
	if len(evs) == 0 {
		return nil
	}
	if d.pconn == nil {
		return errors.New("chdb: insert on a read-only connection")
	}
	perr := make(chan error, 1)
	go func() {
		p := make([]byte, 0, 128*len(evs))
		for i := range evs {
			p = chsql.AppendPrincipalRowBinary(p, &evs[i])
		}
		err := d.insert(ctx, d.pconn, "principal_events", chsql.PrincipalColumns, token, p)
		if err == nil {
			p = p[:0]
			for i := range evs {
				p = chsql.AppendIPRowBinary(p, &evs[i])
			}
			err = d.insert(ctx, d.pconn, "ip_events", chsql.IPColumns, token, p)
		}
		if err == nil {
			// A retried block writes its pairs again: the table's key
			// collapses them, and lookups read it through IN.
			err = d.insert(ctx, d.pconn, "resource_names", chsql.ResourceNameColumns, "",
				chsql.AppendResourceNamesRowBinary(nil, chsql.ResourceNames(evs)))
		}
		perr <- err
	}()
	b := make([]byte, 0, 256*len(evs))
	for i := range evs {
		b = chsql.AppendEventRowBinary(b, &evs[i])
	}
	err := d.insert(ctx, d.conn, "events", chsql.EventColumns, token, b)
	return errors.Join(err, <-perr)
}

// InsertFindings inserts one block of findings.
func (d *DB) InsertFindings(ctx context.Context, fs []schema.Finding, token string) error {
	if len(fs) == 0 {
		return nil
	}
	b := make([]byte, 0, 512*len(fs))
	for i := range fs {
		b = chsql.AppendFindingRowBinary(b, &fs[i])
	}
	return d.insert(ctx, d.conn, "findings", chsql.FindingColumns, token, b)
}

// insert streams one RowBinary block into table (chdb_stream_insert: no
// text escaping, no size limit on the block).
func (d *DB) insert(ctx context.Context, conn *Conn, table string, cols []string, token string, rows []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	// optimize_on_insert=0: the ReplacingMergeTree would otherwise
	// collapse each block while writing it (measured: about a third of the
	// insert time); duplicates are removed by the token and by merges.
	q := "INSERT INTO " + d.db + "." + table + " (" + strings.Join(cols, ", ") + ") SETTINGS optimize_on_insert = 0"
	if token != "" {
		q += ", insert_deduplication_token = " + chsql.QuoteString(token)
	}
	if err := conn.Insert(q, "RowBinary", rows); err != nil {
		return fmt.Errorf("chdb insert into %s: %w", table, err)
	}
	return nil
}

// Query runs a SELECT with its parameters bound by the engine.
func (d *DB) Query(ctx context.Context, sql string, ps chsql.Params) (*chsql.Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := chsql.Check(sql, ps); err != nil {
		return nil, err
	}
	m := ps.Map()
	for k, v := range m {
		m[k] = EscapeParam(v)
	}
	out, err := d.conn.Query(sql, "JSONCompact", m)
	if err != nil {
		return nil, err
	}
	return DecodeJSONCompact(out)
}

// Close closes the connections.
func (d *DB) Close() error {
	if d.pconn != nil {
		d.pconn.Close()
	}
	return d.conn.Close()
}

// DecodeJSONCompact turns ClickHouse's JSONCompact output into a Result.
func DecodeJSONCompact(out []byte) (*chsql.Result, error) {
	res := &chsql.Result{}
	if len(bytes.TrimSpace(out)) == 0 {
		return res, nil
	}
	var doc struct {
		Meta []struct{ Name, Type string } `json:"meta"`
		Data [][]json.RawMessage           `json:"data"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return nil, fmt.Errorf("chdb: decode result: %w", err)
	}
	for _, m := range doc.Meta {
		res.Columns = append(res.Columns, m.Name)
	}
	for ri, row := range doc.Data {
		if len(row) != len(doc.Meta) {
			return nil, fmt.Errorf("chdb: result row %d has %d values for %d columns", ri, len(row), len(doc.Meta))
		}
		vals := make([]any, len(row))
		for i, raw := range row {
			v, err := decodeValue(doc.Meta[i].Type, raw)
			if err != nil {
				return nil, fmt.Errorf("chdb: result row %d column %s: %w", ri, doc.Meta[i].Name, err)
			}
			vals[i] = v
		}
		res.Rows = append(res.Rows, vals)
	}
	return res, nil
}

func decodeValue(typ string, raw json.RawMessage) (any, error) {
	typ = strings.TrimPrefix(typ, "LowCardinality(")
	var s string
	if len(raw) > 0 && raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
	} else {
		s = string(raw)
	}
	switch {
	case strings.HasPrefix(typ, "UInt"):
		return strconv.ParseUint(s, 10, 64)
	case strings.HasPrefix(typ, "Int"):
		return strconv.ParseInt(s, 10, 64)
	case strings.HasPrefix(typ, "Float"):
		return strconv.ParseFloat(s, 64)
	case strings.HasPrefix(typ, "DateTime"):
		return time.ParseInLocation("2006-01-02 15:04:05", s, time.UTC)
	case strings.HasPrefix(typ, "String"), strings.HasPrefix(typ, "FixedString"), strings.HasPrefix(typ, "Date"):
		return s, nil
	}
	return string(raw), nil // arrays and other composite values keep their JSON text
}
