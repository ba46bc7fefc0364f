package main

import (
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"auditwatch/internal/configcheck"
	"auditwatch/store"
)

// storageFlags are the storage selection flags shared by migrate and query.
type storageFlags struct {
	config, backend, chdbPath, addr, database string
}

func (s *storageFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.config, "config", "", "root config `FILE` (its storage: section is used); default: $"+configcheck.EnvConfig+", else ./auditwatch.yaml, else /etc/auditwatch/config.yaml, else the flags below alone")
	fs.StringVar(&s.backend, "backend", "", "override storage.backend: chdb, clickhouse or off")
	fs.StringVar(&s.chdbPath, "chdb-path", "", "override storage.chdb.path (embedded data directory)")
	fs.StringVar(&s.addr, "addr", "", "override storage.clickhouse.addr (host:port, comma-separated)")
	fs.StringVar(&s.database, "database", "", "override storage.database")
}

func (s *storageFlags) load() (store.Config, error) {
	var cfg store.Config
	// The config file is found and loaded (every section validated) as
	// every command does; without one the flags alone select the store.
	path, _, err := discoverConfig(s.config)
	switch {
	case err == nil:
		l, err := configcheck.Load(path)
		if err != nil {
			return cfg, err
		}
		if l.Storage != nil {
			cfg = *l.Storage
		}
	case !errors.Is(err, configcheck.ErrNoConfig):
		return cfg, err
	}
	if s.backend != "" {
		cfg.Backend = s.backend
	}
	if s.chdbPath != "" {
		if cfg.Query.Listen == "unix:"+filepath.Join(cfg.CHDB.Path, "query.sock") {
			cfg.Query.Listen = "" // the default follows the path
		}
		cfg.CHDB.Path = s.chdbPath
	}
	if s.addr != "" {
		cfg.ClickHouse.Addr = strings.Split(s.addr, ",")
		if s.backend == "" {
			cfg.Backend = store.BackendClickHouse
		}
	}
	if s.database != "" {
		cfg.Database = s.database
	}
	cfg.SetDefaults()
	return cfg, cfg.Validate()
}

// parseSince reads "90m", "24h", "7d" (before now) or an RFC 3339 time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if strings.HasSuffix(s, "d") {
		n, err := strconv.Atoi(strings.TrimSuffix(s, "d"))
		if err != nil || n < 0 {
			return time.Time{}, fmt.Errorf("--since %q: want a duration (90m, 24h, 7d) or an RFC 3339 time", s)
		}
		return now.Add(-time.Duration(n) * 24 * time.Hour), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("--since %q: want a duration (90m, 24h, 7d) or an RFC 3339 time", s)
	}
	return now.Add(-d), nil
}
