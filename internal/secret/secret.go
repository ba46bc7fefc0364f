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

	"go.yaml.in/yaml/v3"

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

// UnmarshalYAML accepts {env: NAME} and {file: PATH} (or null). A value
// written in the config itself (`token: xoxb-…`) is refused without
// quoting it: the decoder's own message would show its first characters.
// Problems are *yaml.TypeError with the line, so the rest of the document
// is still checked, and unknown keys are reported as the strict decoder
// reports them (its KnownFields setting does not reach a custom decoder).
func (s *Secret) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	var out Secret
	var errs []string
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			*s = out
			return nil
		}
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: cannot unmarshal %s into a secret: write {env: NAME} or {file: PATH}; a credential is never written in the config (value not shown)", n.Line, n.ShortTag())}}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if v.Kind == yaml.AliasNode && v.Alias != nil {
				v = v.Alias
			}
			var dst *string
			switch k.Value {
			case "env":
				dst = &out.Env
			case "file":
				dst = &out.File
			default:
				errs = append(errs, fmt.Sprintf("line %d: field %s not found in type secret.Secret", k.Line, k.Value))
				continue
			}
			if v.Kind != yaml.ScalarNode {
				errs = append(errs, fmt.Sprintf("line %d: cannot unmarshal %s into a secret's %s (want a name)", v.Line, v.ShortTag(), k.Value))
				continue
			}
			if v.Tag != "!!null" {
				*dst = v.Value
			}
		}
	default:
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: cannot unmarshal %s into a secret: write {env: NAME} or {file: PATH}", n.Line, n.ShortTag())}}
	}
	if len(errs) > 0 {
		return &yaml.TypeError{Errors: errs}
	}
	*s = out
	return nil
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
