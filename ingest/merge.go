package ingest

import (
	"errors"
	"fmt"
	"io"
	"os"

	"auditwatch/schema"
)

// Inputs lists the inputs paths name, in the order OpenPaths reads them:
// files, every regular file below a directory (recursively, in lexical
// order, names starting with "." skipped) and "-" for standard input.
func Inputs(paths []string) ([]string, error) {
	var out []string
	for _, p := range paths {
		if p == "-" {
			out = append(out, p)
			continue
		}
		files, err := expand(p)
		if err != nil {
			return nil, err
		}
		out = append(out, files...)
	}
	return out, nil
}

// OpenInput opens one input named by Inputs ("-" is opts.Stdin, else
// os.Stdin). Closing the returned closer closes the file.
func OpenInput(name string, opts Options) (*Reader, io.Closer, error) {
	if name == "-" {
		in := opts.Stdin
		if in == nil {
			in = os.Stdin
		}
		return NewReader(in, "-", opts), io.NopCloser(nil), nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, fmt.Errorf("open input: %w", err)
	}
	return NewReader(f, name, opts), f, nil
}

// Source is a stream of events, as a Reader is: io.EOF at its end, a
// *RecordError for a bad record (the stream goes on after it).
type Source interface {
	Next() (schema.Event, error)
}

// DefaultMergeWindow is how many inputs a Merger reads at once by
// default: enough for the files of a few sources side by side, few
// enough for open-file limits and buffers (a few hundred KiB per input)
// when a directory holds thousands of delivery objects, which are named
// (and so opened) in time order.
const DefaultMergeWindow = 64

// Merger interleaves several inputs, each mostly in event-time order
// itself, into one stream in event-time order: a k-way merge that holds
// the next event of every open input and hands out the earliest (ties go
// to the input listed first, so the order is deterministic). Inputs are
// opened in order, at most window at a time: when one ends the next is
// opened. Not safe for concurrent use.
type Merger struct {
	open   func(i int) (Source, error)
	n      int // inputs
	next   int // next input to open
	window int
	live   int // open inputs
	heads  []mergeHead
	queue  []mergeErr // errors read ahead, returned before any event
	ended  []int
}

type mergeHead struct {
	t  int64
	in int
	// ev is the input's next event, held in place (an event is large:
	// the heap moves this pointer, not the event)
	ev  *schema.Event
	src Source
}

type mergeErr struct {
	in  int
	err error
}

// NewMerger merges n inputs; open(i) opens input i when its turn comes.
// window <= 0 means DefaultMergeWindow.
func NewMerger(n, window int, open func(i int) (Source, error)) *Merger {
	if window <= 0 {
		window = DefaultMergeWindow
	}
	return &Merger{open: open, n: n, window: window}
}

// Next returns the earliest event among the open inputs and the index of
// its input. A *RecordError read from input i is returned (with i) as soon
// as it is read; call Next again to go on. io.EOF means every input has
// ended; any other error (an input that cannot be opened or read) ends
// the merge.
func (m *Merger) Next() (schema.Event, int, error) {
	for {
		if len(m.queue) > 0 {
			e := m.queue[0]
			m.queue = m.queue[1:]
			if len(m.queue) == 0 {
				m.queue = nil
			}
			return schema.Event{}, e.in, e.err
		}
		if m.live < m.window && m.next < m.n {
			i := m.next
			m.next++
			src, err := m.open(i)
			if err != nil {
				m.next = m.n
				return schema.Event{}, i, err
			}
			m.live++
			m.pull(i, src, new(schema.Event))
			continue
		}
		if len(m.heads) == 0 {
			return schema.Event{}, -1, io.EOF
		}
		h := m.popHead()
		ev := *h.ev
		m.pull(h.in, h.src, h.ev)
		return ev, h.in, nil
	}
}

// NextInto is Next writing the event into *dst, without the copies
// returning it by value takes.
func (m *Merger) NextInto(dst *schema.Event) (int, error) {
	if len(m.queue) > 0 || m.live < m.window && m.next < m.n || len(m.heads) == 0 {
		// an error, an input to open or the end: Next's way
		ev, in, err := m.Next()
		*dst = ev
		return in, err
	}
	h := m.popHead()
	*dst = *h.ev
	m.pull(h.in, h.src, h.ev)
	return h.in, nil
}

// Ended returns the inputs that have ended since the last call: every
// event of theirs has been returned by Next.
func (m *Merger) Ended() []int {
	e := m.ended
	m.ended = m.ended[:0:0]
	return e
}

// pull reads input i's next event into the heap, queueing the record
// errors before it; at its end the input is closed (if it is an
// io.Closer) and reported by Ended.
func (m *Merger) pull(i int, src Source, slot *schema.Event) {
	for {
		var err error
		*slot, err = src.Next()
		if err == nil {
			m.pushHead(mergeHead{t: slot.Time.UnixNano(), ev: slot, in: i, src: src})
			return
		}
		var re *RecordError
		if errors.As(err, &re) {
			m.queue = append(m.queue, mergeErr{in: i, err: err})
			continue
		}
		if err != io.EOF {
			m.queue = append(m.queue, mergeErr{in: i, err: err})
			m.next = m.n // stop opening inputs
		}
		m.live--
		m.ended = append(m.ended, i)
		if c, ok := src.(io.Closer); ok {
			if cerr := c.Close(); cerr != nil && err == io.EOF {
				m.queue = append(m.queue, mergeErr{in: i, err: cerr})
			}
		}
		return
	}
}

func (a *mergeHead) less(b *mergeHead) bool {
	if a.t != b.t {
		return a.t < b.t
	}
	return a.in < b.in
}

func (m *Merger) pushHead(h mergeHead) {
	m.heads = append(m.heads, h)
	i := len(m.heads) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !m.heads[i].less(&m.heads[p]) {
			break
		}
		m.heads[i], m.heads[p] = m.heads[p], m.heads[i]
		i = p
	}
}

func (m *Merger) popHead() mergeHead {
	top := m.heads[0]
	n := len(m.heads) - 1
	m.heads[0] = m.heads[n]
	m.heads[n] = mergeHead{}
	m.heads = m.heads[:n]
	i := 0
	for {
		l, r, s := 2*i+1, 2*i+2, i
		if l < n && m.heads[l].less(&m.heads[s]) {
			s = l
		}
		if r < n && m.heads[r].less(&m.heads[s]) {
			s = r
		}
		if s == i {
			break
		}
		m.heads[i], m.heads[s] = m.heads[s], m.heads[i]
		i = s
	}
	return top
}
