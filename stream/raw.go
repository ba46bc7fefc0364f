package stream

import (
	"bytes"
	"fmt"
	"sync"

	"github.com/klauspost/compress/zstd"

	"auditwatch/schema"
)

// typeEventRaw is an event with its original record: the event's JSON, a
// newline (never inside the JSON, which escapes control characters), then
// the record compressed with zstd.
const typeEventRaw = "event+raw"

// maxRawBytes bounds a decompressed original record (ingest refuses
// records over 1 MiB by default; allow headroom for larger limits).
const maxRawBytes = 16 << 20

var (
	zenc     *zstd.Encoder
	zdec     *zstd.Decoder
	zencOnce sync.Once
	zdecOnce sync.Once
)

func encoder() *zstd.Encoder {
	zencOnce.Do(func() {
		zenc, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	})
	return zenc
}

func decoder() *zstd.Decoder {
	zdecOnce.Do(func() {
		zdec, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(maxRawBytes))
	})
	return zdec
}

// appendEventRaw appends the typeEventRaw value of ev.
func appendEventRaw(b []byte, ev *schema.Event) []byte {
	b = ev.AppendJSON(b)
	b = append(b, '\n')
	return encoder().EncodeAll(ev.Raw, b)
}

// decodeEventRaw reads a typeEventRaw value.
func decodeEventRaw(v []byte, ev *schema.Event) error {
	i := bytes.IndexByte(v, '\n')
	if i < 0 {
		return fmt.Errorf("%w: event with record: no separator", ErrEventJSON)
	}
	if err := DecodeEvent(v[:i], ev); err != nil {
		return err
	}
	raw, err := decoder().DecodeAll(v[i+1:], nil)
	if err != nil {
		return fmt.Errorf("%w: event record: %v", ErrEventJSON, err)
	}
	if len(raw) > maxRawBytes {
		return fmt.Errorf("%w: event record over %d bytes", ErrEventJSON, maxRawBytes)
	}
	ev.Raw = raw
	return nil
}
