// Package configcheck owns loading a root configuration file: strict
// decoding, defaults and validation of the root and of every section
// (detectors, alerts, storage, ...), run to the end so that every problem
// is reported at once, each named by its file, line and YAML path. Every
// command that takes a config loads it through Load, and check-config
// reports the same problems through File: a file check-config accepts is
// one the commands accept.
package configcheck

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"auditwatch/alert"
	"auditwatch/config"
	"auditwatch/detect"
	"auditwatch/identity"
	"auditwatch/ingest/source"
	"auditwatch/internal/escape"
	"auditwatch/netinfo"
	"auditwatch/sigma"
	"auditwatch/store"
	"auditwatch/trail"
	"auditwatch/watch"
)

// Problem is one thing wrong with a config file.
type Problem struct {
	// Path is the YAML path of the field ("alerts.outputs[1].slack.channel");
	// empty when the problem concerns the whole document.
	Path string
	// Line is the 1-based line in the file, 0 when unknown.
	Line int
	Msg  string
}

// String renders "path: message" ("line N: path: message" when the line
// is known) on one line: control characters (from values quoted in
// messages) are escaped.
func (p Problem) String() string {
	return escapeControls(p.raw(""))
}

// In renders the problem as "file:line: path: message" (file: path:
// message when the line is unknown), the form every command prints.
func (p Problem) In(file string) string {
	return escapeControls(p.raw(file))
}

// escapeControls makes a problem line inert on a terminal: values quoted
// from the file are attacker-controlled (internal/escape's Terminal
// context: controls, invisible characters and invalid UTF-8 as visible
// codes).
func escapeControls(s string) string { return escape.String(escape.Terminal, s) }

func (p Problem) raw(file string) string {
	var b strings.Builder
	switch {
	case file != "" && p.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", file, p.Line)
	case file != "":
		b.WriteString(file + ": ")
	case p.Line > 0:
		fmt.Fprintf(&b, "line %d: ", p.Line)
	}
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Loaded is a root config with every section decoded, defaulted and
// validated: what a command runs with.
type Loaded struct {
	*config.Config
	// Detectors is the `detectors:` section (defaults when absent).
	Detectors detect.Config
	// Alerts is the `alerts:` section, nil when absent. Its ledger and
	// dead-letter paths are still unset when the file leaves them out:
	// the command puts them under state.dir.
	Alerts *alert.Config
	// Storage is the `storage:` section, nil when absent.
	Storage *store.Config
	// Quarantine is the `quarantine:` section (defaults when absent); its
	// path is still unset when the file leaves it out: the command puts it
	// under state.dir.
	Quarantine source.QuarantineConfig
}

// Error is a config file that does not load: every problem in it.
type Error struct {
	File     string
	Problems []Problem
}

// Error lists every problem, one a line, as file:line: path: message.
func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.In(e.File)
	}
	return strings.Join(lines, "\n")
}

// Unwrap makes errors.Is(err, config.ErrInvalid) hold.
func (e *Error) Unwrap() error { return config.ErrInvalid }

// Load reads the config file at path and returns it with every section
// decoded, or an *Error with every problem, or the error of a file that
// cannot be read.
func Load(path string) (*Loaded, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	l, probs := check(b)
	if len(probs) > 0 {
		return nil, &Error{File: path, Problems: probs}
	}
	return l, nil
}

// File reads and checks the config file at path. The error is only for a
// file that cannot be read.
func File(path string) ([]Problem, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Check(b), nil
}

// section is one section of the root config that its owning package
// decodes and validates.
type section struct {
	key string
	// typ is the Go type the section decodes into (for line-accurate
	// decoding errors).
	typ reflect.Type
	// check runs the owner's decoding, defaults and validation on the
	// section's node and keeps the result in l. decodeErr is a decoding
	// failure, invalid the validation failures.
	check func(n *yaml.Node, l *Loaded) (decodeErr, invalid error)
}

// sections lists every section held as a yaml.Node in config.Config.
var sections = []section{
	{
		key: "detectors",
		typ: reflect.TypeFor[detect.Config](),
		check: func(n *yaml.Node, l *Loaded) (error, error) {
			c, err := detect.DecodeConfig(n)
			if err != nil && isDecodeError(err) {
				return err, nil
			}
			l.Detectors = c
			return nil, err
		},
	},
	{
		key: "alerts",
		typ: reflect.TypeFor[alert.Config](),
		check: func(n *yaml.Node, l *Loaded) (error, error) {
			c, err := alert.FromNode(n)
			if err != nil {
				return err, nil
			}
			if n.Kind != 0 {
				l.Alerts = &c
			}
			// As the daemons do: unnamed ledger and dead-letter paths
			// default to files under state.dir.
			v := c
			v.DefaultPaths(filepath.Join("state.dir", "alert"))
			return nil, v.Validate()
		},
	},
	{
		key: "storage",
		typ: reflect.TypeFor[store.Config](),
		check: func(n *yaml.Node, l *Loaded) (error, error) {
			c, err := store.DecodeConfig(n)
			if err != nil && isDecodeError(err) {
				return err, nil
			}
			if n.Kind != 0 {
				l.Storage = &c
			}
			return nil, err
		},
	},
	{
		key: "identity",
		typ: reflect.TypeFor[identity.Config](),
		check: func(n *yaml.Node, _ *Loaded) (error, error) {
			c, err := identity.FromNode(n)
			if err != nil {
				return err, nil
			}
			return nil, c.Validate()
		},
	},
	{
		key: "geo",
		typ: reflect.TypeFor[netinfo.Config](),
		check: func(n *yaml.Node, _ *Loaded) (error, error) {
			c, err := netinfo.FromNode(n)
			if err != nil {
				return err, nil
			}
			return nil, c.Validate()
		},
	},
	{
		key: "rules",
		typ: reflect.TypeFor[sigma.Config](),
		check: func(n *yaml.Node, _ *Loaded) (error, error) {
			_, err := sigma.DecodeConfig(n)
			if err != nil && isDecodeError(err) {
				return err, nil
			}
			return nil, config.Prefix("rules", err)
		},
	},
}

// quarantineSection checks the `quarantine:` section (the sources'
// rejected records).
var quarantineSection = section{
	key: "quarantine",
	typ: reflect.TypeFor[source.QuarantineConfig](),
	check: func(n *yaml.Node, l *Loaded) (error, error) {
		c, err := source.DecodeQuarantine(n)
		if err != nil && isDecodeError(err) {
			return err, nil
		}
		l.Quarantine = c
		return nil, err
	},
}

// trailSection checks the `trail:` section (CloudTrail digest validation).
var trailSection = section{
	key: "trail",
	typ: reflect.TypeFor[trail.Config](),
	check: func(n *yaml.Node, _ *Loaded) (error, error) {
		_, err := trail.DecodeConfig(n)
		if err != nil && isDecodeError(err) {
			return err, nil
		}
		return nil, err
	},
}

// watchSections check `silence:` and `canary:` (package watch).
var watchSections = []section{
	{key: "silence", typ: reflect.TypeFor[watch.SilenceConfig](), check: func(n *yaml.Node, _ *Loaded) (error, error) {
		_, err := watch.DecodeSilence(n)
		if err != nil && isDecodeError(err) {
			return err, nil
		}
		return nil, err
	}},
	{key: "canary", typ: reflect.TypeFor[watch.CanaryConfig](), check: func(n *yaml.Node, _ *Loaded) (error, error) {
		_, err := watch.DecodeCanary(n)
		if err != nil && isDecodeError(err) {
			return err, nil
		}
		return nil, err
	}},
}

func init() { sections = append(append(sections, trailSection, quarantineSection), watchSections...) }

// isDecodeError tells a YAML decoding failure from a validation failure.
func isDecodeError(err error) bool {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return true
	}
	return lineRE.MatchString(err.Error())
}

var lineRE = regexp.MustCompile(`(?s)(?:^|: )(?:yaml: )?line (\d+): (.*)$`)

// Check strictly decodes data as a root config, fills defaults and
// validates it and every section, and returns every problem found, in
// file order where lines are known. An empty result means the stage
// commands accept the file.
func Check(data []byte) []Problem {
	_, probs := check(data)
	return probs
}

// check is Check that also returns the decoded config (valid only when
// there are no problems).
func check(data []byte) (*Loaded, []Problem) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, []Problem{fromError(err, nil, "")}
	}
	idx := newIndex(&doc)

	var probs []Problem
	var c config.Config
	l := &Loaded{Config: &c}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, []Problem{fromError(err, idx, "")}
		}
		for _, e := range te.Errors {
			probs = append(probs, fromError(errors.New(e), idx, ""))
		}
	}
	c.SetDefaults()
	for _, err := range flatten(c.Validate()) {
		probs = append(probs, fromValidation(err, idx))
	}
	for _, s := range sections {
		n := sectionNode(&c, s.key)
		decErr, invalid := s.check(n, l)
		if decErr != nil {
			probs = append(probs, decodeSection(data, s, idx, decErr)...)
			continue
		}
		for _, err := range flatten(invalid) {
			probs = append(probs, fromValidation(sectionPath(s.key, err), idx))
		}
	}
	return l, dedupe(probs)
}

// sectionPath puts the section key in front of a validation error whose
// path is relative to the section (the config convention); errors that
// already name the section are kept.
func sectionPath(key string, err error) error {
	msg := err.Error()
	if strings.HasPrefix(msg, key+".") || strings.HasPrefix(msg, key+":") || strings.HasPrefix(msg, key+"[") {
		return err
	}
	path, _, ok := strings.Cut(msg, ": ")
	if !ok || strings.ContainsAny(path, " \t") {
		return fmt.Errorf("%s: %w", key, err)
	}
	return fmt.Errorf("%s.%w", key, err)
}

// sectionNode returns the node config.Config keeps for a section.
func sectionNode(c *config.Config, key string) *yaml.Node {
	v := reflect.ValueOf(c).Elem()
	t := v.Type()
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); name == key {
			return v.Field(i).Addr().Interface().(*yaml.Node)
		}
	}
	panic("configcheck: config.Config has no section " + key)
}

// decodeSection decodes the section strictly from the whole file, so
// errors carry the file's own line numbers, and turns them into problems.
// When that decoding succeeds where the owner's did not, the owner's
// error is reported as is.
func decodeSection(data []byte, s section, idx *index, ownerErr error) []Problem {
	typ := reflect.StructOf([]reflect.StructField{
		{Name: "Section", Type: s.typ, Tag: reflect.StructTag(`yaml:"` + s.key + `"`)},
		{Name: "Rest", Type: reflect.TypeFor[map[string]yaml.Node](), Tag: `yaml:",inline"`},
	})
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(reflect.New(typ).Interface())
	if err == nil || errors.Is(err, io.EOF) {
		// The owner's line numbers count from the section, not the file:
		// report its messages without them.
		var out []Problem
		msgs := flatten(ownerErr)
		var te *yaml.TypeError
		if errors.As(ownerErr, &te) {
			msgs = nil
			for _, e := range te.Errors {
				msgs = append(msgs, errors.New(e))
			}
		}
		for _, m := range msgs {
			msg := m.Error()
			if l := lineRE.FindStringSubmatch(msg); l != nil {
				msg = l[2]
			}
			out = append(out, Problem{Path: s.key, Msg: msg})
		}
		return out
	}
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return []Problem{fromError(err, idx, s.key)}
	}
	var out []Problem
	for _, e := range te.Errors {
		out = append(out, fromError(errors.New(e), idx, s.key))
	}
	return out
}

var (
	unknownFieldRE = regexp.MustCompile(`^field (\S+) not found in type \S+$`)
	backquotedRE   = regexp.MustCompile("`([^`]*)`")
)

// fromError turns a YAML decoding error into a problem, finding the path
// of the line it names. fallback is the path used when none is found.
func fromError(err error, idx *index, fallback string) Problem {
	msg := err.Error()
	m := lineRE.FindStringSubmatch(msg)
	if m == nil {
		return Problem{Path: fallback, Msg: msg}
	}
	line, _ := strconv.Atoi(m[1])
	p := Problem{Path: fallback, Line: line, Msg: m[2]}
	if idx == nil {
		return p
	}
	if f := unknownFieldRE.FindStringSubmatch(m[2]); f != nil {
		if path, ok := idx.key(line, f[1]); ok {
			p.Path, p.Msg = path, "unknown field"
		}
		return p
	}
	want, kind := "", yaml.ScalarNode
	if q := backquotedRE.FindStringSubmatch(m[2]); q != nil {
		want = q[1]
	}
	switch {
	case strings.HasPrefix(m[2], "cannot unmarshal !!seq"):
		kind = yaml.SequenceNode
	case strings.HasPrefix(m[2], "cannot unmarshal !!map"):
		kind = yaml.MappingNode
	}
	if path, ok := idx.value(line, kind, want); ok {
		p.Path = path
	}
	return p
}

// fromValidation turns one validation error ("path: message") into a
// problem, with the line of path when the file sets it.
func fromValidation(err error, idx *index) Problem {
	msg := err.Error()
	path, rest, ok := strings.Cut(msg, ": ")
	if !ok || strings.ContainsAny(path, " \t") {
		return Problem{Msg: msg}
	}
	return Problem{Path: path, Line: idx.line(path), Msg: rest}
}

// flatten lists the leaves of a tree of joined errors; a leaf whose text
// spans several lines gives one error per line.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	var out []error
	for _, l := range strings.Split(err.Error(), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, errors.New(l))
		}
	}
	return out
}

// dedupe drops repeated problems and validation noise about a field whose
// value could not be decoded, then orders by line (unknown lines last,
// in the order found).
func dedupe(probs []Problem) []Problem {
	undecodable := map[string]bool{}
	for _, p := range probs {
		if p.Line > 0 && p.Path != "" && p.Msg != "unknown field" && strings.HasPrefix(p.Msg, "cannot unmarshal") {
			undecodable[p.Path] = true
		}
	}
	seen := map[string]bool{}
	var out []Problem
	for _, p := range probs {
		k := p.String()
		if seen[k] || (undecodable[p.Path] && !strings.HasPrefix(p.Msg, "cannot unmarshal")) {
			continue
		}
		seen[k] = true
		out = append(out, p)
	}
	sort.SliceStable(out, func(i, j int) bool {
		li, lj := out[i].Line, out[j].Line
		if li == 0 || lj == 0 {
			return li != 0 && lj == 0
		}
		return li < lj
	})
	return out
}
