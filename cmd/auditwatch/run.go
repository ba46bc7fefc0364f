package main

import (
	"context"
	"fmt"

	"auditwatch/ingest/source"
	"auditwatch/internal/lifecycle"
	"auditwatch/pipeline"
	"auditwatch/stream"
)

func init() {
	register("run", command{
		summary: "run every stage in one process on the embedded stream (--config FILE)",
		run:     runAll,
		daemon:  true,
	})
}

// Embedded topic names.
const embeddedEvents = "events"

var runAll = daemonCommand("run", (*daemon).runAll, true)

func (d *daemon) runAll(ctx context.Context) error {
	cfg := d.cfg
	if cfg.Stream.Type != stream.TypeEmbedded {
		return fmt.Errorf("stream.type is %q: `auditwatch run` connects the stages in one process on the embedded stream; on Kafka run `auditwatch ingest`, `detect` and `alert`", cfg.Stream.Type)
	}
	// Health and metrics answer during the set-up below.
	stopHTTP, err := d.startHTTP(ctx)
	defer stopHTTP()
	if err != nil {
		return err
	}
	var (
		det       pipeline.Detector
		handedOut bool
		opener    pipeline.OpenDetector
		positions *source.MemCheckpoints
		sinks     pipeline.FindingSinks
		events    pipeline.EventSink
		emb       *stream.Embedded
		enrich    *enrichment
		ing       *pipeline.Ingest
		watchPub  source.Publisher
		canary    canaryHook
		stage     *pipeline.DetectStage
		srcPub    source.Publisher
		srcs      []source.Source
	)
	// The set-up is components too: each Start opens what the later ones
	// use, in this order, and a failing one stops those before it. Then
	// progress, the detect stage and the sources run. The stop runs
	// backwards: the sources stop first, the detect stage hands on and
	// checkpoints what it has taken, the last progress line is printed,
	// and what the set-up opened is closed, all within the shutdown
	// deadline.
	cs := []lifecycle.Component{{
		// The detector state of the one embedded partition; its
		// checkpoint metadata holds where each source resumes. The detect
		// stage takes it over when it opens partition 0.
		Name: "detector state",
		Start: func(ctx context.Context) error {
			open, err := d.detectorOpener("embedded")
			if err != nil {
				return err
			}
			if open, err = d.withRules(ctx, open); err != nil {
				return err
			}
			if det, err = open(0, false); err != nil {
				return err
			}
			meta, err := det.Meta()
			if err != nil {
				return err
			}
			positions = source.NewMemCheckpoints(pipeline.PositionsFromMeta(meta))
			opener = func(p int, fresh bool) (pipeline.Detector, error) {
				if p != 0 || fresh || handedOut {
					return open(p, fresh)
				}
				handedOut = true
				return det, nil
			}
			return nil
		},
		Stop: func(context.Context) error {
			if det != nil && !handedOut {
				return det.Close()
			}
			return nil
		},
	}}
	var closeSinks, closeEvents, stopWatch, stopTrail func()
	cs = append(cs, lifecycle.Component{
		Name:  "finding sinks",
		Start: func(ctx context.Context) (err error) { sinks, closeSinks, err = d.findingSinks(ctx); return err },
		Stop:  func(context.Context) error { closeSinks(); return nil },
	}, lifecycle.Component{
		Name: "event sinks",
		// Storage is not among them: the detect stage stores events and
		// findings through its Store, off the detect and alert path.
		Start: func(ctx context.Context) (err error) { events, closeEvents, err = d.eventSinks(ctx); return err },
		Stop:  func(context.Context) error { closeEvents(); return nil },
	}, lifecycle.Component{
		Name: "embedded stream",
		Start: func(context.Context) (err error) {
			emb, err = stream.NewEmbedded(cfg.Stream.Embedded, d.reg)
			return err
		},
		Stop: func(context.Context) error { return emb.Close() },
	}, lifecycle.Component{
		Name: "enrichment",
		Start: func(context.Context) (err error) {
			enrich, err = openEnrichment(cfg, d.stateDir("identity"), d.log)
			return err
		},
		Stop: func(context.Context) error { enrich.Close(); return nil },
	}, lifecycle.Component{
		// the canary's events come back through the detect stage (canary)
		Name: "watch",
		Start: func(ctx context.Context) (err error) {
			ing, err = pipeline.NewIngest(pipeline.IngestConfig{
				Stream: emb, EventsTopic: embeddedEvents, CarryPositions: true,
				Logger: d.log, Registerer: d.reg,
			})
			if err != nil {
				return err
			}
			watchPub, canary, stopWatch, err = d.watchLive(ctx, ing, sinks, false)
			return err
		},
		Stop: func(context.Context) error { stopWatch(); return nil },
	}, lifecycle.Component{
		// the sources are built here and started last; the trail verifier
		// sits between them and the watch publisher
		Name: "trail",
		Start: func(ctx context.Context) (err error) {
			if srcs, err = buildSources(d.conf, positions, d.log, d.reg); err != nil {
				return err
			}
			srcPub, stopTrail, err = d.trailLive(ctx, srcs, watchPub, sinks)
			return err
		},
		Stop: func(context.Context) error { stopTrail(); return nil },
	})
	if iv := cfg.Console.Progress; iv > 0 {
		var stopProgress func()
		cs = append(cs, lifecycle.Component{
			Name:  "progress",
			Start: func(context.Context) error { stopProgress = d.progress(iv.D()); return nil },
			Stop:  func(context.Context) error { stopProgress(); return nil },
		})
	}
	cs = append(cs, lifecycle.Component{
		Name: "detect stage",
		Start: func(ctx context.Context) (err error) {
			store, err := d.storeSink(ctx)
			if err != nil {
				return err
			}
			stage, err = pipeline.NewDetectStage(pipeline.DetectConfig{
				Enrich:             enrich.hook(),
				BeforeCheckpoint:   enrich.flushHook(),
				Canary:             canary,
				Open:               opener,
				Findings:           withoutStorage(sinks),
				Events:             events,
				Store:              store,
				CheckpointEvents:   cfg.State.CheckpointEvents,
				CheckpointInterval: cfg.State.CheckpointInterval.D(),
				IdleDrain:          cfg.State.IdleDrain.D(),
				Logger:             d.log,
				Registerer:         d.reg,
			})
			return err
		},
		Run: func(ctx context.Context) error { return emb.Consume(ctx, embeddedEvents, "detect", stage) },
	})
	if err := d.mgr.Start(ctx, cs...); err != nil {
		return d.mgr.Stop(err)
	}
	// The sources are known once the set-up has run; they start last.
	return d.runComponents(ctx, sourceComponents(srcs, srcPub)...)
}

// findingSinks opens the configured finding sinks.
func (d *daemon) findingSinks(ctx context.Context) (pipeline.FindingSinks, func(), error) {
	var sinks pipeline.FindingSinks
	var closers []func() error
	closeAll := func() {
		for _, c := range closers {
			c()
		}
	}
	if d.cfg.Console.Findings && d.stdout != nil {
		sinks = append(sinks, pipeline.NewConsole(d.stdout))
	}
	if p := d.cfg.Files.Findings; p != "" {
		f, err := pipeline.OpenFindingsFile(p)
		if err != nil {
			return nil, closeAll, err
		}
		sinks = append(sinks, f)
		closers = append(closers, f.Close)
	}
	more, closeMore, err := d.outputSinks(ctx)
	if err != nil {
		closeAll()
		return nil, func() {}, err
	}
	sinks = append(sinks, more...)
	closers = append(closers, func() error { closeMore(); return nil })
	return sinks, closeAll, nil
}

// eventSinks opens the configured event sinks (events file, SIEM
// outputs); storage is not one of them (the detect stage's Store).
func (d *daemon) eventSinks(ctx context.Context) (pipeline.EventSink, func(), error) {
	var sinks pipeline.EventSinks
	var closers []func() error
	closeAll := func() {
		for _, c := range closers {
			c()
		}
	}
	if p := d.cfg.Files.Events; p != "" {
		f, err := pipeline.OpenEventsFile(p)
		if err != nil {
			return nil, closeAll, err
		}
		sinks = append(sinks, f)
		closers = append(closers, f.Close)
	}
	more, closeMore, err := d.storeSinks(ctx)
	if err != nil {
		closeAll()
		return nil, func() {}, err
	}
	for _, m := range more {
		if !d.cfg.KeepRawRecords() {
			m = stripRaw{next: m}
		}
		sinks = append(sinks, m)
	}
	closers = append(closers, func() error { closeMore(); return nil })
	if len(sinks) == 0 {
		return nil, closeAll, nil
	}
	return sinks, closeAll, nil
}
