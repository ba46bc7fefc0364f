package ingest

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"auditwatch/schema"
)

// sliceSource yields its events (a nil ID marks a record error) and counts
// how many are open at once.
type sliceSource struct {
	evs    []string // "<seconds>:<id>" or "err"
	open   *int
	peak   *int
	closed *[]int
	n      int
}

func (s *sliceSource) Next() (schema.Event, error) {
	if len(s.evs) == 0 {
		return schema.Event{}, io.EOF
	}
	e := s.evs[0]
	s.evs = s.evs[1:]
	if e == "err" {
		return schema.Event{}, &RecordError{Input: fmt.Sprint(s.n), Record: 1, Err: errors.New("bad")}
	}
	var sec int
	var id string
	fmt.Sscanf(strings.Replace(e, ":", " ", 1), "%d %s", &sec, &id)
	return schema.Event{Time: time.Unix(int64(sec), 0), ID: id}, nil
}

func (s *sliceSource) Close() error {
	*s.open--
	*s.closed = append(*s.closed, s.n)
	return nil
}

func TestMergerOrdersByEventTime(t *testing.T) {
	cases := []struct {
		name   string
		inputs [][]string
		window int
		want   string
		peak   int
	}{
		{"two streams", [][]string{{"1:a1", "3:a3", "5:a5"}, {"2:b2", "4:b4", "6:b6"}}, 0,
			"a1 b2 a3 b4 a5 b6", 2},
		{"ties go to the first input", [][]string{{"1:a", "2:a2"}, {"1:b", "2:b2"}, {"1:c"}}, 0,
			"a b c a2 b2", 3},
		{"each input's own disorder is kept", [][]string{{"5:a5", "1:a1"}, {"3:b3"}}, 0,
			"b3 a5 a1", 2},
		{"record errors pass through", [][]string{{"err", "2:a2"}, {"1:b1", "err", "3:b3"}}, 0,
			"!0 b1 !1 a2 b3", 2},
		{"empty inputs", [][]string{{}, {"1:b"}, {}}, 0, "b", 2},
		{"window bounds open inputs", [][]string{{"1:a", "9:a9"}, {"2:b"}, {"3:c"}, {"4:d"}}, 2,
			"a b c d a9", 2},
		{"no inputs", nil, 0, "", 0},
	}
	for _, c := range cases {
		for _, into := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/into=%v", c.name, into), func(t *testing.T) {
				var open, peak int
				var closed []int
				m := NewMerger(len(c.inputs), c.window, func(i int) (Source, error) {
					open++
					peak = max(peak, open)
					return &sliceSource{evs: c.inputs[i], open: &open, peak: &peak, closed: &closed, n: i}, nil
				})
				var got []string
				var ended []int
				for {
					var ev schema.Event
					var in int
					var err error
					if into {
						ev.ID = "stale" // NextInto overwrites what is there
						in, err = m.NextInto(&ev)
					} else {
						ev, in, err = m.Next()
					}
					ended = append(ended, m.Ended()...)
					if err == io.EOF {
						break
					}
					var re *RecordError
					if errors.As(err, &re) {
						got = append(got, fmt.Sprintf("!%d", in))
						continue
					}
					if err != nil {
						t.Fatal(err)
					}
					if !strings.HasPrefix(ev.ID, string(rune('a'+in))) {
						t.Errorf("event %s reported from input %d", ev.ID, in)
					}
					got = append(got, ev.ID)
				}
				if s := strings.Join(got, " "); s != c.want {
					t.Errorf("merged %q, want %q", s, c.want)
				}
				if peak != c.peak {
					t.Errorf("%d inputs open at once, want %d", peak, c.peak)
				}
				if open != 0 || len(closed) != len(c.inputs) || len(ended) != len(c.inputs) {
					t.Errorf("%d still open, %d closed, %d ended of %d", open, len(closed), len(ended), len(c.inputs))
				}
			})
		}
	}
}

func TestMergerOpenError(t *testing.T) {
	boom := errors.New("boom")
	m := NewMerger(3, 0, func(i int) (Source, error) {
		if i == 1 {
			return nil, boom
		}
		return &sliceSource{evs: []string{"1:a"}, open: new(int), peak: new(int), closed: new([]int)}, nil
	})
	for {
		_, in, err := m.Next()
		if err == io.EOF {
			t.Fatal("merge ended without the open error")
		}
		if errors.Is(err, boom) {
			if in != 1 {
				t.Errorf("open error reported for input %d, want 1", in)
			}
			break
		}
	}
}

func TestInputsExpandsLikeOpenPaths(t *testing.T) {
	root := repoRoot(t)
	dir := root + "/testdata/openbao-scenario"
	got, err := Inputs([]string{dir, "-"})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	if err := OpenPaths([]string{dir}, DefaultOptions(), func(name string, _ *Reader) error {
		want = append(want, name)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want = append(want, "-")
	if strings.Join(got, "\n") != strings.Join(want, "\n") || len(got) < 2 {
		t.Fatalf("Inputs %q, OpenPaths read %q", got, want)
	}
	if _, err := Inputs([]string{root + "/no-such-input"}); err == nil {
		t.Fatal("Inputs accepted a missing path")
	}
}
