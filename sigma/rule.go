package sigma

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Problem kinds.
const (
	// KindInvalid: the rule is not valid Sigma; a set containing it is rejected.
	KindInvalid = "invalid"
	// KindUnsupported: valid Sigma the engine does not evaluate; the rule is
	// skipped with a warning.
	KindUnsupported = "unsupported"
)

// Problem is an error in one rule, with its position.
type Problem struct {
	File string
	Line int // 1-based; 0 when unknown
	Kind string
	Rule string // title or id when known
	Msg  string
}

func (p *Problem) Error() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
	}
	b.WriteString(": ")
	b.WriteString(p.Kind)
	if p.Rule != "" {
		fmt.Fprintf(&b, " (rule %q)", p.Rule)
	}
	b.WriteString(": ")
	b.WriteString(p.Msg)
	return b.String()
}

// LogSource is a rule's logsource section.
type LogSource struct {
	Product  string
	Service  string
	Category string
}

// Rule is one compiled Sigma rule or correlation rule.
type Rule struct {
	File        string
	Line        int
	ID          string
	Name        string
	Title       string
	Status      string
	Level       string
	Author      string
	Description string
	License     string
	Date        string
	References  []string
	Tags        []string
	LogSource   LogSource

	// detection (single-event rules)
	det *detection
	// Correlation is set for correlation rules.
	Correlation *Correlation
	// referenced is true when a correlation rule refers to this rule and
	// none of them asks to generate it: it then raises no findings itself.
	referenced bool
	generated  bool
	// markOwner, markPos: the rule's bit in the marks of the Set built
	// last with it (see marks)
	markOwner uint64
	markPos   uint8
}

// IsCorrelation reports whether r is a correlation rule.
func (r *Rule) IsCorrelation() bool { return r.Correlation != nil }

// Key is the rule's stable identity: its id, else its name, else its title.
func (r *Rule) Key() string {
	switch {
	case r.ID != "":
		return r.ID
	case r.Name != "":
		return r.Name
	}
	return r.Title
}

// Techniques returns the MITRE ATT&CK technique ids of the rule's tags
// (attack.t1078.002 → T1078.002).
func (r *Rule) Techniques() []string {
	var out []string
	for _, t := range r.Tags {
		l := strings.ToLower(t)
		if strings.HasPrefix(l, "attack.t") && len(l) > 9 && l[8] >= '0' && l[8] <= '9' {
			out = append(out, strings.ToUpper(l[7:]))
		}
	}
	return out
}

// Options tune compilation.
type Options struct {
	// Placeholders are the values of %name% placeholders for the expand
	// modifier.
	Placeholders map[string][]string
	// License applies to rules that name none (e.g. from a LICENSE file
	// beside them).
	License string
	// forms collects the modifiers and condition forms a detection uses
	// (set per detection while compiling).
	forms map[string]bool
}

// ParseFile parses every YAML document of one rule file. It returns the
// compiled rules and the problems found (invalid and unsupported), each
// naming file and line. Correlation references are resolved by Compile.
func ParseFile(name string, data []byte, opt Options) ([]*Rule, []*Problem) {
	var rules []*Rule
	var probs []*Problem
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for doc := 0; ; doc++ {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			probs = append(probs, &Problem{File: name, Line: yamlErrLine(err), Kind: KindInvalid, Msg: "YAML: " + yamlErrMsg(err)})
			break
		}
		if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
			n = *n.Content[0]
		}
		if n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.Tag == "!!null") {
			continue
		}
		r, p := parseRule(name, &n, opt)
		if p != nil {
			probs = append(probs, p)
			continue
		}
		rules = append(rules, r)
	}
	return rules, probs
}

var yamlLineRE = regexp.MustCompile(`line (\d+)`)

func yamlErrLine(err error) int {
	m := yamlLineRE.FindStringSubmatch(err.Error())
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func yamlErrMsg(err error) string {
	return strings.TrimPrefix(err.Error(), "yaml: ")
}

type perr struct {
	line int
	kind string
	msg  string
}

func (e *perr) Error() string { return e.msg }

func invalid(n *yaml.Node, format string, a ...any) *perr {
	l := 0
	if n != nil {
		l = n.Line
	}
	return &perr{line: l, kind: KindInvalid, msg: fmt.Sprintf(format, a...)}
}

func unsupported(n *yaml.Node, format string, a ...any) *perr {
	l := 0
	if n != nil {
		l = n.Line
	}
	return &perr{line: l, kind: KindUnsupported, msg: fmt.Sprintf(format, a...)}
}

func mapGet(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

func scalar(n *yaml.Node, what string) (string, *perr) {
	if n == nil {
		return "", nil
	}
	if n.Kind != yaml.ScalarNode {
		return "", invalid(n, "%s must be a string", what)
	}
	if n.Tag == "!!null" {
		return "", nil
	}
	return n.Value, nil
}

func stringList(n *yaml.Node, what string) ([]string, *perr) {
	if n == nil {
		return nil, nil
	}
	if n.Kind == yaml.ScalarNode {
		if n.Tag == "!!null" {
			return nil, nil
		}
		return []string{n.Value}, nil
	}
	if n.Kind != yaml.SequenceNode {
		return nil, invalid(n, "%s must be a list of strings", what)
	}
	out := make([]string, 0, len(n.Content))
	for _, c := range n.Content {
		if c.Kind != yaml.ScalarNode {
			return nil, invalid(c, "%s must be a list of strings", what)
		}
		out = append(out, c.Value)
	}
	return out, nil
}

var levels = map[string]bool{"informational": true, "low": true, "medium": true, "high": true, "critical": true}

func parseRule(file string, n *yaml.Node, opt Options) (r *Rule, p *Problem) {
	r = &Rule{File: file, Line: n.Line, License: opt.License}
	fail := func(e *perr) (*Rule, *Problem) {
		name := r.Title
		if name == "" {
			name = r.ID
		}
		return nil, &Problem{File: file, Line: e.line, Kind: e.kind, Rule: name, Msg: e.msg}
	}
	if n.Kind != yaml.MappingNode {
		return fail(invalid(n, "a rule must be a YAML mapping"))
	}
	if n.Tag == "!!merge" || mapGet(n, "action") != nil {
		return fail(unsupported(mapGet(n, "action"), "legacy rule collection 'action' documents are not supported"))
	}
	var e *perr
	str := func(key string, dst *string) {
		if e != nil {
			return
		}
		*dst, e = scalar(mapGet(n, key), key)
	}
	str("title", &r.Title)
	str("id", &r.ID)
	str("name", &r.Name)
	str("status", &r.Status)
	str("level", &r.Level)
	str("description", &r.Description)
	if l := mapGet(n, "license"); l != nil {
		str("license", &r.License)
	}
	str("date", &r.Date)
	if e != nil {
		return fail(e)
	}
	if r.License == "" {
		r.License = opt.License
	}
	if a := mapGet(n, "author"); a != nil {
		// author is a string; some rules list several
		if a.Kind == yaml.SequenceNode {
			l, e := stringList(a, "author")
			if e != nil {
				return fail(e)
			}
			r.Author = strings.Join(l, ", ")
		} else if r.Author, e = scalar(a, "author"); e != nil {
			return fail(e)
		}
	}
	if r.References, e = stringList(mapGet(n, "references"), "references"); e != nil {
		return fail(e)
	}
	if r.Tags, e = stringList(mapGet(n, "tags"), "tags"); e != nil {
		return fail(e)
	}
	if _, e = stringList(mapGet(n, "falsepositives"), "falsepositives"); e != nil {
		return fail(e)
	}
	if r.Title == "" {
		return fail(invalid(n, "title is required"))
	}
	if len(r.Title) > 256 {
		return fail(invalid(mapGet(n, "title"), "title is longer than 256 characters"))
	}
	if r.Level != "" && !levels[r.Level] {
		return fail(invalid(mapGet(n, "level"), "unknown level %q (informational, low, medium, high, critical)", r.Level))
	}
	if st := r.Status; st != "" {
		switch st {
		case "stable", "test", "experimental", "deprecated", "unsupported":
		default:
			return fail(invalid(mapGet(n, "status"), "unknown status %q", st))
		}
	}
	if c := mapGet(n, "correlation"); c != nil {
		corr, e := parseCorrelation(c, n)
		if e != nil {
			return fail(e)
		}
		r.Correlation = corr
		return r, nil
	}
	ls := mapGet(n, "logsource")
	if ls == nil {
		return fail(invalid(n, "logsource is required"))
	}
	if ls.Kind != yaml.MappingNode {
		return fail(invalid(ls, "logsource must be a mapping"))
	}
	str2 := func(key string, dst *string) {
		if e == nil {
			*dst, e = scalar(mapGet(ls, key), "logsource."+key)
		}
	}
	str2("product", &r.LogSource.Product)
	str2("service", &r.LogSource.Service)
	str2("category", &r.LogSource.Category)
	if e != nil {
		return fail(e)
	}
	d := mapGet(n, "detection")
	if d == nil {
		return fail(invalid(n, "detection is required"))
	}
	det, e := compileDetection(d, opt)
	if e != nil {
		return fail(e)
	}
	r.det = det
	if sourceOf(r.LogSource) == srcNone {
		return fail(unsupported(ls, "log source %s has no records here (supported: product aws/service cloudtrail, product vault or openbao)", r.LogSource))
	}
	return r, nil
}

func (l LogSource) String() string {
	var parts []string
	if l.Product != "" {
		parts = append(parts, "product "+l.Product)
	}
	if l.Service != "" {
		parts = append(parts, "service "+l.Service)
	}
	if l.Category != "" {
		parts = append(parts, "category "+l.Category)
	}
	if len(parts) == 0 {
		return "(empty)"
	}
	return strings.Join(parts, ", ")
}

// record sources a log source can select.
const (
	srcNone = iota
	srcCloudTrail
	srcVault
)

func sourceOf(l LogSource) int {
	p := strings.ToLower(l.Product)
	s := strings.ToLower(l.Service)
	switch {
	case p == "aws" && (s == "cloudtrail" || s == "") && l.Category == "":
		return srcCloudTrail
	case (p == "vault" || p == "openbao") && (s == "" || s == "audit") && l.Category == "":
		return srcVault
	}
	return srcNone
}

// parseTimespan reads a Sigma timespan: a number and one of s, m, h, d.
func parseTimespan(n *yaml.Node) (time.Duration, *perr) {
	v, e := scalar(n, "timespan")
	if e != nil {
		return 0, e
	}
	if len(v) < 2 {
		return 0, invalid(n, "timespan %q: want a number and s, m, h or d (e.g. 90m)", v)
	}
	num, err := strconv.Atoi(v[:len(v)-1])
	if err != nil || num <= 0 {
		return 0, invalid(n, "timespan %q: want a positive number and s, m, h or d (e.g. 90m)", v)
	}
	unit := map[byte]time.Duration{'s': time.Second, 'm': time.Minute, 'h': time.Hour, 'd': 24 * time.Hour, 'w': 7 * 24 * time.Hour}[v[len(v)-1]]
	if unit == 0 {
		return 0, invalid(n, "timespan %q: unit must be s, m, h or d", v)
	}
	return time.Duration(num) * unit, nil
}
