package store

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"auditwatch/config/duration"
	"auditwatch/internal/secret"
	chschema "auditwatch/schema/clickhouse"
	"auditwatch/store/chdb"
	"auditwatch/store/clickhouse"
)

// Backends.
const (
	BackendCHDB       = "chdb"
	BackendClickHouse = "clickhouse"
	BackendOff        = "off"
)

// Config is the `storage:` section of the root config.
type Config struct {
	// Backend is "chdb" (embedded, the default), "clickhouse" or "off".
	Backend string `yaml:"backend"`
	// Database is the ClickHouse database holding auditwatch's tables.
	Database string `yaml:"database"`
	// RetentionDays drops day partitions older than this (0 keeps everything).
	RetentionDays int               `yaml:"retention_days"`
	CHDB          chdb.Config       `yaml:"chdb"`
	ClickHouse    clickhouse.Config `yaml:"clickhouse"`
	Batch         BatchConfig       `yaml:"batch"`
	Query         QueryConfig       `yaml:"query"`
}

// BatchConfig bounds the Writer's blocks.
type BatchConfig struct {
	// MaxRows flushes a block when this many rows are buffered (default
	// 200,000; lower it to bound the writer's memory).
	MaxRows int `yaml:"max_rows"`
	// MaxInterval writes buffered events at least this often (default
	// 5s; findings within 200 ms). In `run` the detect stage queues each
	// checkpoint's events and goes on; the writer gathers them into
	// blocks this old, since a block costs the embedded store about the
	// same CPU whatever its size (docs/PERFORMANCE.md).
	MaxInterval duration.Duration `yaml:"max_interval"`
	// RetryBackoff is the first wait before retrying a failed block (doubles, capped at 30s).
	RetryBackoff duration.Duration `yaml:"retry_backoff"`
}

// QueryConfig bounds runbook queries, which always run read-only.
type QueryConfig struct {
	MaxExecutionTime duration.Duration `yaml:"max_execution_time"`
	MaxResultRows    uint64            `yaml:"max_result_rows"`
	// Listen is where `auditwatch run` on the embedded store answers the
	// runbook queries of `auditwatch query` (the engine lets one process
	// open the data directory): "unix:PATH", a loopback "127.0.0.1:PORT"
	// (then Token is required), or "off". The default is the unix socket
	// "unix:<storage.chdb.path>/query.sock", private to the user. It is
	// never the metrics listener: it answers with audit data.
	Listen string `yaml:"listen"`
	// Token authenticates queries on a TCP endpoint ({env: …} or {file: …}).
	Token secret.Secret `yaml:"token"`
}

// Endpoint returns the query endpoint's network ("unix" or "tcp") and
// address, or "" when there is none (a server backend, or listen: off).
func (c *Config) Endpoint() (network, addr string) {
	if c.Backend != BackendCHDB || c.Query.Listen == "off" {
		return "", ""
	}
	if rest, ok := strings.CutPrefix(c.Query.Listen, "unix:"); ok {
		return "unix", rest
	}
	return "tcp", c.Query.Listen
}

// SetDefaults fills every unset field; the one place defaults live.
func (c *Config) SetDefaults() {
	if c.Backend == "" {
		c.Backend = BackendCHDB
	}
	if c.Database == "" {
		c.Database = "auditwatch"
	}
	if c.CHDB.Path == "" {
		c.CHDB.Path = "var/chdb"
	}
	if c.Backend == BackendClickHouse {
		c.ClickHouse.SetDefaults()
	}
	if c.Batch.MaxRows == 0 {
		// Blocks of 200k rows: on 10M events chDB inserts measured about
		// 40% faster than in 50k-row blocks (fewer parts, less merging
		// beside the stream); a full block holds ~150 MB of events.
		c.Batch.MaxRows = 200000
	}
	if c.Batch.MaxInterval == 0 {
		c.Batch.MaxInterval = duration.Duration(5 * time.Second)
	}
	if c.Batch.RetryBackoff == 0 {
		c.Batch.RetryBackoff = duration.Duration(200 * time.Millisecond)
	}
	if c.Query.MaxExecutionTime == 0 {
		c.Query.MaxExecutionTime = duration.Duration(30 * time.Second)
	}
	if c.Query.MaxResultRows == 0 {
		c.Query.MaxResultRows = 100000
	}
	if c.Query.Listen == "" && c.Backend == BackendCHDB {
		c.Query.Listen = "unix:" + filepath.Join(c.CHDB.Path, "query.sock")
	}
}

// Validate reports every bad field with its path.
func (c *Config) Validate() error {
	var errs []error
	switch c.Backend {
	case BackendCHDB:
		if c.CHDB.Path == "" {
			errs = append(errs, errors.New("storage.chdb.path: required for the chdb backend"))
		}
	case BackendClickHouse:
		if err := clickhouse.Prefix("storage.clickhouse", c.ClickHouse.Validate()); err != nil {
			errs = append(errs, err)
		}
	case BackendOff:
	default:
		errs = append(errs, fmt.Errorf("storage.backend: %q is not chdb, clickhouse or off", c.Backend))
	}
	if !chschema.ValidIdent(c.Database) {
		errs = append(errs, fmt.Errorf("storage.database: %q is not a plain identifier ([A-Za-z_][A-Za-z0-9_]*)", c.Database))
	}
	if c.RetentionDays < 0 {
		errs = append(errs, errors.New("storage.retention_days: negative"))
	}
	if c.Batch.MaxRows <= 0 {
		errs = append(errs, errors.New("storage.batch.max_rows: must be positive"))
	}
	if c.Batch.MaxInterval <= 0 {
		errs = append(errs, errors.New("storage.batch.max_interval: must be positive"))
	}
	if c.Batch.RetryBackoff <= 0 {
		errs = append(errs, errors.New("storage.batch.retry_backoff: must be positive"))
	}
	if c.Query.MaxExecutionTime.D() < time.Second {
		errs = append(errs, errors.New("storage.query.max_execution_time: at least 1s"))
	}
	if c.Query.MaxResultRows == 0 {
		errs = append(errs, errors.New("storage.query.max_result_rows: must be positive"))
	}
	if err := c.Query.Token.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("storage.query.token: %w", err))
	}
	if network, addr := c.Endpoint(); network == "tcp" {
		host, _, err := net.SplitHostPort(addr)
		ip := net.ParseIP(host)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("storage.query.listen: %q: want unix:PATH, 127.0.0.1:PORT or off", addr))
		case host != "localhost" && (ip == nil || !ip.IsLoopback()):
			errs = append(errs, fmt.Errorf("storage.query.listen: %q is not a loopback address: the endpoint answers with audit data", addr))
		case c.Query.Token.IsZero():
			errs = append(errs, errors.New("storage.query.token: required when storage.query.listen is a TCP address"))
		}
	} else if network == "unix" && addr == "" {
		errs = append(errs, errors.New("storage.query.listen: unix: needs a path"))
	}
	return errors.Join(errs...)
}

// LoadConfigFile reads the `storage:` section of a root config file,
// strictly (unknown keys in it are errors); other sections are ignored
// here. A missing section gives the defaults.
func LoadConfigFile(path string) (Config, error) {
	var c Config
	raw, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	var root map[string]yaml.Node
	if err := yaml.Unmarshal(raw, &root); err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	node := root["storage"]
	c, err = DecodeConfig(&node)
	if err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// DecodeConfig decodes the `storage:` section (config.Config.Storage)
// strictly, applies the defaults and validates. An empty node gives the
// defaults.
func DecodeConfig(node *yaml.Node) (Config, error) {
	var c Config
	if node != nil && node.Kind != 0 {
		sub, err := yaml.Marshal(node)
		if err != nil {
			return c, fmt.Errorf("storage: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(sub))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
			return c, fmt.Errorf("storage: %w", err)
		}
	}
	c.SetDefaults()
	return c, c.Validate()
}
