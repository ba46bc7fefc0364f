package sigma

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/valyala/fastjson"
)

// Record is one original audit record, parsed once and read by every rule.
type Record struct {
	v   *fastjson.Value
	src int
	buf []byte // scratch for rendering non-string values
	// Time is the record's event time (zero when unknown); correlation
	// windows use it.
	Time time.Time
}

// Parser turns record bytes into Records. It reuses memory between calls:
// a Record is valid until the next Parse on the same Parser. Not safe for
// concurrent use.
type Parser struct {
	p   fastjson.Parser
	p2  fastjson.Parser
	rec Record
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
	*r = Record{v: v, buf: r.buf[:0]}
	switch source {
	case "cloudtrail":
		r.src = srcCloudTrail
	case "vault", "openbao":
		r.src = srcVault
	default:
		if v.Exists("eventSource") || v.Exists("eventName") {
			r.src = srcCloudTrail
		} else if v.Exists("request") || v.Exists("type") {
			r.src = srcVault
		}
	}
	var ts []byte
	if r.src == srcCloudTrail {
		ts = v.GetStringBytes("eventTime")
	} else {
		ts = v.GetStringBytes("time")
	}
	if len(ts) > 0 {
		if t, err := time.Parse(time.RFC3339Nano, string(ts)); err == nil {
			r.Time = t.UTC()
		}
	}
	return r, nil
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
func exists(v *fastjson.Value, path []string) bool {
	found := false
	visitAll(v, path, func(*fastjson.Value) bool { found = true; return true })
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
	visit(r.v, path, func(v *fastjson.Value) bool {
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
