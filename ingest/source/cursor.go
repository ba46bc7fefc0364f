package source

import (
	"encoding/json"
	"fmt"
	"io"
	"math"

	"auditwatch/schema"
)

// MaxSkip bounds the ids a Cursor carries.
const MaxSkip = 4096

// Cursor is a byte position in a raw stream plus the ids of events already
// emitted from records at or after it. A Vault request entry that waits
// for its response holds the reader's safe offset back, while later
// complete records go on yielding events; after a restart from the safe
// offset those records are read again, and Skip keeps their events from
// reaching the detectors twice.
type Cursor struct {
	Offset int64    `json:"offset"`
	Skip   []string `json:"skip,omitempty"`
}

// Tracked wraps a RecordReader over a stream that starts at byte Base and
// keeps the Cursor to resume it from.
type Tracked struct {
	rr   RecordReader
	cr   *countingReader
	base int64
	// since: ids emitted since the reader last had nothing pending, each
	// with the bytes read from the stream when it was emitted.
	since []emitted
	skip  map[string]struct{}
	// SkipOverflow counts ids dropped from a full Cursor.Skip.
	SkipOverflow int
	// Skipped counts events dropped on resume.
	Skipped int
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// Track opens parse over r, which holds the stream from byte cur.Offset;
// events whose id is in cur.Skip are dropped once each.
func Track(parse Parser, r io.Reader, name string, cur Cursor) *Tracked {
	cr := &countingReader{r: r}
	t := &Tracked{rr: parse(cr, name), cr: cr, base: cur.Offset}
	if len(cur.Skip) > 0 {
		t.skip = make(map[string]struct{}, len(cur.Skip))
		for _, id := range cur.Skip {
			t.skip[id] = struct{}{}
		}
		// Until the reader is clean again, these ids still lie ahead of
		// the safe offset.
		for _, id := range cur.Skip {
			t.since = append(t.since, emitted{id: id, read: math.MaxInt64})
		}
	}
	return t
}

// Next returns the next event not already emitted before a restart.
func (t *Tracked) Next() (schema.Event, error) {
	for {
		ev, err := t.rr.Next()
		if err != nil {
			return ev, err
		}
		if t.skip != nil {
			if _, ok := t.skip[ev.ID]; ok && ev.ID != "" {
				delete(t.skip, ev.ID)
				t.Skipped++
				continue
			}
		}
		t.note(ev.ID)
		return ev, nil
	}
}

func (t *Tracked) note(id string) {
	if id == "" {
		return
	}
	if len(t.since) >= MaxSkip {
		t.since = t.since[1:]
		t.SkipOverflow++
	}
	t.since = append(t.since, emitted{id: id, read: t.cr.n})
}

// emitted is an event id and the stream bytes read (from Base) when the
// event was emitted: its record ended at or before that.
type emitted struct {
	id   string
	read int64
}

// Flush releases events held back waiting for more input.
func (t *Tracked) Flush() []schema.Event {
	evs := t.rr.Flush()
	out := evs[:0]
	for _, ev := range evs {
		if t.skip != nil {
			if _, ok := t.skip[ev.ID]; ok && ev.ID != "" {
				delete(t.skip, ev.ID)
				t.Skipped++
				continue
			}
		}
		t.note(ev.ID)
		out = append(out, ev)
	}
	return out
}

// Read is the count of stream bytes read so far (from Base).
func (t *Tracked) Read() int64 { return t.base + t.cr.n }

// Cursor is where to resume: every event before Offset is emitted, and
// Skip lists the events emitted from records after it.
func (t *Tracked) Cursor() Cursor {
	safe := t.rr.SafeOffset()
	if safe == t.cr.n {
		// Nothing read is pending: no emitted event lies past the offset.
		t.since = t.since[:0]
	} else {
		// An event emitted when no more than safe bytes were read came
		// from records before the offset: a resume does not read it again.
		// (While requests keep overlapping the reader is never clean, and
		// without this the list would stay at MaxSkip ids, each encoded
		// into every position.)
		keep := t.since[:0]
		for _, e := range t.since {
			if e.read > safe {
				keep = append(keep, e)
			}
		}
		clear(t.since[len(keep):])
		t.since = keep
	}
	c := Cursor{Offset: t.base + safe}
	if len(t.since) > 0 {
		c.Skip = make([]string, len(t.since))
		for i, e := range t.since {
			c.Skip[i] = e.id
		}
	}
	return c
}

// EncodeCursor and DecodeCursor are the checkpoint form of a Cursor,
// embedded in a source's own position type.
func EncodeCursor(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("encode cursor: %v", err))
	}
	return b
}

// DecodePosition decodes a position written by EncodeCursor.
func DecodePosition(b []byte, v any) error {
	if len(b) == 0 {
		return nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode checkpoint: %w", err)
	}
	return nil
}
