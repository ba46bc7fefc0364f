package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"

	"auditwatch/alert"
	"auditwatch/detect"
	"auditwatch/detect/state"
	"auditwatch/incident"
	"auditwatch/ingest"
	"auditwatch/ingest/source"
	"auditwatch/pipeline"
	"auditwatch/schema"
	"auditwatch/store"
)

// auditParserRaw returns the audit log parser of a format; raw keeps each
// event's original record.
func auditParserRaw(format string, raw bool) (source.Parser, error) {
	opts := ingest.DefaultOptions()
	opts.Format = format
	opts.KeepRaw = raw
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("format %q: %w", format, err)
	}
	return source.AuditParser(opts), nil
}

// detectConfig is the `detectors:` section, decoded and validated when the
// config was loaded.
func (d *daemon) detectConfig() (detect.Config, error) {
	setGoMemoryLimit(d.conf.Detectors)
	return d.conf.Detectors, nil
}

// setGoMemoryLimit makes the Go collector keep the process within the
// detectors' memory budget, unless GOMEMLIMIT already says otherwise.
// With that limit bounding the heap, the collector need not also run
// every time the heap doubles (GOGC's default 100): it runs at 5x the
// live heap (gcPercent), or earlier when the limit is near, unless GOGC
// says otherwise. Parsing allocates about 1.4 KB per event that dies at
// once; collecting it less often is most of what detection costs beyond
// normalizing (docs/PERFORMANCE.md).
func setGoMemoryLimit(c detect.Config) {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(c.GoMemoryLimit())
		if os.Getenv("GOGC") == "" {
			debug.SetGCPercent(gcPercent)
		}
	}
}

// gcPercent is the collector's target (debug.SetGCPercent) while a memory
// limit bounds the heap.
const gcPercent = 400

// engine is a detector engine with the state store it owns.
type engine struct {
	*detect.Engine
	st *state.Store
}

// Close closes the engine, then its store.
func (e engine) Close() error {
	return errors.Join(e.Engine.Close(), e.st.Close())
}

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
		eng.SharePool(d.statePoolFor(dcfg))
		return correlated(d.allowing(engine{Engine: eng, st: st}), dcfg)
	}
}

// statePoolFor is the process's detector-state budget (dcfg's
// StateBudget, the same for every role): the engines of every partition
// and role share it, as the process shares the one Go memory limit
// setGoMemoryLimit draws from the same budget.
func (d *daemon) statePoolFor(dcfg detect.Config) *detect.Pool {
	d.poolOnce.Do(func() { d.statePool = detect.NewPool(dcfg.StateBudget()) })
	return d.statePool
}

// correlated puts the incident correlation stage behind a partition's
// engine: its findings carry incident ids before any sink sees them.
func correlated(det pipeline.Detector, dcfg detect.Config) (pipeline.Detector, error) {
	if !dcfg.Incidents.On() {
		return det, nil
	}
	s, err := incident.Wrap(det, incidentConfig(dcfg))
	if err != nil {
		det.Close()
		return nil, err
	}
	return s, nil
}

// incidentConfig is the correlation part of the detectors section.
func incidentConfig(dcfg detect.Config) incident.Config {
	c := dcfg.Incidents
	return incident.Config{Window: c.Window.D(), MaxFanout: c.MaxFanout, MaxOpen: c.MaxOpen}
}

// router opens the alert router of the `alerts:` section once (nil when
// the section is absent). Its idempotency ledger defaults to
// <state.dir>/alert/ledger.db, so a restart that replays findings posts
// none twice, and its dead-letter file to <state.dir>/alert/dead-letter.jsonl.
func (d *daemon) router() (*alert.Router, error) {
	d.routerOnce.Do(func() {
		if d.conf.Alerts == nil {
			return
		}
		acfg := *d.conf.Alerts
		if acfg.StatePath == "" || acfg.DeadLetter.Path == "" {
			if err := os.MkdirAll(d.stateDir("alert"), 0o700); err != nil {
				d.routerErr = err
				return
			}
		}
		acfg.DefaultPaths(d.stateDir("alert"))
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

// storage opens the `storage:` section's store and its batching writer
// once (nil when the section is absent or its backend is off), applying
// the schema migrations.
func (d *daemon) storage(ctx context.Context) (*store.Writer, error) {
	d.storeOnce.Do(func() {
		if d.conf.Storage == nil {
			d.log.Info("no storage: section; events and findings are not stored")
			return
		}
		scfg := *d.conf.Storage
		if scfg.Backend == store.BackendOff {
			return
		}
		st, err := store.Open(ctx, scfg, d.log.With("component", "store"), d.reg)
		if err != nil {
			d.storeErr = err
			return
		}
		if err := st.Migrate(ctx); err != nil {
			st.Close()
			d.storeErr = err
			return
		}
		w, err := store.NewWriter(st, scfg.Batch, d.log.With("component", "store"), d.reg)
		if err != nil {
			st.Close()
			d.storeErr = err
			return
		}
		// The embedded store is this process's alone: answer `auditwatch
		// query` on its local endpoint (docs/STORAGE.md).
		qs, err := store.ServeQueries(ctx, scfg, d.log.With("component", "query-endpoint"))
		if err != nil {
			w.Close(ctx)
			st.Close()
			d.storeErr = err
			return
		}
		d.storeDB, d.storeW, d.storeQS = st, w, qs
		d.statusMu.Lock()
		d.storeStatusW = w
		d.statusMu.Unlock()
	})
	return d.storeW, d.storeErr
}

// closeStorage flushes and closes the writer and the store if opened.
func (d *daemon) closeStorage() {
	d.storeClose.Do(func() {
		if d.storeW != nil {
			// A third of the shutdown time: a stalled store must not keep
			// the process past its shutdown_timeout (an insert under way
			// may overrun its context by the client's read timeout; what
			// the store had not acknowledged is read and stored again at
			// the next start).
			ctx, cancel := context.WithTimeout(context.Background(), d.cfg.ShutdownTimeout.D()/3)
			defer cancel()
			if d.storeQS != nil {
				if err := d.storeQS.Close(ctx); err != nil {
					d.log.Warn("close query endpoint", "err", err)
				}
			}
			if err := d.storeW.Close(ctx); err != nil {
				d.log.Warn("close storage writer", "err", err)
			}
			if err := d.storeDB.Close(); err != nil {
				d.log.Warn("close storage", "err", err)
			}
		}
	})
}

// storedFindings takes findings durably: added to the writer's block,
// then flushed. Only the one-process sinks list it; the detect stages
// store through a StoreSink and the alert stage through its store
// consumer (withoutStorage drops it).
type storedFindings struct{ w *store.Writer }

func (s storedFindings) WriteFindings(ctx context.Context, fs []schema.Finding) error {
	if err := s.w.AddFindings(ctx, fs); err != nil {
		return err
	}
	return s.w.Flush(ctx)
}

// storeSink is the storage of the detect stage in one process (nil
// without storage): events and findings are queued to the writer and
// stored off the detect and alert path; the stage saves its input
// position only up to what the writer has acknowledged
// (pipeline.DetectConfig.Store).
func (d *daemon) storeSink(ctx context.Context) (pipeline.StoreSink, error) {
	w, err := d.storage(ctx)
	if err != nil || w == nil {
		return nil, err
	}
	return queuedStore{w: w, strip: !d.cfg.KeepRawRecords()}, nil
}

// queuedStore is a pipeline.StoreSink over the storage writer; strip
// drops the events' original records (raw_records: false).
type queuedStore struct {
	w     *store.Writer
	strip bool
}

func (q queuedStore) Submit(ctx context.Context, evs []schema.Event, fs []schema.Finding, done func()) error {
	if q.strip && len(evs) > 0 {
		out := make([]schema.Event, len(evs))
		for i := range evs {
			out[i] = evs[i]
			out[i].Raw = nil
		}
		evs = out
	}
	return q.w.Submit(ctx, evs, fs, done)
}

func (q queuedStore) Flush(ctx context.Context) error { return q.w.Flush(ctx) }

// withoutStorage is sinks without the synchronous storage sink (the
// detect stage stores findings through its Store, after these sinks).
func withoutStorage(sinks pipeline.FindingSinks) pipeline.FindingSinks {
	out := make(pipeline.FindingSinks, 0, len(sinks))
	for _, s := range sinks {
		if _, ok := s.(storedFindings); !ok {
			out = append(out, s)
		}
	}
	return out
}

// outputSinks opens the finding sinks beyond the findings file: storage
// first (the record), then the alert router.
func (d *daemon) outputSinks(ctx context.Context) (pipeline.FindingSinks, func(), error) {
	var sinks pipeline.FindingSinks
	w, err := d.storage(ctx)
	if err != nil {
		return nil, func() {}, err
	}
	if w != nil {
		sinks = append(sinks, storedFindings{w})
	}
	r, err := d.router()
	if err != nil {
		d.closeStorage()
		return nil, func() {}, err
	}
	if r != nil {
		sinks = append(sinks, r)
	}
	return sinks, func() { d.closeRouter(); d.closeStorage() }, nil
}

// storeSinks opens the event sinks beyond the events file: the alert
// router's raw-event outputs (SIEM) when it has any. It opens storage too
// (closed with the sinks), which the detect stage stores events through
// off its path (storeSink).
func (d *daemon) storeSinks(ctx context.Context) (pipeline.EventSinks, func(), error) {
	var sinks pipeline.EventSinks
	if _, err := d.storage(ctx); err != nil {
		return nil, func() {}, err
	}
	r, err := d.router()
	if err != nil {
		d.closeStorage()
		return nil, func() {}, err
	}
	if r != nil {
		if acfg := d.conf.Alerts; acfg != nil && len(acfg.EventOutputs) > 0 {
			sinks = append(sinks, r)
		}
	}
	return sinks, func() { d.closeRouter(); d.closeStorage() }, nil
}
