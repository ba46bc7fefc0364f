package main

import (
	"context"
	"fmt"
	"io"

	"auditwatch/ingest/source"
	"auditwatch/internal/lifecycle"
	"auditwatch/pipeline"
	"auditwatch/stream"
)

func init() {
	register("run", command{
		summary: "run every stage in one process on the embedded stream (--config FILE)",
		run:     runAll,
	})
}

// Embedded topic names.
const embeddedEvents = "events"

func runAll(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	d, code := newDaemon("run", args, stderr)
	if d == nil {
		return code
	}
	d.stdout = stdout
	if err := d.runAll(ctx); err != nil {
		d.log.Error("run failed", "err", err)
		return 1
	}
	return 0
}

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
	open, err := d.detectorOpener("embedded")
	if err != nil {
		return err
	}
	if open, err = d.withRules(ctx, open); err != nil {
		return err
	}
	// The detector state of the one embedded partition; its checkpoint
	// metadata holds where each source resumes.
	det, err := open(0, false)
	if err != nil {
		return err
	}
	meta, err := det.Meta()
	if err != nil {
		det.Close()
		return err
	}
	positions := source.NewMemCheckpoints(pipeline.PositionsFromMeta(meta))
	handedOut := false
	opener := func(p int, fresh bool) (pipeline.Detector, error) {
		if p != 0 || fresh || handedOut {
			return open(p, fresh)
		}
		handedOut = true
		return det, nil
	}

	sinks, closeSinks, err := d.findingSinks(ctx)
	if err != nil {
		det.Close()
		return err
	}
	defer closeSinks()
	events, closeEvents, err := d.eventSinks(ctx)
	if err != nil {
		det.Close()
		return err
	}
	defer closeEvents()

	emb, err := stream.NewEmbedded(cfg.Stream.Embedded, d.reg)
	if err != nil {
		return err
	}
	defer emb.Close()
	enrich, err := openEnrichment(cfg, d.stateDir("identity"), d.log)
	if err != nil {
		return err
	}
	defer enrich.Close()
	ing, err := pipeline.NewIngest(pipeline.IngestConfig{
		Stream: emb, EventsTopic: embeddedEvents, CarryPositions: true,
		Logger: d.log, Registerer: d.reg,
	})
	if err != nil {
		return err
	}
	// the canary's events come back through the detect stage (canary)
	watchPub, canary, stopWatch, err := d.watchLive(ctx, ing, sinks, false)
	if err != nil {
		return err
	}
	defer stopWatch()
	stage, err := pipeline.NewDetectStage(pipeline.DetectConfig{
		Enrich:             enrich.hook(),
		BeforeCheckpoint:   enrich.flushHook(),
		Canary:             canary,
		Open:               opener,
		Findings:           sinks,
		Events:             events,
		CheckpointEvents:   cfg.State.CheckpointEvents,
		CheckpointInterval: cfg.State.CheckpointInterval.D(),
		IdleDrain:          cfg.State.IdleDrain.D(),
		Logger:             d.log,
		Registerer:         d.reg,
	})
	if err != nil {
		return err
	}
	srcs, err := buildSources(cfg, positions, d.log, d.reg)
	if err != nil {
		return err
	}
	srcPub, stopTrail, err := d.trailLive(ctx, srcs, watchPub, sinks)
	if err != nil {
		return err
	}
	defer stopTrail()

	// Start order: progress, then the detect stage, then the sources; the
	// stop runs backwards, so the sources stop first and the detect stage
	// hands on and checkpoints what it has taken, all within the shutdown
	// deadline; the last progress line comes after.
	var cs []lifecycle.Component
	if iv := cfg.Console.Progress; iv > 0 {
		var stopProgress func()
		cs = append(cs, lifecycle.Component{
			Name:  "progress",
			Start: func(context.Context) error { stopProgress = d.progress(iv.D()); return nil },
			Stop:  func(context.Context) error { stopProgress(); return nil },
		})
	}
	cs = append(cs, lifecycle.Component{Name: "detect stage", Run: func(ctx context.Context) error {
		return emb.Consume(ctx, embeddedEvents, "detect", stage)
	}})
	cs = append(cs, sourceComponents(srcs, srcPub)...)
	return d.runComponents(ctx, cs...)
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

// eventSinks opens the configured event sinks.
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
