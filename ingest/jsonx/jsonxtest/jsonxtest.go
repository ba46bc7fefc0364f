// Package jsonxtest owns test helpers shared by the parsers' tests that
// compare the in-place lexer path with the fastjson reference path.
package jsonxtest

import "github.com/valyala/fastjson"

// HasDuplicateKeys reports whether any object in v repeats a key (or v is
// nested deeper than 64 levels). The two parse paths read repeated keys
// differently by design, so such records are left out of the comparison.
func HasDuplicateKeys(v *fastjson.Value) bool { return hasDuplicateKeys(v, 0) }

func hasDuplicateKeys(v *fastjson.Value, depth int) bool {
	if depth > 64 {
		return true
	}
	switch v.Type() {
	case fastjson.TypeObject:
		o, _ := v.Object()
		seen := map[string]bool{}
		dup := false
		o.Visit(func(k []byte, e *fastjson.Value) {
			if seen[string(k)] || hasDuplicateKeys(e, depth+1) {
				dup = true
			}
			seen[string(k)] = true
		})
		return dup
	case fastjson.TypeArray:
		a, _ := v.Array()
		for _, e := range a {
			if hasDuplicateKeys(e, depth+1) {
				return true
			}
		}
	}
	return false
}
