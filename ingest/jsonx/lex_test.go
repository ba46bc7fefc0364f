package jsonx

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/valyala/fastjson"
)

func TestSkip(t *testing.T) {
	for in, want := range map[string]int{
		`{"a":[1,-2.5e+3,"x\"y",true,false,null,{}],"b":{}}`: 50,
		`"a\\"`:         5,
		`"a\\\"b"`:      8,
		` 1`:            -1, // no leading whitespace taken
		`{"a":1,}`:      -1,
		`[1,]`:          -1,
		`{"a" 1}`:       -1,
		`{"a":+}`:       -1,
		`nan`:           -1,
		`tru`:           -1,
		`{"a":"open}`:   -1,
		`[[[[]]]]`:      8,
		`{"a":1} extra`: 7,
	} {
		if got := Skip([]byte(in), 0, 1); got != want {
			t.Errorf("Skip(%s) = %d, want %d", in, got, want)
		}
	}
}

func TestStringReportsEscapes(t *testing.T) {
	for in, want := range map[string]bool{`"abc"`: false, `"a\nb"`: true, `"\\"`: true, `"a\""`: true} {
		end, esc := String([]byte(in), 0)
		if end != len(in) || esc != want {
			t.Errorf("String(%s) = %d, %v; want %d, %v", in, end, esc, len(in), want)
		}
	}
}

// The lexing helpers must never accept what fastjson refuses: their
// callers rely on it to keep fastjson's verdict on malformed records.
func FuzzSkip(f *testing.F) {
	f.Add([]byte(`{"a":[1,-2.5e+3,"x\"y",true,false,null,{}],"b":{"c":"d"}}`))
	f.Add([]byte(`[+,-,.,1e,nan,inf]`))
	f.Add([]byte(`{"a":"\\","b":[[]],"c":{}}  `))
	f.Fuzz(func(t *testing.T, in []byte) {
		end := Skip(in, 0, 1)
		if end < 0 || SkipWS(in, end) != len(in) {
			return
		}
		if err := fastjson.ValidateBytes(in); err != nil {
			if _, perr := fastjson.ParseBytes(in); perr != nil {
				t.Fatalf("Skip accepted %q, fastjson refuses it: %v", in, perr)
			}
		}
	})
}

// naiveString is String written plainly.
func naiveString(b []byte, i int) (int, bool) {
	esc := false
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			esc = true
			i++
		case '"':
			return i + 1, esc
		}
	}
	return -1, esc
}

func FuzzString(f *testing.F) {
	f.Add([]byte(`"abc"`))
	f.Add([]byte(`"a\\\"bcdefghijklmnopqrstuvwxyz0123456789"`))
	f.Add([]byte(`"abcdefghijklmnopqrstuvwxyz0123456789\\"`))
	f.Fuzz(func(t *testing.T, s []byte) {
		in := append([]byte{'"'}, s...)
		wantEnd, wantEsc := naiveString(in, 0)
		end, esc := String(in, 0)
		if end != wantEnd || (end >= 0 && esc != wantEsc) {
			t.Fatalf("String(%q) = %d, %v; want %d, %v", in, end, esc, wantEnd, wantEsc)
		}
		if got := skipString(in, 0); got != wantEnd {
			t.Fatalf("skipString(%q) = %d, want %d", in, got, wantEnd)
		}
	})
}

// BenchmarkSkip validates every entry of the repository's OpenBao audit
// log (mostly short keys and 76-byte HMAC strings).
func BenchmarkSkip(b *testing.B) {
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "openbao-scenario", "audit.log"))
	if err != nil {
		b.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSpace(data), []byte{'\n'})
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for range b.N {
		for _, l := range lines {
			if end := Skip(l, 0, 1); end != len(l) {
				b.Fatalf("Skip = %d, want %d", end, len(l))
			}
		}
	}
}
