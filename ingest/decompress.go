package ingest

import (
	"bufio"
	"compress/flate"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
)

// Errors of compressed input. Each is about the input's content, so a
// source rejects the input (counted, logged, quarantined) instead of
// retrying it.
var (
	ErrGzipRatio  = errors.New("compression ratio exceeds the limit")
	ErrNestedGzip = errors.New("gzip inside gzip is not read")
	ErrBadGzip    = errors.New("corrupt or truncated gzip")
)

// ratioFloor is how much must come out before the ratio cap applies, so
// small, very repetitive files are not refused.
const ratioFloor = 8 << 20

// IsBadInput reports whether err is about the content of a compressed
// input (over a cap, nested, corrupt or truncated): reading it again gives
// the same error.
func IsBadInput(err error) bool {
	return errors.Is(err, ErrGzipLimit) || errors.Is(err, ErrGzipRatio) || errors.Is(err, ErrNestedGzip) || errors.Is(err, ErrBadGzip)
}

// Decompress is the one reader for compressed input, used by NewReader and
// by every source that reads files or objects: when r starts with the gzip
// magic bytes it returns the decompressed stream, bounded by
// opts.MaxGzipBytes (decompressed size) and opts.MaxGzipRatio
// (decompressed/compressed bytes, checked once 8 MiB have come out); a
// gzip inside the gzip is refused rather than unpacked again. Otherwise it
// returns r's bytes unchanged. The caps and corrupt data surface as read
// errors wrapping ErrGzipLimit, ErrGzipRatio, ErrNestedGzip or ErrBadGzip;
// nothing is held in memory beyond the reader's buffers.
func Decompress(r io.Reader, opts Options) (rd io.Reader, compressed bool) {
	opts = opts.withDefaults()
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 64<<10)
	}
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		return &gzipSource{in: &countingByteReader{r: br}, limit: opts.MaxGzipBytes, ratio: opts.MaxGzipRatio}, true
	}
	return br, false
}

// countingByteReader counts the compressed bytes flate consumes (it reads
// byte by byte through io.ByteReader, so the count is exact).
type countingByteReader struct {
	r *bufio.Reader
	n int64
}

func (c *countingByteReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (c *countingByteReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.n++
	}
	return b, err
}

// gzipSource decompresses lazily and enforces the caps.
type gzipSource struct {
	in    *countingByteReader
	zr    *gzip.Reader
	n     int64
	limit int64
	ratio int64
	err   error
}

func (g *gzipSource) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	n, err := g.read(p)
	if err != nil && err != io.EOF {
		g.err = err
	}
	return n, err
}

func (g *gzipSource) read(p []byte) (int, error) {
	if g.zr == nil {
		zr, err := gzip.NewReader(g.in)
		if err != nil {
			return 0, gzipErr(err)
		}
		g.zr = zr
		// A gzip member inside: refused, never unpacked a second time.
		var magic [2]byte
		n, err := io.ReadFull(zr, magic[:])
		g.n += int64(n)
		if n == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
			return 0, ErrNestedGzip
		}
		copy(p, magic[:n])
		if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
			return n, gzipErr(err)
		}
		if n < 2 {
			return n, io.EOF
		}
		return n, nil
	}
	if g.n >= g.limit {
		// distinguish "exactly at the limit" from "beyond it"
		var one [1]byte
		if n, _ := g.zr.Read(one[:]); n > 0 {
			return 0, fmt.Errorf("%w (%d bytes)", ErrGzipLimit, g.limit)
		}
		return 0, io.EOF
	}
	if rem := g.limit - g.n; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := g.zr.Read(p)
	g.n += int64(n)
	if g.ratio > 0 && g.n > ratioFloor && g.n > g.ratio*max(g.in.n, 1) {
		return 0, fmt.Errorf("%w (%d:1 after %d compressed bytes)", ErrGzipRatio, g.ratio, g.in.n)
	}
	if err != nil && err != io.EOF {
		err = gzipErr(err)
	}
	return n, err
}

// gzipErr marks errors of the gzip data itself (header, checksum, corrupt
// or cut short) as ErrBadGzip; others (the underlying reader's) pass.
func gzipErr(err error) error {
	var ce flate.CorruptInputError
	if errors.Is(err, gzip.ErrHeader) || errors.Is(err, gzip.ErrChecksum) || errors.As(err, &ce) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: %w", ErrBadGzip, err)
	}
	return fmt.Errorf("gzip: %w", err)
}
