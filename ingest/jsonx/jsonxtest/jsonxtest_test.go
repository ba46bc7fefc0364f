package jsonxtest

import (
	"strings"
	"testing"

	"github.com/valyala/fastjson"
)

func TestHasDuplicateKeys(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{`{"a":1,"b":2}`, false},
		{`{"a":1,"a":2}`, true},
		{`{"a":{"b":1,"b":2}}`, true},
		{`[{"x":1},{"x":2}]`, false},
		{`[{"x":1,"x":1}]`, true},
		{strings.Repeat("[", 70) + strings.Repeat("]", 70), true},
	} {
		v, err := fastjson.Parse(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		if got := HasDuplicateKeys(v); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.in, got, tc.want)
		}
	}
}
