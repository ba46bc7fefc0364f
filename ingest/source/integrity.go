package source

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"

	"auditwatch/ingest"
)

// Integrity receives what CloudTrail log file integrity validation needs
// from the sources that read CloudTrail objects (S3+SQS, directory): the
// SHA-256 of each log file's uncompressed bytes as they were read, and
// each digest file with its signature (hex; "" when the source has none).
type Integrity interface {
	LogFile(name, sha256Hex string)
	Digest(ctx context.Context, name string, content []byte, signatureHex string)
}

// HashingReader hashes every byte read through it.
type HashingReader struct {
	r io.Reader
	h hash.Hash
}

// NewHashingReader hashes what is read from r with SHA-256.
func NewHashingReader(r io.Reader) *HashingReader {
	return &HashingReader{r: r, h: sha256.New()}
}

func (h *HashingReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.h.Write(p[:n])
	return n, err
}

// Finish reads the rest of the input (what the parser left unread) and
// returns the hex SHA-256 of everything read.
func (h *HashingReader) Finish() (string, error) {
	if _, err := io.Copy(io.Discard, h); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.h.Sum(nil)), nil
}

// ReadMaybeGzip reads all of r, decompressing gzip (by its magic bytes),
// up to limit bytes of content.
func ReadMaybeGzip(r io.Reader, limit int64) ([]byte, error) {
	opts := ingest.DefaultOptions()
	opts.MaxGzipBytes = limit
	src, _ := ingest.Decompress(r, opts)
	b, err := io.ReadAll(io.LimitReader(src, limit+1))
	if err != nil {
		return b, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("content larger than %d bytes", limit)
	}
	return b, nil
}
