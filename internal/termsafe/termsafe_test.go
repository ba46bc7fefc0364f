package termsafe

import "testing"

func TestString(t *testing.T) {
	cases := map[string]string{
		"plain text é":  "plain text é",
		"a\x1b[31mred":  `a\x1b[31mred`,
		"line\nbreak\r": `line\nbreak\r`,
		"bad \xff byte": `bad \xff byte`,
		"sep\u2028":     `sep\u2028`,
	}
	for in, want := range cases {
		if got := String(in); got != want {
			t.Errorf("String(%q) = %q, want %q", in, got, want)
		}
	}
}
