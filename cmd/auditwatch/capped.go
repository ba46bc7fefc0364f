package main

import (
	"fmt"
	"io"
	"sync"
)

// maxRecordErrors is how many per-record errors a command prints before
// it only counts them.
const maxRecordErrors = 20

// cappedWriter passes the first limit writes (one per-record error line
// each) to w and counts the rest, so a file of a million bad records
// gives a readable stderr. Summary reports what was left out.
type cappedWriter struct {
	mu      sync.Mutex
	w       io.Writer
	prefix  string
	limit   int
	n       int
	dropped int
}

func newCappedWriter(w io.Writer, prefix string, limit int) *cappedWriter {
	return &cappedWriter{w: w, prefix: prefix, limit: limit}
}

// Write prints p while under the limit, else counts it. It never fails,
// so a caller's error path is not taken for a suppressed line.
func (c *cappedWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	if c.n > c.limit {
		c.dropped++
		return len(p), nil
	}
	c.w.Write(p)
	return len(p), nil
}

// Summary prints one line with how many errors were not shown, if any.
func (c *cappedWriter) Summary() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dropped > 0 {
		fmt.Fprintf(c.w, "%s: %d more record errors not shown (the first %d are above)\n", c.prefix, c.dropped, c.limit)
	}
}
