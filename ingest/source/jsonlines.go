package source

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"auditwatch/schema"
)

// LineError is a bad line of a JSON Lines input.
type LineError struct {
	Input string
	Line  int
	Err   error
}

func (e *LineError) Error() string {
	return fmt.Sprintf("%s:%d: %v", e.Input, e.Line, e.Err)
}

func (e *LineError) Unwrap() error { return e.Err }

// IsRecordError reports whether err is about one bad record, after which
// a reader can go on; any other error ends the input.
func IsRecordError(err error) bool {
	var le *LineError
	return errors.As(err, &le) || isParserRecordError(err)
}

// JSONLines is a Parser for already-normalized input: one schema.Event as
// JSON per line (what `auditwatch replay -o jsonl` and the stream carry).
func JSONLines(r io.Reader, name string) RecordReader {
	br := bufio.NewReaderSize(r, 64<<10)
	return &jsonLinesReader{r: br, name: name}
}

type jsonLinesReader struct {
	r    *bufio.Reader
	name string
	off  int64
	line int
	err  error
	// partial is a last line read without its newline yet.
	partial []byte
}

func (j *jsonLinesReader) Next() (schema.Event, error) {
	for {
		if j.err != nil {
			return schema.Event{}, j.err
		}
		b, err := j.r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// Over-long line: skip to its end and reject it.
			n := int64(len(b))
			for err == bufio.ErrBufferFull {
				b, err = j.r.ReadSlice('\n')
				n += int64(len(b))
			}
			if err != nil {
				j.err = err
				return schema.Event{}, err
			}
			j.off += n
			j.line++
			return schema.Event{}, &LineError{Input: j.name, Line: j.line, Err: errors.New("line too long")}
		}
		if err != nil {
			// A partial last line is held back until its newline arrives.
			if err == io.EOF {
				j.partial = append(j.partial, b...)
				return schema.Event{}, io.EOF
			}
			j.err = err
			return schema.Event{}, err
		}
		if len(j.partial) > 0 {
			b = append(j.partial, b...)
			j.partial = nil
		}
		j.off += int64(len(b))
		j.line++
		if len(b) <= 1 {
			continue
		}
		var ev schema.Event
		if err := json.Unmarshal(b, &ev); err != nil {
			return schema.Event{}, &LineError{Input: j.name, Line: j.line, Err: err}
		}
		return ev, nil
	}
}

func (j *jsonLinesReader) SafeOffset() int64 { return j.off }

func (j *jsonLinesReader) Flush() []schema.Event { return nil }
