package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"auditwatch/alert"
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

// router opens the alert router of the `alerts:` section once (nil when
// the section is absent). Its idempotency ledger defaults to
// <state.dir>/alert/ledger.db, so a restart that replays findings posts
// none twice, and its dead-letter file to <state.dir>/alert/dead-letter.jsonl.
func (d *daemon) router() (*alert.Router, error) {
	d.routerOnce.Do(func() {
		if d.cfg.Alerts.Kind == 0 {
			return
		}
		acfg, err := alert.FromNode(&d.cfg.Alerts)
		if err != nil {
			d.routerErr = fmt.Errorf("config: %w", err)
			return
		}
		if acfg.StatePath == "" || acfg.DeadLetter.Path == "" {
			if err := os.MkdirAll(d.stateDir("alert"), 0o700); err != nil {
				d.routerErr = err
				return
			}
		}
		if acfg.StatePath == "" {
			acfg.StatePath = d.stateDir("alert", "ledger.db")
		}
		if acfg.DeadLetter.Path == "" && len(acfg.Outputs) > 0 {
			acfg.DeadLetter.Path = d.stateDir("alert", "dead-letter.jsonl")
		}
		d.routerV, d.routerErr = alert.New(acfg, d.log.With("component", "alert"), d.reg)
	})
	return d.routerV, d.routerErr
}

// closeRouter closes the router if it was opened.
func (d *daemon) closeRouter() {
	d.routerClose.Do(func() {
		if d.routerV != nil {
			if err := d.routerV.Close(); err != nil {
				d.log.Warn("close alert router", "err", err)
			}
		}
	})
}

// outputSinks opens the alert router as a finding sink.
func (d *daemon) outputSinks(ctx context.Context) (pipeline.FindingSinks, func(), error) {
	r, err := d.router()
	if err != nil || r == nil {
		return nil, func() {}, err
	}
	return pipeline.FindingSinks{r}, d.closeRouter, nil
}

// storeSinks opens the event sinks beyond the events file: the alert
// router's raw-event outputs (SIEM) when it has any.
func (d *daemon) storeSinks(ctx context.Context) (pipeline.EventSinks, func(), error) {
	r, err := d.router()
	if err != nil || r == nil {
		return nil, func() {}, err
	}
	acfg, err := alert.FromNode(&d.cfg.Alerts)
	if err != nil || len(acfg.EventOutputs) == 0 {
		return nil, func() {}, nil
	}
	return pipeline.EventSinks{r}, d.closeRouter, nil
}
