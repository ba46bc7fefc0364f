package source

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

// QuarantineOff as the path keeps no quarantine file.
const QuarantineOff = "off"

// QuarantineConfig is the root config's `quarantine:` section: where the
// sources' rejected raw records go (one file shared by the sources of a
// process).
type QuarantineConfig struct {
	// Path is the capped JSON Lines file; default
	// <state.dir>/quarantine/rejected.jsonl, "off" for none.
	Path string `yaml:"path"`
	// MaxBytes caps the file (default 64 MiB); records beyond it are only
	// counted (auditwatch_ingest_quarantine_dropped_total).
	MaxBytes int64 `yaml:"max_bytes"`
}

// SetDefaults fills unset fields.
func (c *QuarantineConfig) SetDefaults() {
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultQuarantineBytes
	}
}

// DefaultPath sets an unset path to the file under stateDir.
func (c *QuarantineConfig) DefaultPath(stateDir string) {
	if c.Path == "" {
		c.Path = filepath.Join(stateDir, "quarantine", "rejected.jsonl")
	}
}

// maxQuarantineBytes bounds max_bytes: the file is for looking at samples.
const maxQuarantineBytes = 16 << 30

// Validate reports every bad field.
func (c QuarantineConfig) Validate() error {
	var errs []error
	if c.MaxBytes < 0 || c.MaxBytes > maxQuarantineBytes {
		errs = append(errs, fmt.Errorf("max_bytes: must be between 1 and %d", int64(maxQuarantineBytes)))
	}
	if strings.HasSuffix(c.Path, "/") {
		errs = append(errs, errors.New("path: names a directory; want a file (or off)"))
	}
	return errors.Join(errs...)
}

// DecodeQuarantine decodes the `quarantine:` section (nil or empty: the
// defaults), fills defaults and validates it; the path stays unset for
// DefaultPath.
func DecodeQuarantine(n *yaml.Node) (QuarantineConfig, error) {
	var c QuarantineConfig
	if n != nil && n.Kind != 0 {
		// yaml.Node.Decode cannot reject unknown keys: re-encode the node
		// and decode it strictly.
		b, err := yaml.Marshal(n)
		if err != nil {
			return c, fmt.Errorf("quarantine: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
			return c, fmt.Errorf("quarantine: %w", err)
		}
	}
	c.SetDefaults()
	return c, c.Validate()
}
