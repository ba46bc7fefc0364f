package clickhouse

import (
	"errors"
	"fmt"
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
}

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
}

// Validate reports every bad field, with its path under prefix.
func (c *Config) Validate(prefix string) error {
	var errs []error
	if len(c.Addr) == 0 {
		errs = append(errs, fmt.Errorf("%s.addr: at least one host:port is required", prefix))
	}
	for i, a := range c.Addr {
		if a == "" {
			errs = append(errs, fmt.Errorf("%s.addr[%d]: empty", prefix, i))
		}
	}
	if err := c.Password.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("%s.password: %w", prefix, err))
	}
	if c.DialTimeout < 0 {
		errs = append(errs, fmt.Errorf("%s.dial_timeout: negative", prefix))
	}
	if c.MaxOpenConns < 0 {
		errs = append(errs, fmt.Errorf("%s.max_open_conns: negative", prefix))
	}
	if !c.TLS.Enabled && (c.TLS.CAFile != "" || c.TLS.ServerName != "" || c.TLS.InsecureSkipVerify) {
		errs = append(errs, fmt.Errorf("%s.tls: options set but tls.enabled is false", prefix))
	}
	return errors.Join(errs...)
}
