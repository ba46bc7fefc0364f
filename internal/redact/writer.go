package redact

import (
	"bytes"
	"io"
	"sync"
)

// maxHeld bounds what Writer holds while waiting for the end of a line.
const maxHeld = 64 << 10

// Writer masks registered secrets and URL credentials in what it passes
// on, line by line: a line (ended by \n or \r) is held until it is
// complete, so a secret split across two writes is still masked; a line
// longer than 64 KiB is passed on in pieces. Commands write their stderr
// through one, so error messages printed without the logger are redacted
// too. Credentials recognised only by shape ("Bearer …", token=…) are left
// to String (the logger, errors, dead letters): on stderr they would mask
// help text. It is safe for concurrent use.
type Writer struct {
	mu   sync.Mutex
	w    io.Writer
	held []byte
}

// NewWriter returns a Writer passing on to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Write holds p's last incomplete line and writes the complete ones,
// redacted. It reports len(p) unless w fails.
func (x *Writer) Write(p []byte) (int, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.held = append(x.held, p...)
	end := bytes.LastIndexAny(x.held, "\n\r") + 1
	if end == 0 && len(x.held) < maxHeld {
		return len(p), nil
	}
	if end == 0 {
		end = len(x.held)
	}
	if err := x.emit(x.held[:end]); err != nil {
		return 0, err
	}
	x.held = append(x.held[:0], x.held[end:]...)
	return len(p), nil
}

// Flush writes what is held (a last line without a newline).
func (x *Writer) Flush() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if len(x.held) == 0 {
		return nil
	}
	err := x.emit(x.held)
	x.held = x.held[:0]
	return err
}

func (x *Writer) emit(b []byte) error {
	_, err := io.WriteString(x.w, knownAndURLs(string(b)))
	return err
}
