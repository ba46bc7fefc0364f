package secret

import (
	"fmt"
	"reflect"
	"strings"
)

// Walk calls fn for every Secret reachable from v (structs, pointers,
// slices, maps), with its path in YAML names ("alerts.outputs[0].slack.token").
func Walk(v any, fn func(path string, s Secret)) {
	walk(reflect.ValueOf(v), "", fn, 0)
}

var secretType = reflect.TypeOf(Secret{})

func walk(v reflect.Value, path string, fn func(string, Secret), depth int) {
	if depth > 32 || !v.IsValid() {
		return
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			walk(v.Elem(), path, fn, depth+1)
		}
	case reflect.Struct:
		if v.Type() == secretType {
			fn(path, v.Interface().(Secret))
			return
		}
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name := strings.Split(f.Tag.Get("yaml"), ",")[0]
			if name == "-" {
				continue
			}
			p := path
			switch {
			case f.Anonymous && name == "":
				// embedded: its fields are the parent's
			case name == "":
				p = join(path, strings.ToLower(f.Name))
			default:
				p = join(path, name)
			}
			walk(v.Field(i), p, fn, depth+1)
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			walk(v.Index(i), fmt.Sprintf("%s[%d]", path, i), fn, depth+1)
		}
	case reflect.Map:
		for _, k := range v.MapKeys() {
			walk(v.MapIndex(k), join(path, fmt.Sprint(k.Interface())), fn, depth+1)
		}
	}
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}
