package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"auditwatch/detect"
	"auditwatch/detect/state"
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

// detectConfig decodes, defaults and validates the `detectors:` section.
func (d *daemon) detectConfig() (detect.Config, error) {
	c, err := detect.DecodeConfig(&d.cfg.Detectors)
	if err != nil {
		return c, fmt.Errorf("config: %w", err)
	}
	return c, nil
}

// engine is a detector engine with the state store it owns.
type engine struct {
	*detect.Engine
	st *state.Store
}

// Close closes the engine, then its store.
func (e engine) Close() error {
	return errors.Join(e.Engine.Close(), e.st.Close())
}

var _ pipeline.Drainer = engine{}

// detectorOpener opens detector engines under the state directory: one
// store per partition at <state.dir>/detect/<key>/<partition>, so each
// partition's state moves and is rebuilt on its own.
func (d *daemon) detectorOpener(key string) (pipeline.OpenDetector, error) {
	dcfg, err := d.detectConfig()
	if err != nil {
		return nil, err
	}
	return d.detectorOpenerFor(key, dcfg), nil
}

// detectorOpenerFor is detectorOpener with an explicit configuration.
func (d *daemon) detectorOpenerFor(key string, dcfg detect.Config) pipeline.OpenDetector {
	return func(p int, fresh bool) (pipeline.Detector, error) {
		dir := d.stateDir("detect", key, strconv.Itoa(p))
		if fresh {
			if err := os.Remove(filepath.Join(dir, state.FileName)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("reset detector state: %w", err)
			}
		}
		st, err := state.Open(state.Config{Dir: dir, Partition: strconv.Itoa(p)})
		if err != nil {
			return nil, err
		}
		eng, err := detect.New(dcfg, st, d.log.With("partition", p), d.reg)
		if err != nil {
			st.Close()
			return nil, err
		}
		return engine{Engine: eng, st: st}, nil
	}
}

// outputSinks opens the alert router as a finding sink.
func (d *daemon) outputSinks(ctx context.Context) (pipeline.FindingSinks, func(), error) {
	return nil, func() {}, nil
}

// storeSinks opens storage as an event sink.
func (d *daemon) storeSinks(ctx context.Context) (pipeline.EventSinks, func(), error) {
	return nil, func() {}, nil
}
