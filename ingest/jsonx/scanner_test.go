package jsonx

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

func collect(t testing.TB, in []byte, lim Limits, oneByte bool) []Record {
	t.Helper()
	var r io.Reader = bytes.NewReader(in)
	if oneByte {
		r = iotest.OneByteReader(r)
	}
	s := NewScanner(r, lim)
	var out []Record
	for i := 0; ; i++ {
		rec, err := s.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("read error: %v", err)
		}
		if i > len(in)+2 {
			t.Fatalf("more records (%d) than input bytes: not making progress", i)
		}
		rec.Data = append([]byte(nil), rec.Data...)
		if rec.Prefix != nil {
			rec.Prefix = append([]byte(nil), rec.Prefix...)
		}
		out = append(out, rec)
	}
}

func TestFraming(t *testing.T) {
	cases := []struct {
		name  string
		in    string
		kinds []Kind
		errs  []error
	}{
		{"ndjson", "{\"a\":1}\n{\"b\":\"}\\\"{\"}\n", []Kind{KindValue, KindValue}, []error{nil, nil}},
		{"pretty back to back", "{\n  \"a\" : [ 1 ]\n}\n{\n  \"b\" : {}\n}", []Kind{KindValue, KindValue}, []error{nil, nil}},
		{"array", "[\n {\"a\":1},\n {\"b\":2}\n]\n", []Kind{KindElement, KindElement}, []error{nil, nil}},
		{"records", `{"Records":[{"a":1},{"b":2}]}`, []Kind{KindRecords, KindRecords}, []error{nil, nil}},
		{"events with trailing keys", `{"Events":[{"a":1}],"NextToken":"x{"}` + "\n{\"c\":3}", []Kind{KindEvents, KindValue}, []error{nil, nil}},
		{"syslog", "<38>Nov 13 23:47:09 h vault[1]: {\"a\":1}\n", []Kind{KindValue}, []error{nil}},
		{"not json", "hello\n{\"a\":1}\n", []Kind{KindValue, KindValue}, []error{ErrNotJSON, nil}},
		{"truncated at EOF", "{\"a\":[1,2", []Kind{KindValue}, []error{ErrTruncated}},
		{"unterminated array", "[{\"a\":1}", []Kind{KindElement, KindValue}, []error{nil, ErrTruncated}},
	}
	for _, tc := range cases {
		for _, oneByte := range []bool{false, true} {
			recs := collect(t, []byte(tc.in), Limits{}, oneByte)
			if len(recs) != len(tc.errs) {
				t.Fatalf("%s (one byte %v): %d records %+v, want %d", tc.name, oneByte, len(recs), recs, len(tc.errs))
			}
			for i, r := range recs {
				if r.Kind != tc.kinds[i] || !errors.Is(r.Err, tc.errs[i]) || (tc.errs[i] == nil && r.Err != nil) {
					t.Errorf("%s (one byte %v) record %d: kind %d err %v, want kind %d err %v", tc.name, oneByte, i, r.Kind, r.Err, tc.kinds[i], tc.errs[i])
				}
				if r.Num != i+1 {
					t.Errorf("%s record %d: Num %d", tc.name, i, r.Num)
				}
			}
		}
	}
}

func TestSyslogPrefixAndLines(t *testing.T) {
	recs := collect(t, []byte("\n\n<38>Nov 13 h vault[1]: {\"a\":1}\n{\"b\":2}\n"), Limits{}, false)
	if len(recs) != 2 || string(recs[0].Prefix) != "<38>Nov 13 h vault[1]: " || string(recs[0].Data) != `{"a":1}` || recs[0].Line != 3 || recs[1].Line != 4 {
		t.Fatalf("records %+v", recs)
	}
	if recs[0].Offset != 2 {
		t.Fatalf("syslog record offset %d, want 2 (start of the header)", recs[0].Offset)
	}
}

func FuzzScanner(f *testing.F) {
	for _, s := range []string{
		"{\"a\":1}\n{\"b\":2}", "[{\"a\":1},{\"b\":[2]}]", `{"Records":[{"a":"\"]"}]}`, "<1>x: {\"a\":1}",
		"{\n \"a\": {\n{\"b\":1}", "garbage\n{\"x\":\"y\\\\\"}", `{"Events":[{"a":1}],"k":[1,{"z":2}]}`, "[1,\"a\",null]",
	} {
		f.Add([]byte(s), uint8(8), uint16(64))
	}
	f.Fuzz(func(t *testing.T, in []byte, depth uint8, size uint16) {
		lim := Limits{MaxDepth: int(depth%32) + 1, MaxRecordBytes: int(size) + 1}
		recs := collect(t, in, lim, len(in)%2 == 1)
		prevEnd := int64(0)
		for i, r := range recs {
			if r.Num != i+1 {
				t.Fatalf("record %d has Num %d", i, r.Num)
			}
			if r.Offset < 0 || r.End < r.Offset || r.End > int64(len(in)) {
				t.Fatalf("record %d: offsets %d..%d outside input of %d", i, r.Offset, r.End, len(in))
			}
			if r.Offset < prevEnd-int64(len(r.Prefix)) && r.Prefix == nil {
				// records never overlap
				t.Fatalf("record %d starts at %d before previous end %d", i, r.Offset, prevEnd)
			}
			prevEnd = r.End
			if r.Err == nil {
				if len(r.Data) > lim.MaxRecordBytes {
					t.Fatalf("record %d: %d bytes passes limit %d", i, len(r.Data), lim.MaxRecordBytes)
				}
				if c := r.Data[0]; c != '{' && c != '[' {
					t.Fatalf("record %d: good record starts with %q", i, c)
				}
				if !bytes.Equal(r.Data, in[r.End-int64(len(r.Data)):r.End]) {
					t.Fatalf("record %d: data is not the input at its offsets", i)
				}
			}
		}
	})
}
