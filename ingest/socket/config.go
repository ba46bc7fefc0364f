package socket

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"auditwatch/config/duration"
)

// isLoopbackHost reports whether a listen host is loopback only.
func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// Config is a socket source's section of the config.
type Config struct {
	// Listen is where Vault's socket audit device connects: a TCP
	// host:port, or "unix:/path" for a Unix socket (mode 0660). Default
	// 127.0.0.1:9090, loopback only.
	Listen string `yaml:"listen"`
	// Allow lists the networks (CIDR, or a bare address) a TCP connection
	// may come from; others are closed at once and counted
	// (auditwatch_ingest_socket_refused_total). Empty: loopback only. A
	// listen address beyond loopback requires an explicit list.
	Allow []string `yaml:"allow"`
	// TLS, when set, serves TLS (for relays such as a log shipper in front
	// of Vault); with client_ca_file, clients must present a certificate
	// signed by it.
	TLS *TLSConfig `yaml:"tls"`
	// SpoolDir holds the on-disk spool between the listener and the parser.
	SpoolDir string `yaml:"spool_dir"`
	// SpoolMaxBytes bounds the spool; when full, new data is refused
	// (counted, logged, and reported as an error) rather than blocking Vault.
	SpoolMaxBytes int64 `yaml:"spool_max_bytes"`
	// SegmentBytes is the size at which a spool segment file is closed.
	SegmentBytes int64 `yaml:"segment_bytes"`
	// MaxConns caps concurrent connections.
	MaxConns int `yaml:"max_conns"`
	// IdleFlush is how long the spool must stay idle before request
	// entries still waiting for their response are emitted alone.
	IdleFlush duration.Duration `yaml:"idle_flush"`
	// BatchSize caps events per batch.
	BatchSize int `yaml:"batch_size"`
}

// TLSConfig is the socket source's optional TLS.
type TLSConfig struct {
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"`
}

// DefaultListen is loopback only.
const DefaultListen = "127.0.0.1:9090"

// loopbackNets is what an empty Allow means.
var loopbackNets = []string{"127.0.0.0/8", "::1/128"}

// unixPath returns the socket path of a "unix:" listen address.
func unixPath(listen string) (string, bool) { return strings.CutPrefix(listen, "unix:") }

// parseAllow parses Allow (empty: loopback).
func parseAllow(allow []string) ([]netip.Prefix, error) {
	if len(allow) == 0 {
		allow = loopbackNets
	}
	var out []netip.Prefix
	var errs []error
	for i, a := range allow {
		if p, err := netip.ParsePrefix(a); err == nil {
			out = append(out, p.Masked())
			continue
		}
		if ip, err := netip.ParseAddr(a); err == nil {
			out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
			continue
		}
		errs = append(errs, fmt.Errorf("allow[%d]: want a CIDR or an address, got %q", i, a))
	}
	return out, errors.Join(errs...)
}

// SetDefaults fills unset fields.
func (c *Config) SetDefaults() {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.SpoolMaxBytes == 0 {
		c.SpoolMaxBytes = 1 << 30
	}
	if c.SegmentBytes == 0 {
		c.SegmentBytes = 16 << 20
	}
	if c.MaxConns == 0 {
		c.MaxConns = 64
	}
	if c.IdleFlush == 0 {
		c.IdleFlush = duration.Duration(2 * time.Second)
	}
	if c.BatchSize == 0 {
		c.BatchSize = 512
	}
}

// Validate reports every bad field.
func (c Config) Validate() error {
	var errs []error
	if path, ok := unixPath(c.Listen); ok {
		if path == "" {
			errs = append(errs, errors.New("listen: unix: needs a path"))
		}
		if len(c.Allow) > 0 {
			errs = append(errs, errors.New("allow: not used with a unix socket (its file mode decides)"))
		}
	} else if host, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, errors.New("listen: want host:port or unix:/path: "+err.Error()))
	} else if _, err := parseAllow(c.Allow); err != nil {
		errs = append(errs, err)
	} else if len(c.Allow) == 0 && !isLoopbackHost(host) {
		errs = append(errs, fmt.Errorf("allow: required when listening beyond loopback (%s): list the networks Vault connects from", c.Listen))
	} else {
		for i, a := range c.Allow {
			if p, err := netip.ParsePrefix(a); err == nil && p.Bits() == 0 {
				errs = append(errs, fmt.Errorf("allow[%d]: %s lets anyone in; list the networks Vault connects from", i, a))
			}
		}
	}
	if c.TLS != nil && (c.TLS.CertFile == "" || c.TLS.KeyFile == "") {
		errs = append(errs, errors.New("tls: cert_file and key_file are required"))
	}
	if c.SpoolDir == "" {
		errs = append(errs, errors.New("spool_dir: required"))
	}
	if c.SpoolMaxBytes <= 0 {
		errs = append(errs, errors.New("spool_max_bytes: must be positive"))
	}
	if c.SegmentBytes <= 0 || c.SegmentBytes > c.SpoolMaxBytes {
		errs = append(errs, errors.New("segment_bytes: must be positive and at most spool_max_bytes"))
	}
	if c.MaxConns <= 0 {
		errs = append(errs, errors.New("max_conns: must be positive"))
	}
	if c.IdleFlush < 0 {
		errs = append(errs, errors.New("idle_flush: must not be negative"))
	}
	if c.BatchSize <= 0 {
		errs = append(errs, errors.New("batch_size: must be positive"))
	}
	return errors.Join(errs...)
}
