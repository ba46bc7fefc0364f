// Package deadletter owns the dead-letter file: an append-only JSON Lines
// file that receives every alert or event an output could not deliver (a
// permanent rejection or exhausted retries), with the output, the reason
// and the error, so nothing is dropped silently and an operator can replay
// it. Each record is written with one write call and synced before Write
// returns.
package deadletter

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"auditwatch/schema"
)

// Record is one line of the file.
type Record struct {
	Time     time.Time       `json:"time"`
	Output   string          `json:"output"`
	Reason   string          `json:"reason"`
	Error    string          `json:"error"`
	Attempts int             `json:"attempts"`
	Finding  *schema.Finding `json:"finding,omitempty"`
	Events   []schema.Event  `json:"events,omitempty"`
}

// File is safe for concurrent use.
type File struct {
	mu   sync.Mutex
	f    *os.File
	path string
}

// Open opens path for appending, creating it (mode 0600).
func Open(path string) (*File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("dead-letter file: %w", err)
	}
	return &File{f: f, path: path}, nil
}

// Write appends r and syncs the file.
func (d *File) Write(r Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("dead-letter %s: %w", d.path, err)
	}
	b = append(b, '\n')
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.f.Write(b); err != nil {
		return fmt.Errorf("dead-letter %s: %w", d.path, err)
	}
	if err := d.f.Sync(); err != nil {
		return fmt.Errorf("dead-letter %s: %w", d.path, err)
	}
	return nil
}

// Close closes the file.
func (d *File) Close() error { return d.f.Close() }

// ReadFile calls fn for every record of the file at path, in order. A line
// that is not a record is an error naming its line number.
func ReadFile(path string, fn func(line int, r Record) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("dead-letter file: %w", err)
	}
	defer f.Close()
	return read(path, f, fn)
}

func read(path string, rd io.Reader, fn func(line int, r Record) error) error {
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	n := 0
	for sc.Scan() {
		n++
		if len(sc.Bytes()) == 0 {
			continue
		}
		var r Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return fmt.Errorf("dead-letter %s line %d: %w", path, n, err)
		}
		if err := fn(n, r); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("dead-letter %s after line %d: %w", path, n, err)
	}
	return nil
}

// ReadFileAsOfNow is ReadFile limited to the bytes the file holds when it
// is opened, so records appended while fn runs (a resend that fails again
// into the same file) are not read in the same pass.
func ReadFileAsOfNow(path string, fn func(line int, r Record) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("dead-letter file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("dead-letter file: %w", err)
	}
	return read(path, io.LimitReader(f, fi.Size()), fn)
}
