// Package duration owns the one way a duration is written in auditwatch's
// YAML configuration: Go duration syntax ("500ms", "90s", "15m", "36h"),
// or a whole number of days ("7d"). Every config section's duration fields
// use Duration, so every field accepts the same text. It imports nothing
// of ours, so any package's config can use it.
package duration

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Duration is a time.Duration read from and written to YAML as text.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String is the Go duration form ("1h30m0s").
func (d Duration) String() string { return time.Duration(d).String() }

// Parse reads Go duration syntax, or an integer followed by "d" (24h).
func Parse(s string) (time.Duration, error) {
	t := strings.TrimSpace(s)
	if n, ok := strings.CutSuffix(t, "d"); ok {
		v, err := strconv.ParseInt(n, 10, 64)
		if err != nil || v < -106751 || v > 106751 {
			return 0, fmt.Errorf("bad duration %q: want Go syntax (90s, 15m, 36h) or days (7d)", s)
		}
		return time.Duration(v) * 24 * time.Hour, nil
	}
	v, err := time.ParseDuration(t)
	if err != nil {
		return 0, fmt.Errorf("bad duration %q: want Go syntax (90s, 15m, 36h) or days (7d)", s)
	}
	return v, nil
}

// UnmarshalYAML accepts a scalar in Parse's syntax. A bare 0 is zero
// (unset). A bad value is a *yaml.TypeError, so the decoder goes on and
// reports every other problem of the document too.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		kind := map[yaml.Kind]string{yaml.SequenceNode: "!!seq", yaml.MappingNode: "!!map"}[n.Kind]
		if kind == "" {
			kind = "a non-scalar"
		}
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: cannot unmarshal %s into a duration (want 90s, 15m, 36h, 7d)", n.Line, kind)}}
	}
	if n.Value == "0" {
		*d = 0
		return nil
	}
	v, err := Parse(n.Value)
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", n.Line, err)}}
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the Go duration form.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// UnmarshalText accepts Parse's syntax (flags, env, JSON strings).
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := Parse(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the Go duration form.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }
