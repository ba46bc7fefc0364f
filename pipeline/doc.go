// Package pipeline owns the stages that connect auditwatch's parts: the
// ingest stage (sources → events topic), the detect stage (events topic →
// detector engines → findings), the alert stage (findings topic → alert
// router and sinks) and the findings file sink. The stages are written
// against the stream.Stream interface, so the same code runs in one
// process on the embedded stream (`auditwatch run`) or as separate
// processes on Kafka (`auditwatch ingest|detect|alert`).
//
// Every stage acknowledges upstream only what it has durably handed on:
// the detect stage publishes or delivers the findings of a run of events,
// then checkpoints detector state together with its input position, and
// only then commits the input. See package stream for the full argument.
package pipeline

import (
	"context"

	"auditwatch/schema"
)

// Detector is a detector engine owning one partition's state
// (detect.Engine satisfies it).
type Detector interface {
	Process(ev schema.Event) []schema.Finding
	Checkpoint(meta map[string][]byte) error
	Meta() (map[string][]byte, error)
	Close() error
}

// FindingSink durably takes findings: it returns only once each finding
// is delivered, stored or dead-lettered. It must tolerate a finding it has
// already taken (same id): restarts replay.
type FindingSink interface {
	WriteFindings(ctx context.Context, fs []schema.Finding) error
}

// EventSink durably takes raw events (storage, SIEM forwarding).
type EventSink interface {
	WriteEvents(ctx context.Context, evs []schema.Event) error
}

// FindingSinks fans findings out to several sinks in order.
type FindingSinks []FindingSink

// WriteFindings writes fs to every sink, stopping at the first error.
func (s FindingSinks) WriteFindings(ctx context.Context, fs []schema.Finding) error {
	for _, k := range s {
		if err := k.WriteFindings(ctx, fs); err != nil {
			return err
		}
	}
	return nil
}

// EventSinks fans events out to several sinks in order.
type EventSinks []EventSink

// WriteEvents writes evs to every sink, stopping at the first error.
func (s EventSinks) WriteEvents(ctx context.Context, evs []schema.Event) error {
	for _, k := range s {
		if err := k.WriteEvents(ctx, evs); err != nil {
			return err
		}
	}
	return nil
}
