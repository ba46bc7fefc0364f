package main

import (
	"context"
	"fmt"

	"auditwatch/ingest"
	"auditwatch/ingest/source"
	"auditwatch/pipeline"
)

// auditParser returns the audit log parser of a format.
func auditParser(format string) (source.Parser, error) {
	opts := ingest.DefaultOptions()
	opts.Format = format
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("format %q: %w", format, err)
	}
	return source.AuditParser(opts), nil
}

// detectorOpener opens detector engines under the state directory.
func (d *daemon) detectorOpener(key string) (pipeline.OpenDetector, error) {
	return nil, fmt.Errorf("no detector engine in this build")
}

// outputSinks opens the alert router as a finding sink.
func (d *daemon) outputSinks(ctx context.Context) (pipeline.FindingSinks, func(), error) {
	return nil, func() {}, nil
}

// storeSinks opens storage as an event sink.
func (d *daemon) storeSinks(ctx context.Context) (pipeline.EventSinks, func(), error) {
	return nil, func() {}, nil
}
