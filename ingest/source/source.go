// Package source owns what every live source shares: the Batch a source
// hands downstream with its acknowledgement callback, the Publisher a source
// writes to, the durable checkpoint Store sources resume from, and the
// Parser hook that turns raw audit bytes into schema.Events.
//
// The acknowledgement rule: a source advances its checkpoint (or deletes
// its SQS message) only in a Batch's Done callback, which the stream calls
// once the next stage has durably taken every event in the batch — after a
// Kafka produce acknowledged by all in-sync replicas, or after the embedded
// detector stage checkpointed state that covers the batch. A restart
// replays from the last acknowledged position; deterministic event and
// finding ids keep the replay from doubling alerts.
package source

import (
	"context"
	"errors"
	"io"

	"auditwatch/schema"
)

// Batch is a run of events from one source, in source order, with the
// source position reached after its last event.
type Batch struct {
	// Source is the configured source name.
	Source string
	// Events are the normalized events of the batch (may be empty when a
	// batch only advances the position, e.g. over rejected records).
	Events []schema.Event
	// Position is the opaque source position after the batch; the source
	// resumes from it after a restart.
	Position []byte
	// Done is called once, when every event is durably taken downstream
	// (err == nil) or can no longer be (err != nil). It may be nil.
	Done func(err error)
}

// Publisher takes batches from a source. Publish may block for
// back-pressure; it returns an error only when the batch was not taken.
type Publisher interface {
	Publish(ctx context.Context, b Batch) error
}

// PublisherFunc adapts a function to Publisher.
type PublisherFunc func(ctx context.Context, b Batch) error

// Publish calls f.
func (f PublisherFunc) Publish(ctx context.Context, b Batch) error { return f(ctx, b) }

// Source is a long-running producer of batches. Run returns when ctx ends
// (nil) or on a fatal error.
type Source interface {
	Name() string
	Run(ctx context.Context, pub Publisher) error
}

// RecordReader yields events from one raw audit stream. It is the subset
// of ingest.Reader that sources use.
type RecordReader interface {
	// Next returns the next event, io.EOF at the end of the input, or a
	// record error after which the caller calls Next again.
	Next() (schema.Event, error)
	// SafeOffset is the count of input bytes wholly handled.
	SafeOffset() int64
	// Flush releases events held back waiting for more input.
	Flush() []schema.Event
}

// Parser opens a RecordReader over r; name names the input in errors.
type Parser func(r io.Reader, name string) RecordReader

// ErrFatal marks errors after which a RecordReader cannot go on.
var ErrFatal = errors.New("input unreadable")
