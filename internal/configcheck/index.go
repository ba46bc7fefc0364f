package configcheck

import (
	"strconv"

	"go.yaml.in/yaml/v3"
)

// index maps the nodes of a parsed document to their YAML paths.
type index struct {
	entries []entry
	lines   map[string]int
}

type entry struct {
	path  string
	line  int
	isKey bool
	kind  yaml.Kind
	value string
}

func newIndex(doc *yaml.Node) *index {
	x := &index{lines: map[string]int{}}
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		x.walk(doc.Content[0], "")
	}
	return x
}

func (x *index) walk(n *yaml.Node, path string) {
	switch n.Kind {
	case yaml.AliasNode:
		if n.Alias != nil {
			x.walk(n.Alias, path)
		}
	case yaml.MappingNode:
		x.entries = append(x.entries, entry{path: path, line: n.Line, kind: yaml.MappingNode})
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			if k.Tag == "!!merge" {
				x.walk(v, path)
				continue
			}
			x.entries = append(x.entries, entry{path: p, line: k.Line, isKey: true, value: k.Value})
			if _, dup := x.lines[p]; !dup {
				x.lines[p] = k.Line
			}
			x.walk(v, p)
		}
	case yaml.SequenceNode:
		x.entries = append(x.entries, entry{path: path, line: n.Line, kind: yaml.SequenceNode})
		for i, c := range n.Content {
			p := path + "[" + strconv.Itoa(i) + "]"
			if _, dup := x.lines[p]; !dup {
				x.lines[p] = c.Line
			}
			x.walk(c, p)
		}
	case yaml.ScalarNode:
		x.entries = append(x.entries, entry{path: path, line: n.Line, kind: yaml.ScalarNode, value: n.Value})
	}
}

// key finds the path of the mapping key name on line.
func (x *index) key(line int, name string) (string, bool) {
	for _, e := range x.entries {
		if e.isKey && e.line == line && e.value == name {
			return e.path, true
		}
	}
	return "", false
}

// value finds the path of a value of kind on line: for a scalar, the
// first whose text is want, else the first; for a mapping or sequence,
// the innermost.
func (x *index) value(line int, kind yaml.Kind, want string) (string, bool) {
	best, found := "", false
	for _, e := range x.entries {
		if e.isKey || e.line != line || e.kind != kind {
			continue
		}
		if kind != yaml.ScalarNode {
			best, found = e.path, true
			continue
		}
		if e.value == want {
			return e.path, true
		}
		if !found {
			best, found = e.path, true
		}
	}
	return best, found
}

// line is the line that sets path, 0 when the file does not set it.
func (x *index) line(path string) int {
	if x == nil {
		return 0
	}
	return x.lines[path]
}
