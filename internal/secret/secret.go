// Package secret owns the Secret config type: a credential of the pipeline
// itself (Slack token, HEC token, ClickHouse password) that is read from an
// environment variable or a file, never from a flag or the config file's own
// text, and that never prints.
package secret

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"auditwatch/internal/redact"
)

// ErrUnset is returned by Value when the secret's source is empty or missing.
var ErrUnset = errors.New("secret is not set")

// Secret names where a credential comes from. In YAML:
//
//	token: {env: SLACK_BOT_TOKEN}
//	token: {file: /run/secrets/hec-token}
//
// Exactly one of Env and File is set. Its String, GoString, LogValue and
// MarshalText forms never contain the value.
type Secret struct {
	Env  string `yaml:"env,omitempty" json:"env,omitempty"`
	File string `yaml:"file,omitempty" json:"file,omitempty"`
}

// IsZero reports whether no source is configured.
func (s Secret) IsZero() bool { return s.Env == "" && s.File == "" }

// Validate checks that at most one source is named.
func (s Secret) Validate() error {
	if s.Env != "" && s.File != "" {
		return errors.New("set either env or file, not both")
	}
	return nil
}

// Value reads the secret now. Surrounding white space (a trailing newline
// in a file) is trimmed. Errors name the source, never the value. The value
// is registered with internal/redact, so it is masked wherever it would
// reach a log, an error, a dead letter or a metric.
func (s Secret) Value() (string, error) {
	if err := s.Validate(); err != nil {
		return "", err
	}
	switch {
	case s.Env != "":
		v, ok := os.LookupEnv(s.Env)
		v = strings.TrimSpace(v)
		if !ok || v == "" {
			return "", fmt.Errorf("environment variable %s: %w", s.Env, ErrUnset)
		}
		redact.Register(v)
		return v, nil
	case s.File != "":
		b, err := os.ReadFile(s.File)
		if err != nil {
			return "", fmt.Errorf("secret file %s: %w", s.File, err)
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			return "", fmt.Errorf("secret file %s is empty: %w", s.File, ErrUnset)
		}
		redact.Register(v)
		return v, nil
	}
	return "", ErrUnset
}

// String describes the source, never the value.
func (s Secret) String() string {
	switch {
	case s.Env != "":
		return "secret(env:" + s.Env + ")"
	case s.File != "":
		return "secret(file:" + s.File + ")"
	}
	return "secret(unset)"
}

// GoString keeps %#v from printing anything but the source.
func (s Secret) GoString() string { return s.String() }

// LogValue keeps slog from printing anything but the source.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// Describe says whether the secret is set and where from, never its
// value: "set (from env X)", "set (from file Y)", or why it is not set.
func (s Secret) Describe() string {
	_, err := s.Value()
	switch {
	case s.IsZero():
		return "not configured"
	case err != nil && s.Env != "":
		return "NOT SET (env " + s.Env + " is empty or missing)"
	case err != nil:
		return "NOT SET (file " + s.File + " is missing, unreadable or empty)"
	case s.Env != "":
		return "set (from env " + s.Env + ")"
	}
	return "set (from file " + s.File + ")"
}
