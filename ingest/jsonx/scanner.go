// Package jsonx owns the framing of audit-log streams into JSON records,
// with limits against hostile input. It accepts, in any mix: one JSON
// object per line, pretty-printed objects written back to back, a top-level
// JSON array of objects, the CloudTrail S3 delivery document
// {"Records":[...]} and LookupEvents output {"Events":[...]} (both streamed
// element by element, so a large delivery object never has to fit in one
// record), and syslog lines "<PRI>header: {json}". A line that is not JSON
// becomes one bad record.
//
// It does not validate JSON beyond what framing needs (string and bracket
// structure, depth, size); the record parser does the rest.
package jsonx

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Framing errors carried by Record.Err.
var (
	ErrTooLarge  = errors.New("record exceeds the maximum record size")
	ErrTooDeep   = errors.New("record exceeds the maximum JSON nesting depth")
	ErrNotJSON   = errors.New("not a JSON record")
	ErrTruncated = errors.New("truncated JSON record")
	ErrSyntax    = errors.New("malformed JSON")
)

// Kind says where a record sat in the stream.
type Kind uint8

// Record kinds.
const (
	KindValue   Kind = iota // a top-level JSON value
	KindElement             // an element of a top-level JSON array
	KindRecords             // an element of a top-level {"Records":[...]}
	KindEvents              // an element of a top-level {"Events":[...]}
)

// Limits bound what one record may cost.
type Limits struct {
	MaxRecordBytes int // bytes of one record; larger ones are skipped with ErrTooLarge
	MaxDepth       int // nesting depth of one record (an element of a streamed array counts from 1)
}

// Record is one framed record. Data is only valid until the next call to
// Next.
type Record struct {
	Data   []byte
	Kind   Kind
	Offset int64 // stream offset of the record's first byte (syslog header included)
	End    int64 // stream offset just after the record
	Line   int   // 1-based line of the record's first byte
	Num    int   // 1-based ordinal of the record in the stream
	// Prefix is the syslog header before the JSON, if any.
	Prefix []byte
	// Err is non-nil when the record is bad; Data then holds a short
	// excerpt (possibly empty).
	Err error
}

type mode uint8

const (
	modeTop mode = iota
	modeArray
	modeContainer // inside the array of {"Records":[ or {"Events":[
	modeTail      // after the container array, before the closing }
)

const (
	readChunk  = 64 << 10
	excerptLen = 64
)

// Scanner frames a stream into records.
type Scanner struct {
	r    io.Reader
	lim  Limits
	buf  []byte
	pos  int   // next unconsumed byte
	end  int   // end of valid data
	base int64 // stream offset of buf[0]
	eof  bool
	rerr error

	line    int // newlines counted before buf[linePos]
	linePos int
	num     int
	mode    mode
	ckind   Kind

	lineEnd int // end of the record PeekLine found, -1 when none
}

// NewScanner returns a Scanner reading r. Zero limits mean 1 MiB and 64.
func NewScanner(r io.Reader, lim Limits) *Scanner {
	if lim.MaxRecordBytes <= 0 {
		lim.MaxRecordBytes = 1 << 20
	}
	if lim.MaxDepth <= 0 {
		lim.MaxDepth = 64
	}
	return &Scanner{r: r, lim: lim, buf: make([]byte, 0, readChunk*2), line: 1, lineEnd: -1}
}

// PeekLine is a fast path for the common one-object-per-line input. When
// the next record starts a line at the top level with '{' (and is not a
// {"Records":[...]} or {"Events":[...]} container), ends on that same line,
// is within the size limit and cannot be nested deeper than the depth limit
// (it holds no more brackets than the limit), PeekLine returns its bytes
// without consuming them: whitespace trimmed, up to the end of the line.
//
// Only the caller can tell whether those bytes are one well-formed JSON
// object: if they are, it calls TakeLine, which returns exactly the Record
// Next would have returned; if not, it calls Next, which frames the input
// with full checks. The data is valid until the next call on s.
func (s *Scanner) PeekLine() ([]byte, bool) {
	line, ok := s.PeekLineDeep()
	if ok && !s.DepthOK(line) {
		s.lineEnd = -1
		return nil, false
	}
	return line, ok
}

// DepthOK reports whether line cannot be nested deeper than the depth
// limit: it holds no more brackets than the limit.
func (s *Scanner) DepthOK(line []byte) bool {
	return bytes.Count(line, []byte{'{'})+bytes.Count(line, []byte{'['}) <= s.lim.MaxDepth
}

// MaxDepth is the nesting depth limit in force.
func (s *Scanner) MaxDepth() int { return s.lim.MaxDepth }

// PeekLineDeep is PeekLine without the depth check, for a caller that
// refuses records nested deeper than MaxDepth itself (or checks DepthOK
// before it takes one).
func (s *Scanner) PeekLineDeep() ([]byte, bool) {
	s.lineEnd = -1
	if s.mode != modeTop || !s.skipSpace() || s.buf[s.pos] != '{' {
		return nil, false
	}
	if _, _, ok := s.container(); ok {
		return nil, false
	}
	end := -1
	for {
		if nl := bytes.IndexByte(s.buf[s.pos:s.end], '\n'); nl >= 0 {
			end = s.pos + nl
			break
		}
		if s.end-s.pos > s.lim.MaxRecordBytes {
			return nil, false
		}
		if _, ok := s.fill(s.pos); !ok {
			if s.rerr != nil {
				return nil, false
			}
			end = s.end
			break
		}
	}
	for end > s.pos && isSpace(s.buf[end-1]) {
		end--
	}
	line := s.buf[s.pos:end]
	if len(line) > s.lim.MaxRecordBytes || line[len(line)-1] != '}' {
		return nil, false
	}
	s.lineEnd = end
	return line, true
}

// TakeLine consumes the record PeekLine just returned and returns it as
// Next would have. It panics when PeekLine did not return a record.
func (s *Scanner) TakeLine() Record {
	if s.lineEnd < 0 {
		panic("jsonx: TakeLine without a successful PeekLine")
	}
	start, end := s.pos, s.lineEnd
	s.lineEnd = -1
	s.countLines(start)
	// the line holds no newline (PeekLineDeep ended it at the first):
	// the next count starts after it
	s.linePos = end
	s.num++
	s.pos = end
	return Record{Data: s.buf[start:end], Kind: KindValue, Offset: s.base + int64(start), End: s.base + int64(end), Line: s.line, Num: s.num}
}

// Err is the read error that ended the input, if any.
func (s *Scanner) Err() error { return s.rerr }

// Offset is the stream offset of the first byte not yet consumed.
func (s *Scanner) Offset() int64 { return s.base + int64(s.pos) }

// fill reads more data, keeping buf[keep:]; it returns how far indices
// shifted (subtract from held indices) and false at end of input.
func (s *Scanner) fill(keep int) (shift int, ok bool) {
	if s.eof {
		return 0, false
	}
	if keep > 0 {
		s.countLines(keep)
		n := copy(s.buf[:cap(s.buf)], s.buf[keep:s.end])
		s.buf = s.buf[:n]
		s.base += int64(keep)
		s.pos -= keep
		s.end = n
		s.linePos -= keep
		shift = keep
	}
	if cap(s.buf)-s.end < readChunk {
		nb := make([]byte, s.end, 2*cap(s.buf)+readChunk)
		copy(nb, s.buf[:s.end])
		s.buf = nb
	}
	for {
		n, err := s.r.Read(s.buf[s.end:cap(s.buf)])
		s.end += n
		s.buf = s.buf[:s.end]
		if err != nil {
			s.eof = true
			if err != io.EOF {
				s.rerr = err
			}
			return shift, n > 0
		}
		if n > 0 {
			return shift, true
		}
	}
}

// countLines advances the line counter to buf[upto].
func (s *Scanner) countLines(upto int) {
	if upto > s.linePos {
		s.line += bytes.Count(s.buf[s.linePos:upto], []byte{'\n'})
		s.linePos = upto
	}
}

// discardTo drops buf[:i] (already scanned), keeping line counts.
func (s *Scanner) discardTo(i int) {
	s.countLines(i)
	n := copy(s.buf[:cap(s.buf)], s.buf[i:s.end])
	s.buf = s.buf[:n]
	s.base += int64(i)
	s.pos -= i
	if s.pos < 0 {
		s.pos = 0
	}
	s.end = n
	s.linePos = 0
}

// ensure makes at least n bytes available at s.pos unless input ends.
func (s *Scanner) ensure(n int) bool {
	for s.end-s.pos < n {
		if _, ok := s.fill(s.pos); !ok {
			return false
		}
	}
	return true
}

func isSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\r' || c == '\t' }

// skipSpace skips whitespace (and a UTF-8 BOM); false at end of input.
func (s *Scanner) skipSpace() bool {
	for {
		for s.pos < s.end {
			c := s.buf[s.pos]
			if isSpace(c) {
				s.pos++
				continue
			}
			if c == 0xEF && s.ensure(3) && s.buf[s.pos+1] == 0xBB && s.buf[s.pos+2] == 0xBF {
				s.pos += 3
				continue
			}
			return true
		}
		if _, ok := s.fill(s.pos); !ok {
			return false
		}
	}
}

// Next returns the next record. It returns io.EOF at the end of input and
// another error only when reading the input failed; bad records come back
// with Record.Err set and the stream stays usable.
func (s *Scanner) Next() (Record, error) {
	for {
		if !s.skipSpace() {
			if s.rerr != nil {
				return Record{}, s.rerr
			}
			if s.mode != modeTop {
				s.mode = modeTop
				return s.errRecord(s.pos, s.pos, KindValue, fmt.Errorf("%w: input ends inside a top-level array or object", ErrTruncated)), nil
			}
			return Record{}, io.EOF
		}
		c := s.buf[s.pos]
		switch s.mode {
		case modeArray, modeContainer:
			switch c {
			case ',':
				s.pos++
				continue
			case ']':
				s.pos++
				if s.mode == modeContainer {
					s.mode = modeTail
				} else {
					s.mode = modeTop
				}
				continue
			}
			kind := KindElement
			if s.mode == modeContainer {
				kind = s.ckind
			}
			return s.value(s.pos, kind, nil), nil
		case modeTail:
			switch c {
			case '}':
				s.pos++
				s.mode = modeTop
				continue
			case ',', ':':
				s.pos++
				continue
			}
			// remaining keys and values of the container object
			// (NextToken, ...) are not records: skip them
			s.value(s.pos, KindValue, nil)
			s.num--
			continue
		}
		// top level
		switch c {
		case '[':
			s.pos++
			s.mode = modeArray
			continue
		case '{':
			if k, after, ok := s.container(); ok {
				s.pos = after
				s.mode = modeContainer
				s.ckind = k
				continue
			}
			return s.value(s.pos, KindValue, nil), nil
		case '<':
			return s.syslog(), nil
		}
		return s.badLine(), nil
	}
}

// container reports whether the object at s.pos opens with "Records" or
// "Events" as its first key holding an array, and where the array's
// contents begin.
func (s *Scanner) container() (Kind, int, bool) {
	s.ensure(64)
	b := s.buf[s.pos:s.end]
	i := 1
	skip := func() {
		for i < len(b) && isSpace(b[i]) {
			i++
		}
	}
	skip()
	var k Kind
	switch {
	case bytes.HasPrefix(b[i:], []byte(`"Records"`)):
		k, i = KindRecords, i+len(`"Records"`)
	case bytes.HasPrefix(b[i:], []byte(`"Events"`)):
		k, i = KindEvents, i+len(`"Events"`)
	default:
		return 0, 0, false
	}
	skip()
	if i >= len(b) || b[i] != ':' {
		return 0, 0, false
	}
	i++
	skip()
	if i >= len(b) || b[i] != '[' {
		return 0, 0, false
	}
	return k, s.pos + i + 1, true
}

// syslog handles a line starting with '<': a syslog header then JSON.
func (s *Scanner) syslog() Record {
	start := s.pos
	for {
		nl := bytes.IndexByte(s.buf[start:s.end], '\n')
		lineEnd := s.end
		if nl >= 0 {
			lineEnd = start + nl
		}
		if j := bytes.IndexByte(s.buf[start:lineEnd], '{'); j >= 0 {
			prefixLen := j
			if prefixLen > s.lim.MaxRecordBytes {
				break
			}
			rec := s.value(start+j, KindValue, nil)
			// value() may have shifted the buffer; the prefix sits just
			// before the record's first byte.
			rec.Offset -= int64(prefixLen)
			if rec.Err == nil {
				from := int(rec.Offset - s.base)
				if from >= 0 {
					rec.Prefix = s.buf[from : from+prefixLen]
				}
			}
			return rec
		}
		if nl >= 0 || s.end-start > s.lim.MaxRecordBytes {
			break
		}
		shift, ok := s.fill(start)
		start -= shift
		if !ok {
			break
		}
	}
	s.pos = start
	return s.badLine()
}

// badLine consumes one line (however long) and reports it as not JSON.
func (s *Scanner) badLine() Record {
	start := s.pos
	s.countLines(start)
	line := s.line
	off := s.base + int64(start)
	excerpt := make([]byte, 0, excerptLen)
	excerpt = append(excerpt, s.buf[start:min(s.end, start+excerptLen)]...)
	for {
		if nl := bytes.IndexByte(s.buf[s.pos:s.end], '\n'); nl >= 0 {
			s.pos += nl + 1
			break
		}
		s.pos = s.end
		s.discardTo(s.pos)
		if _, ok := s.fill(s.pos); !ok {
			break
		}
	}
	if i := bytes.IndexByte(excerpt, '\n'); i >= 0 {
		excerpt = excerpt[:i]
	}
	s.num++
	return Record{Data: excerpt, Kind: KindValue, Offset: off, End: s.Offset(), Line: line, Num: s.num,
		Err: fmt.Errorf("%w: line starts with %q", ErrNotJSON, excerpt)}
}

func (s *Scanner) errRecord(start, end int, kind Kind, err error) Record {
	s.countLines(start)
	s.num++
	ex := s.buf[start:min(end, start+excerptLen)]
	return Record{Data: ex, Kind: kind, Offset: s.base + int64(start), End: s.base + int64(end), Line: s.line, Num: s.num, Err: err}
}

// value scans one JSON value starting at buf[start] and consumes it.
func (s *Scanner) value(start int, kind Kind, _ []byte) Record {
	c := s.buf[start]
	if c != '{' && c != '[' {
		return s.scalar(start, kind)
	}
	i := start
	depth := 0
	maxRec := s.lim.MaxRecordBytes
	for {
		if i >= s.end {
			if i-start > maxRec {
				return s.skipHuge(start, i, depth, false, false, kind, ErrTooLarge)
			}
			shift, ok := s.fill(start)
			start -= shift
			i -= shift
			if !ok {
				s.pos = i
				return s.errRecord(start, i, kind, fmt.Errorf("%w: input ends inside the record", ErrTruncated))
			}
			continue
		}
		switch c := s.buf[i]; c {
		case '"':
			strStart := i
			j := i + 1
			for {
				q := bytes.IndexByte(s.buf[j:s.end], '"')
				seg := s.buf[j:s.end]
				if q >= 0 {
					seg = seg[:q]
				}
				if nl := bytes.IndexByte(seg, '\n'); nl >= 0 {
					// a raw newline cannot occur in a JSON string: the
					// record was cut short; resume on the next line
					s.pos = j + nl + 1
					return s.errRecord(start, j+nl, kind, fmt.Errorf("%w: line ends inside a string", ErrTruncated))
				}
				if q < 0 {
					if s.end-start > maxRec {
						esc := trailingBackslashes(s.buf[strStart+1:s.end])%2 == 1
						return s.skipHuge(start, s.end, depth, true, esc, kind, ErrTooLarge)
					}
					j = s.end
					shift, ok := s.fill(start)
					start -= shift
					strStart -= shift
					j -= shift
					if !ok {
						s.pos = j
						return s.errRecord(start, j, kind, fmt.Errorf("%w: input ends inside a string", ErrTruncated))
					}
					// back up over trailing backslashes so the escape
					// check below sees them
					continue
				}
				q += j
				if trailingBackslashes(s.buf[strStart+1:q])%2 == 0 {
					i = q + 1
					break
				}
				j = q + 1
			}
		case '{', '[':
			if depth > 0 && c == '{' && s.buf[i-1] == '\n' {
				// an object starting a line while a record is open: the
				// open record was cut short (pretty-printers indent
				// nested values)
				s.pos = i
				return s.errRecord(start, i-1, kind, fmt.Errorf("%w: a new record starts before this one ends", ErrTruncated))
			}
			depth++
			if depth > s.lim.MaxDepth {
				return s.skipHuge(start, i+1, depth, false, false, kind, ErrTooDeep)
			}
			i++
		case '}', ']':
			depth--
			i++
			if depth == 0 {
				if i-start > maxRec {
					s.pos = i
					return s.errRecord(start, i, kind, fmt.Errorf("%w (%d bytes, limit %d)", ErrTooLarge, i-start, maxRec))
				}
				s.countLines(start)
				s.num++
				s.pos = i
				return Record{Data: s.buf[start:i], Kind: kind, Offset: s.base + int64(start), End: s.base + int64(i), Line: s.line, Num: s.num}
			}
		default:
			i++
		}
	}
}

func trailingBackslashes(b []byte) int {
	n := 0
	for k := len(b) - 1; k >= 0 && b[k] == '\\'; k-- {
		n++
	}
	return n
}

// scalar consumes a top-level or element scalar and reports it.
func (s *Scanner) scalar(start int, kind Kind) Record {
	i := start
	if s.buf[i] == '"' {
		i++
		for {
			for i < s.end && s.buf[i] != '"' && s.buf[i] != '\n' {
				if s.buf[i] == '\\' {
					i++
				}
				i++
			}
			if i < s.end || i-start > s.lim.MaxRecordBytes {
				break
			}
			shift, ok := s.fill(start)
			start -= shift
			i -= shift
			if !ok {
				break
			}
		}
		i = min(i+1, s.end)
	} else {
		for {
			for i < s.end && !isSpace(s.buf[i]) && s.buf[i] != ',' && s.buf[i] != ']' && s.buf[i] != '}' && s.buf[i] != '{' && s.buf[i] != '[' {
				i++
			}
			if i < s.end || i-start > s.lim.MaxRecordBytes {
				break
			}
			shift, ok := s.fill(start)
			start -= shift
			i -= shift
			if !ok {
				break
			}
		}
		if i == start {
			i++ // a stray delimiter
		}
	}
	s.pos = i
	return s.errRecord(start, i, kind, fmt.Errorf("%w: %s is not a JSON object", ErrSyntax, describe(s.buf[start])))
}

func describe(c byte) string {
	switch {
	case c == '"':
		return "a string"
	case c == '-' || (c >= '0' && c <= '9'):
		return "a number"
	case c == 't' || c == 'f':
		return "a boolean"
	case c == 'n':
		return "null"
	}
	return fmt.Sprintf("byte %q", c)
}

// skipHuge consumes the rest of an oversized or too deep record with a
// byte-at-a-time state machine that keeps no data, and reports it.
func (s *Scanner) skipHuge(start, i, depth int, inStr, esc bool, kind Kind, cause error) Record {
	s.countLines(start)
	line := s.line
	off := s.base + int64(start)
	s.num++
	num := s.num
	var excerpt []byte
	excerpt = append(excerpt, s.buf[start:min(s.end, start+excerptLen)]...)
	maxDepth := depth
	prevNL := false
	done := false
	for !done {
		for ; i < s.end; i++ {
			c := s.buf[i]
			if inStr {
				switch {
				case esc:
					esc = false
				case c == '\\':
					esc = true
				case c == '"':
					inStr = false
				case c == '\n':
					// truncated: resume at next line
					inStr = false
					depth = 0
					i++
					done = true
				}
				if done {
					break
				}
				continue
			}
			switch c {
			case '"':
				inStr = true
			case '{', '[':
				if c == '{' && prevNL && depth > 0 {
					done = true
				} else {
					depth++
					maxDepth = max(maxDepth, depth)
				}
			case '}', ']':
				depth--
				if depth <= 0 {
					i++
					done = true
				}
			}
			if done {
				break
			}
			prevNL = c == '\n'
		}
		if done {
			break
		}
		s.pos = i
		s.discardTo(i)
		i = s.pos
		if _, ok := s.fill(s.pos); !ok {
			break
		}
	}
	s.pos = i
	size := s.base + int64(i) - off
	var err error
	if cause == ErrTooDeep {
		err = fmt.Errorf("%w (limit %d)", ErrTooDeep, s.lim.MaxDepth)
	} else {
		err = fmt.Errorf("%w (%d+ bytes, limit %d)", ErrTooLarge, size, s.lim.MaxRecordBytes)
	}
	if !done {
		err = fmt.Errorf("%w; %w: input ends inside the record", err, ErrTruncated)
	}
	return Record{Data: excerpt, Kind: kind, Offset: off, End: s.base + int64(i), Line: line, Num: num, Err: err}
}
