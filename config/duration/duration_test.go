package duration

import (
	"errors"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestYAML(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		err  string
	}{
		{"90s", 90 * time.Second, ""},
		{"1h30m", 90 * time.Minute, ""},
		{"500ms", 500 * time.Millisecond, ""},
		{"7d", 7 * 24 * time.Hour, ""},
		{"0", 0, ""},
		{`"15m"`, 15 * time.Minute, ""},
		{"10", 0, `line 1: bad duration "10"`},
		{"1.5d", 0, `bad duration "1.5d"`},
		{"soon", 0, `bad duration "soon"`},
		{"[1s]", 0, "line 1: cannot unmarshal !!seq into a duration"},
		{"999999999d", 0, "bad duration"},
	} {
		var v struct {
			D Duration `yaml:"d"`
		}
		err := yaml.Unmarshal([]byte("d: "+tc.in), &v)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || v.D.D() != tc.want {
			t.Errorf("%s: %v, %v; want %v", tc.in, v.D, err, tc.want)
		}
	}
}

// TestBadValueDoesNotStopDecoding: a bad duration is reported as a type
// error and the rest of the document still decodes.
func TestBadValueDoesNotStopDecoding(t *testing.T) {
	var v struct {
		A Duration `yaml:"a"`
		B int      `yaml:"b"`
		C Duration `yaml:"c"`
	}
	err := yaml.Unmarshal([]byte("a: soon\nb: 7\nc: [1]\n"), &v)
	var te *yaml.TypeError
	if !errors.As(err, &te) || len(te.Errors) != 2 {
		t.Fatalf("err = %v, want a TypeError with both bad durations", err)
	}
	if v.B != 7 {
		t.Errorf("b = %d: decoding stopped at the bad duration", v.B)
	}
}

func TestRoundTrip(t *testing.T) {
	in := struct {
		D Duration `yaml:"d"`
	}{Duration(36 * time.Hour)}
	b, err := yaml.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != "d: 36h0m0s\n" {
		t.Fatalf("marshal: %q", b)
	}
	var out struct {
		D Duration `yaml:"d"`
	}
	if err := yaml.Unmarshal(b, &out); err != nil || out.D != in.D {
		t.Fatalf("round trip: %v, %v", out.D, err)
	}
	var txt Duration
	if err := txt.UnmarshalText([]byte("2d")); err != nil || txt.D() != 48*time.Hour {
		t.Fatalf("UnmarshalText: %v %v", txt, err)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"90s", "7d", "-3d", "1h2m3.5s", "d", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := Parse(s)
		if err != nil {
			return
		}
		// What parses prints in a form that parses to the same value.
		w, err := Parse(time.Duration(v).String())
		if err != nil || w != v {
			t.Fatalf("Parse(%q) = %v; reparse of %q = %v, %v", s, v, time.Duration(v).String(), w, err)
		}
	})
}
