package sigma

import (
	"fmt"
	"path"
	"strconv"
	"strings"
)

// node is a compiled condition.
type node interface {
	eval(r *Record, d *detection) bool
}

type selNode struct {
	name string
	sel  *selection
}

type andNode struct{ kids []node }
type orNode struct{ kids []node }
type notNode struct{ kid node }

// ofNode is "N of pattern" / "all of pattern" (need = 0 means all).
type ofNode struct {
	need int
	sels []*selNode
}

func (n *selNode) eval(r *Record, _ *detection) bool { return n.sel.eval(r) }

func (n *andNode) eval(r *Record, d *detection) bool {
	for _, k := range n.kids {
		if !k.eval(r, d) {
			return false
		}
	}
	return true
}

func (n *orNode) eval(r *Record, d *detection) bool {
	for _, k := range n.kids {
		if k.eval(r, d) {
			return true
		}
	}
	return false
}

func (n *notNode) eval(r *Record, d *detection) bool { return !n.kid.eval(r, d) }

func (n *ofNode) eval(r *Record, d *detection) bool {
	hits := 0
	for i, s := range n.sels {
		if s.eval(r, d) {
			hits++
			if n.need > 0 && hits >= n.need {
				return true
			}
		} else if n.need == 0 {
			return false
		}
		// not enough left to reach need
		if n.need > 0 && hits+len(n.sels)-i-1 < n.need {
			return false
		}
	}
	return n.need == 0
}

type condErr struct {
	msg         string
	unsupported bool
}

type condParser struct {
	toks []string
	pos  int
	det  *detection
}

// tokenize splits a condition into words, parentheses and pipes.
func tokenize(s string) []string {
	var out []string
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(' || c == ')' || c == '|':
			out = append(out, string(c))
			i++
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t\n\r()|", rune(s[j])) {
				j++
			}
			out = append(out, s[i:j])
			i = j
		}
	}
	return out
}

// maxCondTokens bounds a condition's size.
const maxCondTokens = 4096

func parseCondition(s string, det *detection) (node, *condErr) {
	toks := tokenize(s)
	if len(toks) == 0 {
		return nil, &condErr{msg: "empty condition"}
	}
	if len(toks) > maxCondTokens {
		return nil, &condErr{msg: "condition too long"}
	}
	for _, t := range toks {
		if t == "|" {
			return nil, &condErr{msg: "the legacy aggregation syntax (| count() …) is not supported; use a correlation rule", unsupported: true}
		}
		if strings.EqualFold(t, "near") {
			return nil, &condErr{msg: "the legacy near operator is not supported; use a temporal correlation rule", unsupported: true}
		}
	}
	p := &condParser{toks: toks, det: det}
	n, err := p.expr(0)
	if err != nil {
		return nil, err
	}
	if p.pos < len(p.toks) {
		return nil, &condErr{msg: fmt.Sprintf("unexpected %q at word %d", p.toks[p.pos], p.pos+1)}
	}
	return n, nil
}

func (p *condParser) peek() string {
	if p.pos < len(p.toks) {
		return p.toks[p.pos]
	}
	return ""
}

const maxCondDepth = 200

func (p *condParser) expr(depth int) (node, *condErr) {
	if depth > maxCondDepth {
		return nil, &condErr{msg: "condition nested too deeply"}
	}
	first, err := p.and(depth)
	if err != nil {
		return nil, err
	}
	kids := []node{first}
	for strings.EqualFold(p.peek(), "or") {
		p.det.form("or")
		p.pos++
		n, err := p.and(depth)
		if err != nil {
			return nil, err
		}
		kids = append(kids, n)
	}
	if len(kids) == 1 {
		return first, nil
	}
	return &orNode{kids: kids}, nil
}

func (p *condParser) and(depth int) (node, *condErr) {
	first, err := p.unary(depth)
	if err != nil {
		return nil, err
	}
	kids := []node{first}
	for strings.EqualFold(p.peek(), "and") {
		p.det.form("and")
		p.pos++
		n, err := p.unary(depth)
		if err != nil {
			return nil, err
		}
		kids = append(kids, n)
	}
	if len(kids) == 1 {
		return first, nil
	}
	return &andNode{kids: kids}, nil
}

func (p *condParser) unary(depth int) (node, *condErr) {
	if depth > maxCondDepth {
		return nil, &condErr{msg: "condition nested too deeply"}
	}
	t := p.peek()
	switch {
	case t == "":
		return nil, &condErr{msg: "condition ends where a selection was expected"}
	case strings.EqualFold(t, "not"):
		p.det.form("not")
		p.pos++
		k, err := p.unary(depth + 1)
		if err != nil {
			return nil, err
		}
		return &notNode{kid: k}, nil
	case t == "(":
		p.det.form("parentheses")
		p.pos++
		n, err := p.expr(depth + 1)
		if err != nil {
			return nil, err
		}
		if p.peek() != ")" {
			return nil, &condErr{msg: "missing )"}
		}
		p.pos++
		return n, nil
	case t == ")":
		return nil, &condErr{msg: fmt.Sprintf("unexpected ) at word %d", p.pos+1)}
	case strings.EqualFold(t, "and") || strings.EqualFold(t, "or") || strings.EqualFold(t, "of"):
		return nil, &condErr{msg: fmt.Sprintf("unexpected %q at word %d", t, p.pos+1)}
	}
	if p.pos+1 < len(p.toks) && strings.EqualFold(p.toks[p.pos+1], "of") {
		return p.of()
	}
	p.pos++
	sel, ok := p.det.sels[t]
	if !ok {
		return nil, &condErr{msg: fmt.Sprintf("selection %q is not defined", t)}
	}
	return &selNode{name: t, sel: sel}, nil
}

func (p *condParser) of() (node, *condErr) {
	q := p.toks[p.pos]
	need := 0
	if !strings.EqualFold(q, "all") {
		if strings.EqualFold(q, "any") {
			q = "1"
		}
		n, err := strconv.Atoi(q)
		if err != nil || n < 1 {
			return nil, &condErr{msg: fmt.Sprintf("%q of: want 1, a positive number or all", q)}
		}
		need = n
	}
	p.pos += 2
	target := p.peek()
	if target == "" || target == "(" || target == ")" {
		return nil, &condErr{msg: "of needs a selection pattern or them"}
	}
	p.pos++
	var sels []*selNode
	for _, name := range p.det.names {
		if strings.EqualFold(target, "them") {
			if strings.HasPrefix(name, "_") {
				continue
			}
		} else if ok, err := path.Match(target, name); err != nil {
			return nil, &condErr{msg: fmt.Sprintf("bad selection pattern %q", target)}
		} else if !ok {
			continue
		}
		sels = append(sels, &selNode{name: name, sel: p.det.sels[name]})
	}
	if len(sels) == 0 {
		return nil, &condErr{msg: fmt.Sprintf("no selection matches %q", target)}
	}
	form := "1 of "
	if need == 0 {
		form = "all of "
	} else if need > 1 {
		form = "N of "
	}
	if strings.EqualFold(target, "them") {
		form += "them"
	} else {
		form += "X*"
	}
	p.det.form(form)
	return &ofNode{need: need, sels: sels}, nil
}
