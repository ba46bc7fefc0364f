// Package stream owns the transport between auditwatch's stages: one
// Stream interface with two implementations.
//
// Embedded (the default) connects the stages of one process through
// bounded in-memory queues. A full queue blocks its producer, so a slow
// detector slows the sources instead of growing memory.
//
// Kafka (segmentio/kafka-go) carries schema.Events on an events topic
// keyed by principal and schema.Findings on a findings topic keyed by
// dedupe key. Producers wait for every in-sync replica (RequiredAcks=all).
// Consumers join a consumer group and commit an offset only when the
// handler says the records before it are fully handled.
//
// # Acknowledgement
//
// Publish takes a done callback. The stream calls it once every record of
// the call is durably held: for Kafka when the produce is acknowledged by
// all in-sync replicas; for the embedded stream — whose queues are not
// durable — when the consuming stage has committed the records, which the
// detect stage does only after its state checkpoint covers them. Sources
// advance their checkpoints (or delete their SQS messages) in that
// callback, so a crash anywhere replays from the last durable point.
//
// A record may carry the source position reached after it (Source,
// Position). The embedded detect stage stores those positions in the same
// transaction as detector state (detect.Engine.Checkpoint's metadata), so
// after a crash the sources resume exactly where the restored state ends:
// no event is counted twice and none is skipped.
//
// # Several detector instances
//
// Per-principal detectors are partitioned by the events topic's key: every
// event of one principal lands on one partition, so whichever instance
// owns that partition sees all of them. Counting auth failures per source
// IP cannot use that key — one IP's failures are spread over many
// principals. The ingest stage therefore also publishes each failed
// authentication event to a second topic, events-by-ip, keyed by source
// IP, and an IP-keyed detector instance (auth_failure_spike counting per
// IP only) consumes it in its own consumer group. Each IP's failures then
// meet on one partition, and the per-principal instances count per
// principal only, so no failure is counted by two instances.
//
// # State follows partition ownership
//
// The detect stage keeps one detector engine per owned partition, with
// its own durable state whose checkpoint metadata holds the partition's
// next offset, written in the same transaction as the state. When the
// group assigns a partition:
//
//   - if local state exists and its stored offset equals the group's
//     committed offset, the engine resumes from it;
//   - otherwise the state is rebuilt: the engine starts empty and replays
//     the partition from its earliest retained offset, with the findings of
//     every record below the committed offset suppressed (the previous
//     owner already published them). Baselines are thus rebuilt from the
//     topic's retention, and no finding is published twice by design;
//     deterministic finding ids let the alert stage drop any duplicate
//     that a crash between publish and commit lets through.
//
// Before giving a partition up (Revoked) the stage publishes pending
// findings, checkpoints and commits, so the next owner starts exactly
// where this one stopped.
package stream

import (
	"context"
	"errors"

	"auditwatch/schema"
)

// ErrClosed is returned (and passed to pending done callbacks) once the
// stream is closed.
var ErrClosed = errors.New("stream closed")

// Record is one message of a topic. Exactly one of Event and Finding is
// set, except for a position-only record (both nil) that just carries a
// source position.
type Record struct {
	Key     string
	Event   *schema.Event
	Finding *schema.Finding
	// Value, instead of an event or a finding, is an opaque value this
	// package does not decode (credential links shared between detect
	// instances).
	Value []byte
	// Source and Position: the source position reached after this record
	// (embedded stream only; Kafka sources checkpoint on their own).
	Source   string
	Position []byte
	// Note marks an event delivered to every partition of the topic (a
	// Kafka publish writes one copy to each) for state every partition's
	// detectors need, such as a secret's write that its readers, keyed to
	// other partitions, are judged against. A consumer hands a note to its
	// detectors' Note, never to the detectors or the event sinks as an
	// event. The embedded stream has one partition and delivers it as is.
	Note bool
	// Partition and Offset are set on consumed records.
	Partition int
	Offset    int64
}

// Stream moves records between stages.
type Stream interface {
	// Publish hands recs to topic, blocking while the stream is full.
	// done, when not nil, is called exactly once: with nil once every
	// record is durably held, or with an error.
	Publish(ctx context.Context, topic string, recs []Record, done func(error)) error
	// Consume joins group on topic and feeds h until ctx ends or a
	// handler error. It returns nil when ctx ended.
	Consume(ctx context.Context, topic, group string, h Handler) error
	// Close releases the stream; pending done callbacks get ErrClosed.
	Close() error
}

// Assignment is a set of partitions given to a consumer.
type Assignment struct {
	Topic string
	// Committed is each assigned partition's committed next offset, -1
	// when the group has none.
	Committed map[int]int64
	// Oldest is each partition's first retained offset.
	Oldest map[int]int64
	// Commit records that every record of partition before next is fully
	// handled. It is valid until the partitions are revoked.
	Commit func(ctx context.Context, partition int, next int64) error
}

// Handler consumes a topic.
type Handler interface {
	// Assigned is called when partitions are taken. It returns the offset
	// to start reading each partition at (missing: the committed offset,
	// else the oldest).
	Assigned(ctx context.Context, a Assignment) (map[int]int64, error)
	// Handle processes records of one partition in offset order. It is
	// also called with no records when the partition is idle, so the
	// handler can checkpoint on time. Handle is called concurrently for
	// different partitions, never for one partition.
	Handle(ctx context.Context, partition int, recs []Record) error
	// Revoked is called after the last Handle of partitions that are
	// being given up; the handler checkpoints and commits them.
	Revoked(ctx context.Context, partitions []int) error
}
