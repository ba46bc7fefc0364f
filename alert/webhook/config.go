package webhook

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"auditwatch/config/duration"
	"auditwatch/internal/secret"
)

// Config of one webhook output.
type Config struct {
	URL string `yaml:"url"`
	// Token, when set, is sent as "Authorization: Bearer <token>".
	Token secret.Secret `yaml:"token"`
	// Headers are extra, non-secret request headers.
	Headers map[string]string `yaml:"headers"`
	Timeout duration.Duration `yaml:"timeout"`
}

// SetDefaults fills zero fields.
func (c *Config) SetDefaults() {
	if c.Timeout == 0 {
		c.Timeout = duration.Duration(15 * time.Second)
	}
}

// Validate reports every bad field, each prefixed by path.
func (c Config) Validate(path string) error {
	var errs []error
	if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		errs = append(errs, fmt.Errorf("%s.url: must be an http(s) URL, got %q", path, c.URL))
	}
	if err := c.Token.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("%s.token: %w", path, err))
	}
	for k := range c.Headers {
		if http.CanonicalHeaderKey(k) == "Authorization" {
			errs = append(errs, fmt.Errorf("%s.headers.%s: put credentials in token (a secret), not in headers", path, k))
		}
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("%s.timeout: must be positive, got %s", path, c.Timeout))
	}
	return errors.Join(errs...)
}
