package clickhouse

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"auditwatch/config/duration"
	"auditwatch/internal/secret"
)

// Config is the server backend's part of the storage config.
type Config struct {
	// Addr lists host:port of the server's native protocol (9000, 9440 for TLS).
	Addr []string `yaml:"addr"`
	User string   `yaml:"user"`
	// Password comes from the environment or a file, never the config text.
	Password secret.Secret `yaml:"password"`
	TLS      TLSConfig     `yaml:"tls"`
	// DialTimeout bounds connecting.
	DialTimeout duration.Duration `yaml:"dial_timeout"`
	// MaxOpenConns bounds the connection pool.
	MaxOpenConns int `yaml:"max_open_conns"`
	// Cluster, when its name is set, stores into a replicated cluster
	// (docs/STORAGE.md "Beyond one server"): Addr then lists the replicas
	// of the shard this writer writes to.
	Cluster ClusterConfig `yaml:"cluster"`
}

// ClusterConfig is storage.clickhouse.cluster: tables replicated through
// ZooKeeper (Replicated*MergeTree, one shard per writer) and Distributed
// tables over them that queries read.
type ClusterConfig struct {
	// Name is the cluster in the servers' <remote_servers> (empty: one
	// server, no replication).
	Name string `yaml:"name"`
	// ZooKeeperPath prefixes every replicated table's ZooKeeper path
	// (<zookeeper_path>/<database>/<table>); it must name the shard with
	// the {shard} macro (default /clickhouse/tables/{shard}).
	ZooKeeperPath string `yaml:"zookeeper_path"`
	// Replica is the replica name (default the {replica} macro).
	Replica string `yaml:"replica"`
	// SyncTimeout bounds how long a migration waits for the other
	// replicas of the shard to apply a replicated change (default 60s).
	SyncTimeout duration.Duration `yaml:"sync_timeout"`
}

// Enabled reports whether a cluster is configured.
func (c *ClusterConfig) Enabled() bool { return c.Name != "" }

// SetDefaults fills unset fields of a configured cluster.
func (c *ClusterConfig) SetDefaults() {
	if !c.Enabled() {
		return
	}
	if c.ZooKeeperPath == "" {
		c.ZooKeeperPath = "/clickhouse/tables/{shard}"
	}
	if c.Replica == "" {
		c.Replica = "{replica}"
	}
	if c.SyncTimeout == 0 {
		c.SyncTimeout = duration.Duration(time.Minute)
	}
}

// Validate reports every bad field, relative to the cluster section.
func (c ClusterConfig) Validate() error {
	if !c.Enabled() {
		if c.ZooKeeperPath != "" || c.Replica != "" || c.SyncTimeout != 0 {
			return errors.New("name: required when other cluster options are set")
		}
		return nil
	}
	var errs []error
	if !clusterNameRE.MatchString(c.Name) {
		errs = append(errs, fmt.Errorf("name: %q is not a plain identifier ([A-Za-z_][A-Za-z0-9_]*)", c.Name))
	}
	switch {
	case !strings.HasPrefix(c.ZooKeeperPath, "/"):
		errs = append(errs, fmt.Errorf("zookeeper_path: %q does not start with /", c.ZooKeeperPath))
	case !strings.Contains(c.ZooKeeperPath, "{shard}"):
		errs = append(errs, fmt.Errorf("zookeeper_path: %q does not contain {shard}: the shards would share one table", c.ZooKeeperPath))
	}
	for field, v := range map[string]string{"zookeeper_path": c.ZooKeeperPath, "replica": c.Replica} {
		if strings.ContainsAny(v, "'\\\n\x00") {
			errs = append(errs, fmt.Errorf("%s: %q holds a quote, backslash or newline", field, v))
		}
	}
	if c.Replica == "" {
		errs = append(errs, errors.New("replica: empty"))
	}
	if c.SyncTimeout < 0 {
		errs = append(errs, errors.New("sync_timeout: negative"))
	}
	return errors.Join(errs...)
}

var clusterNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)

// TLSConfig enables TLS to the server.
type TLSConfig struct {
	Enabled bool `yaml:"enabled"`
	// CAFile is a PEM bundle to verify the server with (system roots when empty).
	CAFile string `yaml:"ca_file"`
	// ServerName overrides the name checked in the server's certificate.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify disables certificate checks (tests only).
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// SetDefaults fills unset fields.
func (c *Config) SetDefaults() {
	if len(c.Addr) == 0 {
		c.Addr = []string{"127.0.0.1:9000"}
	}
	if c.User == "" {
		c.User = "default"
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = duration.Duration(5 * time.Second)
	}
	if c.MaxOpenConns == 0 {
		c.MaxOpenConns = 4
	}
	c.Cluster.SetDefaults()
}

// Validate reports every bad field, each "field: message" relative to the
// clickhouse section (the parent adds its path).
func (c Config) Validate() error {
	var errs []error
	if len(c.Addr) == 0 {
		errs = append(errs, errors.New("addr: at least one host:port is required"))
	}
	for i, a := range c.Addr {
		if a == "" {
			errs = append(errs, fmt.Errorf("addr[%d]: empty", i))
		}
	}
	if err := c.Password.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("password: %w", err))
	}
	if c.DialTimeout < 0 {
		errs = append(errs, errors.New("dial_timeout: negative"))
	}
	if c.MaxOpenConns < 0 {
		errs = append(errs, errors.New("max_open_conns: negative"))
	}
	if !c.TLS.Enabled && (c.TLS.CAFile != "" || c.TLS.ServerName != "" || c.TLS.InsecureSkipVerify) {
		errs = append(errs, errors.New("tls: options set but tls.enabled is false"))
	}
	if err := c.Cluster.Validate(); err != nil {
		errs = append(errs, prefix("cluster", err))
	}
	return errors.Join(errs...)
}

// prefix puts path in front of every error joined in err.
func prefix(path string, err error) error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var errs []error
		for _, e := range j.Unwrap() {
			errs = append(errs, prefix(path, e))
		}
		return errors.Join(errs...)
	}
	return fmt.Errorf("%s.%w", path, err)
}

// Prefix puts path in front of every error joined in err (nil stays nil).
func Prefix(path string, err error) error {
	if err == nil {
		return nil
	}
	return prefix(path, err)
}
