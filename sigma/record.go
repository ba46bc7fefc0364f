package sigma

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/valyala/fastjson"

	"auditwatch/ingest/jsonx"
)

// Record is one original audit record, read by every rule. It is either
// parsed whole, or (from Set.MatchEvent) read lazily: the top-level
// members are located in the text and each is parsed on first use, so a
// rule that reads two fields does not pay for the whole tree.
type Record struct {
	v    *fastjson.Value // the whole record; nil while lazy
	raw  []byte          // lazy: the record's text
	tops []topMember     // lazy: its top-level members found so far
	scan int             // lazy: where the next member starts (-1: all found)
	bad  bool            // lazy: found malformed
	p    *Parser
	src  int
	buf  []byte // scratch for rendering non-string values
	time time.Time
	// timeDone: time was read
	timeDone bool
}

type topMember struct {
	key  []byte
	s, e int
	v    *fastjson.Value // parsed value, nil until used
}

// Parser turns record bytes into Records. It reuses memory between calls:
// a Record is valid until the next Parse on the same Parser. Not safe for
// concurrent use.
type Parser struct {
	p   fastjson.Parser
	p2  fastjson.Parser
	rec Record
	// lazily parsed members, one parser each
	subs []*fastjson.Parser
	nsub int
	tops []topMember
	// scratch of MatchEvent
	cands []int
	hits  []Hit
	low   []byte
	kbuf  []byte
}

// Parse reads one record. source is "cloudtrail" or "vault" (as
// schema.Event.Source); an empty source is detected from the record.
// CloudTrail records wrapped by EventBridge (detail) or LookupEvents
// (CloudTrailEvent, a JSON string) are unwrapped.
func (p *Parser) Parse(b []byte, source string) (*Record, error) {
	v, err := p.p.ParseBytes(b)
	if err != nil {
		return nil, fmt.Errorf("sigma: record: %w", err)
	}
	if v.Type() != fastjson.TypeObject {
		return nil, fmt.Errorf("sigma: record is not a JSON object")
	}
	v, err = p.unwrap(v)
	if err != nil {
		return nil, err
	}
	r := &p.rec
	*r = Record{v: v, buf: r.buf[:0], p: p, scan: -1}
	r.src = srcOf(source, v.Exists("eventSource") || v.Exists("eventName"), v.Exists("request") || v.Exists("type"))
	return r, nil
}

func srcOf(source string, ctKeys, vaultKeys bool) int {
	switch source {
	case "cloudtrail":
		return srcCloudTrail
	case "vault", "openbao":
		return srcVault
	}
	if ctKeys {
		return srcCloudTrail
	}
	if vaultKeys {
		return srcVault
	}
	return srcNone
}

// parseLazy reads a record without escapes lazily: its top-level members
// are located on demand, scanning no further than the member a rule asks
// for (CloudTrail's userIdentity and eventName come early). ok is false
// when it must be parsed whole (not an object, a wrapper). A record found
// malformed while scanning is marked bad (MatchEvent reports it).
func (p *Parser) parseLazy(b []byte, source string) (*Record, bool) {
	if cap(p.tops) < 64 {
		p.tops = make([]topMember, 0, 64)
	}
	p.tops = p.tops[:0]
	p.nsub = 0
	i := jsonx.SkipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, false
	}
	r := &p.rec
	*r = Record{raw: b, tops: p.tops, buf: r.buf[:0], p: p, scan: jsonx.SkipWS(b, i+1)}
	if r.scan < len(b) && b[r.scan] == '}' {
		if jsonx.SkipWS(b, r.scan+1) != len(b) {
			return nil, false
		}
		r.scan = -1
	}
	has := func(k string) bool { return r.member(k) != nil }
	// EventBridge's wrapper (its member names are also found in the
	// text; LookupEvents' CloudTrailEvent string has escapes, so such a
	// record never comes here)
	if containsLit(b2s(b), "detail-type") && has("detail") && has("detail-type") {
		return nil, false
	}
	if source != "cloudtrail" && source != "vault" && source != "openbao" {
		r.src = srcOf(source, has("eventSource") || has("eventName"), has("request") || has("type"))
	} else {
		r.src = srcOf(source, false, false)
	}
	return r, true
}

// member returns the top-level member named k (nil if none), scanning
// further into a lazy record as needed.
func (r *Record) member(k string) *topMember {
	for i := range r.tops {
		if string(r.tops[i].key) == k {
			return &r.tops[i]
		}
	}
	for r.scan >= 0 {
		m := r.step()
		if m != nil && string(m.key) == k {
			return m
		}
	}
	return nil
}

// step scans the next top-level member of a lazy record.
func (r *Record) step() *topMember {
	b, i := r.raw, r.scan
	fail := func() *topMember {
		r.scan, r.bad = -1, true
		return nil
	}
	if i >= len(b) || b[i] != '"' {
		return fail()
	}
	end, esc := jsonx.String(b, i)
	if end < 0 || esc {
		return fail()
	}
	key := b[i+1 : end-1]
	if i = jsonx.SkipWS(b, end); i >= len(b) || b[i] != ':' {
		return fail()
	}
	v := jsonx.SkipWS(b, i+1)
	e := jsonx.Skip(b, v, 2)
	if e < 0 {
		return fail()
	}
	i = jsonx.SkipWS(b, e)
	switch {
	case i < len(b) && b[i] == '}':
		if jsonx.SkipWS(b, i+1) != len(b) {
			return fail()
		}
		r.scan = -1
	case i < len(b) && b[i] == ',':
		r.scan = jsonx.SkipWS(b, i+1)
	default:
		return fail()
	}
	r.tops = append(r.tops, topMember{key: key, s: v, e: e})
	r.p.tops = r.tops
	return &r.tops[len(r.tops)-1]
}

// value parses a lazy member on first use.
func (r *Record) value(m *topMember) *fastjson.Value {
	if m.v != nil {
		return m.v
	}
	p := r.p
	if p.nsub == len(p.subs) {
		p.subs = append(p.subs, new(fastjson.Parser))
	}
	sp := p.subs[p.nsub]
	p.nsub++
	v, err := sp.ParseBytes(r.raw[m.s:m.e])
	if err != nil {
		// the lexer accepted it: cannot happen; read it as null
		v = fastjson.MustParse("null")
	}
	m.v = v
	return v
}

// root resolves the first element(s) of path: the value to walk the rest
// of path from. A top-level key with dots in it is tried too.
func (r *Record) root(path []string) (*fastjson.Value, []string, bool) {
	if r.v != nil {
		return r.v, path, true
	}
	if m := r.member(path[0]); m != nil {
		return r.value(m), path[1:], true
	}
	key := path[0]
	for j := 1; j < len(path); j++ {
		key += "." + path[j]
		if m := r.member(key); m != nil {
			return r.value(m), path[j+1:], true
		}
	}
	return nil, nil, false
}

// visit calls f with every value at path (see visit).
func (r *Record) visit(path []string, f func(*fastjson.Value) bool) bool {
	v, rest, ok := r.root(path)
	if !ok {
		return false
	}
	return visit(v, rest, f)
}

// visitAll is visitAll over the record.
func (r *Record) visitAll(path []string, f func(*fastjson.Value) bool) bool {
	v, rest, ok := r.root(path)
	if !ok {
		return false
	}
	return visitAll(v, rest, f)
}

// whole returns the whole record's tree, parsing it if lazy.
func (r *Record) whole() *fastjson.Value {
	if r.v == nil {
		v, err := r.p.p.ParseBytes(r.raw)
		if err != nil {
			v = fastjson.MustParse("{}")
		}
		r.v = v
	}
	return r.v
}

// EventTime is the record's event time (eventTime or time; zero when
// absent or unreadable).
func (r *Record) EventTime() time.Time {
	if !r.timeDone {
		r.timeDone = true
		k := "time"
		if r.src == srcCloudTrail {
			k = "eventTime"
		}
		if s, ok := r.Field([]string{k}); ok {
			if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
				r.time = t.UTC()
			}
		}
	}
	return r.time
}

func (p *Parser) unwrap(v *fastjson.Value) (*fastjson.Value, error) {
	if d := v.Get("detail"); d != nil && d.Type() == fastjson.TypeObject && v.Exists("detail-type") {
		return d, nil
	}
	if c := v.Get("CloudTrailEvent"); c != nil && c.Type() == fastjson.TypeString {
		inner, err := p.p2.ParseBytes(c.GetStringBytes())
		if err != nil {
			return nil, fmt.Errorf("sigma: CloudTrailEvent: %w", err)
		}
		if inner.Type() != fastjson.TypeObject {
			return nil, fmt.Errorf("sigma: CloudTrailEvent is not a JSON object")
		}
		return inner, nil
	}
	return v, nil
}

// visit calls f with every value at path (arrays on the way and at the end
// fan out), until f returns true. It reports whether f returned true.
func visit(v *fastjson.Value, path []string, f func(*fastjson.Value) bool) bool {
	for i, k := range path {
		switch v.Type() {
		case fastjson.TypeObject:
			o, _ := v.Object()
			nv := o.Get(k)
			if nv == nil {
				// a key with dots in it
				if i < len(path)-1 {
					return visitJoined(o, path[i:], f)
				}
				return false
			}
			v = nv
		case fastjson.TypeArray:
			arr, _ := v.Array()
			for _, e := range arr {
				if visit(e, path[i:], f) {
					return true
				}
			}
			return false
		default:
			return false
		}
	}
	if v.Type() == fastjson.TypeArray {
		arr, _ := v.Array()
		for _, e := range arr {
			if f(e) {
				return true
			}
		}
		// an empty array is still a present value, but has nothing to match
		return false
	}
	return f(v)
}

func visitJoined(o *fastjson.Object, path []string, f func(*fastjson.Value) bool) bool {
	key := path[0]
	for j := 1; j < len(path); j++ {
		key += "." + path[j]
		if nv := o.Get(key); nv != nil {
			return visit(nv, path[j+1:], f)
		}
	}
	return false
}

// exists reports whether the path is present (even as null).
func (r *Record) exists(path []string) bool {
	found := false
	r.visitAll(path, func(*fastjson.Value) bool { found = true; return true })
	return found
}

// visitAll is visit that also calls f on an empty array at the end.
func visitAll(v *fastjson.Value, path []string, f func(*fastjson.Value) bool) bool {
	for i, k := range path {
		switch v.Type() {
		case fastjson.TypeObject:
			o, _ := v.Object()
			nv := o.Get(k)
			if nv == nil {
				if i < len(path)-1 {
					key := k
					for j := i + 1; j < len(path); j++ {
						key += "." + path[j]
						if nv := o.Get(key); nv != nil {
							return visitAll(nv, path[j+1:], f)
						}
					}
				}
				return false
			}
			v = nv
		case fastjson.TypeArray:
			arr, _ := v.Array()
			for _, e := range arr {
				if visitAll(e, path[i:], f) {
					return true
				}
			}
			return false
		default:
			return false
		}
	}
	return f(v)
}

// text renders a leaf value as the string rules compare: strings as they
// are, numbers and booleans as written, objects and arrays as compact JSON.
// null gives ok=false.
func (r *Record) text(v *fastjson.Value) (string, bool) {
	switch v.Type() {
	case fastjson.TypeString:
		return b2s(v.GetStringBytes()), true
	case fastjson.TypeNull:
		return "", false
	case fastjson.TypeTrue:
		return "true", true
	case fastjson.TypeFalse:
		return "false", true
	}
	r.buf = v.MarshalTo(r.buf[:0])
	return b2s(r.buf), true
}

// b2s views b as a string without copying: the result is valid until the
// record's memory is reused, and is never kept beyond one evaluation.
func b2s(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

func number(s string) (float64, bool) {
	f, err := strconv.ParseFloat(s, 64)
	return f, err == nil
}

// Field returns the first value at a dotted path as text ("" and false
// when absent or null). Correlation group-by and value_count use it.
func (r *Record) Field(path []string) (string, bool) {
	var out string
	var ok bool
	r.visit(path, func(v *fastjson.Value) bool {
		out, ok = r.text(v)
		out = strings.Clone(out)
		return true
	})
	return out, ok
}

// strings calls f with every string leaf of the record (keywords).
func (r *Record) eachString(v *fastjson.Value, f func(string) bool) bool {
	switch v.Type() {
	case fastjson.TypeString:
		return f(b2s(v.GetStringBytes()))
	case fastjson.TypeObject:
		o, _ := v.Object()
		found := false
		o.Visit(func(_ []byte, e *fastjson.Value) {
			if !found && r.eachString(e, f) {
				found = true
			}
		})
		return found
	case fastjson.TypeArray:
		arr, _ := v.Array()
		for _, e := range arr {
			if r.eachString(e, f) {
				return true
			}
		}
	}
	return false
}
