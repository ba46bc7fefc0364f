package syslog

import (
	"errors"
	"fmt"
	"net"
	"time"

	"auditwatch/config/duration"
)

// Body formats.
const (
	FormatCEF  = "cef"
	FormatJSON = "json"
)

// Config of one syslog output.
type Config struct {
	// Address is host:port of the receiver.
	Address string `yaml:"address"`
	// TLS enables RFC 5425 syslog over TLS when set.
	TLS *TLSConfig `yaml:"tls"`
	// Format of the message body: cef or json.
	Format string `yaml:"format"`
	// Facility 0..23 (default 13, "log audit").
	Facility *int `yaml:"facility"`
	// Hostname in the header (default: this host's name).
	Hostname string `yaml:"hostname"`
	AppName  string `yaml:"app_name"`
	// ProductVersion is the CEF header's device version.
	ProductVersion string `yaml:"product_version"`
	// MaxMessageBytes bounds one message (the receiver's limit; rsyslog's
	// default is 8 KiB). Longer alerts are re-encoded with shorter fields.
	MaxMessageBytes int               `yaml:"max_message_bytes"`
	DialTimeout     duration.Duration `yaml:"dial_timeout"`
}

// TLSConfig names the CA that signs the receiver's certificate and,
// optionally, a client certificate.
type TLSConfig struct {
	CAFile     string `yaml:"ca_file"`
	CertFile   string `yaml:"cert_file"`
	KeyFile    string `yaml:"key_file"`
	ServerName string `yaml:"server_name"`
}

// SetDefaults fills zero fields.
func (c *Config) SetDefaults() {
	if c.Format == "" {
		c.Format = FormatCEF
	}
	if c.Facility == nil {
		f := 13
		c.Facility = &f
	}
	if c.AppName == "" {
		c.AppName = "auditwatch"
	}
	if c.ProductVersion == "" {
		c.ProductVersion = "1.0"
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = 8192
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = duration.Duration(10 * time.Second)
	}
}

// Validate reports every bad field, each prefixed by path.
func (c Config) Validate(path string) error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", path, field, fmt.Sprintf(format, args...)))
	}
	if _, _, err := net.SplitHostPort(c.Address); err != nil {
		bad("address", "want host:port, got %q", c.Address)
	}
	if c.Format != FormatCEF && c.Format != FormatJSON {
		bad("format", "unknown format %q (want cef or json)", c.Format)
	}
	if c.Facility != nil && (*c.Facility < 0 || *c.Facility > 23) {
		bad("facility", "must be within 0..23, got %d", *c.Facility)
	}
	if c.MaxMessageBytes < 480 {
		bad("max_message_bytes", "must be at least 480 (RFC 5424), got %d", c.MaxMessageBytes)
	}
	if c.DialTimeout < 0 {
		bad("dial_timeout", "must not be negative, got %s", c.DialTimeout)
	}
	if c.TLS != nil && (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		bad("tls", "cert_file and key_file go together")
	}
	return errors.Join(errs...)
}
