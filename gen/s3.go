package gen

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// S3Writer writes CloudTrail records as S3 delivery objects: one gzip'd
// {"Records":[...]} document per account, region and 5 minutes of event
// time, under <dir>/AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/ with
// CloudTrail's file names.
type S3Writer struct {
	dir    string
	r      *rng
	window int64
	open   map[s3key]*bytes.Buffer
	files  int
}

type s3key struct{ account, region string }

// NewS3Writer returns a writer into dir; seed makes object names reproducible.
func NewS3Writer(dir string, seed int64) *S3Writer {
	return &S3Writer{dir: dir, r: newRNG(seed, 9), window: -1, open: map[s3key]*bytes.Buffer{}}
}

// Files is the number of objects written so far.
func (w *S3Writer) Files() int { return w.files }

// Add appends one record (compact JSON, no newline) with its event time.
func (w *S3Writer) Add(rec []byte, t time.Time, account, region string) error {
	win := t.Unix() / 300
	if win != w.window {
		if err := w.Close(); err != nil {
			return err
		}
		w.window = win
	}
	k := s3key{account, region}
	b := w.open[k]
	if b == nil {
		b = bytes.NewBufferString(`{"Records":[`)
		w.open[k] = b
	} else {
		b.WriteByte(',')
	}
	b.Write(rec)
	return nil
}

// Close writes every open object.
func (w *S3Writer) Close() error {
	keys := make([]s3key, 0, len(w.open))
	for k := range w.open {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].account != keys[j].account {
			return keys[i].account < keys[j].account
		}
		return keys[i].region < keys[j].region
	})
	end := time.Unix((w.window+1)*300, 0).UTC()
	for _, k := range keys {
		b := w.open[k]
		b.WriteString("]}")
		dir := filepath.Join(w.dir, "AWSLogs", k.account, "CloudTrail", k.region, end.Format("2006"), end.Format("01"), end.Format("02"))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("s3 output: %w", err)
		}
		name := fmt.Sprintf("%s_CloudTrail_%s_%s_%s.json.gz", k.account, k.region, end.Format("20060102T1504Z"), w.r.appendAlnum(nil, 16))
		var gz bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
		if _, err := zw.Write(b.Bytes()); err != nil {
			return fmt.Errorf("s3 output %s: %w", name, err)
		}
		if err := zw.Close(); err != nil {
			return fmt.Errorf("s3 output %s: %w", name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), gz.Bytes(), 0o644); err != nil {
			return fmt.Errorf("s3 output: %w", err)
		}
		w.files++
		delete(w.open, k)
	}
	return nil
}
