package main

import (
	"context"

	"auditwatch/internal/lifecycle"
	"auditwatch/pipeline"
	"auditwatch/schema"
	"auditwatch/stream"
)

func init() {
	register("detect", command{
		summary: "run the detectors on the Kafka events topics, publishing findings (--config FILE)",
		run:     runDetect,
		daemon:  true,
	})
}

var runDetect = daemonCommand("detect", (*daemon).runDetect, false)

// runDetect joins the detect consumer group on the events topic (every
// detector, auth failures counted per principal) and, in a second group,
// on the events-by-ip topic (auth failures counted per source IP). Each
// owned partition has its own engine and state; findings go to the
// findings topic before the state checkpoint and the offset commit.
func (d *daemon) runDetect(ctx context.Context) error {
	dcfg, err := d.detectConfig()
	if err != nil {
		return err
	}
	// Health and metrics answer during the set-up below.
	stopHTTP, err := d.startHTTP(ctx)
	defer stopHTTP()
	if err != nil {
		return err
	}
	// What the stages use is opened as components: in order, closed in
	// reverse order after the stages stop (or when a later step fails).
	var (
		k                       *stream.Kafka
		sink                    pipeline.FindingsPublisher
		events                  pipeline.EventSink
		storeSink               pipeline.StoreSink
		enrich                  *enrichment
		canaryPrincipal         canaryHook
		canaryByIP              canaryHook
		disarm                  func()
		closeEvents, stopCanary func()
	)
	kc := d.cfg.Stream.Kafka
	setup := []lifecycle.Component{{
		Name: "kafka",
		Start: func(context.Context) (err error) {
			k, err = d.kafkaStream()
			sink = pipeline.FindingsPublisher{Stream: k, Topic: kc.FindingsTopic}
			return err
		},
		Stop: func(context.Context) error { return k.Close() },
	}, {
		// Every event is stored (and forwarded to SIEM outputs) by the
		// principal-keyed instance, whose topic carries all of them.
		// Storage is off the detect path: events are queued to the
		// store's writer, the instance goes on detecting and publishing
		// findings, and it commits its offsets only up to what the store
		// acknowledged (pipeline.DetectConfig.Store). The events stored
		// are the enriched ones (network, linked Vault identity), which a
		// reader of the raw topic could not reproduce. Findings are
		// stored by the alert stage from the findings topic.
		Name: "event sinks",
		Start: func(ctx context.Context) (err error) {
			if events, closeEvents, err = d.eventSinks(ctx); err != nil {
				return err
			}
			s, err := d.storeSink(ctx)
			if err != nil {
				closeEvents()
				return err
			}
			storeSink = s
			return nil
		},
		Stop: func(context.Context) error { closeEvents(); return nil },
	}, {
		// Credential linking runs in the principal-keyed instance, which
		// sees every event (the by-IP topic carries failures only).
		Name: "enrichment",
		Start: func(context.Context) (err error) {
			enrich, err = openEnrichment(d.cfg, d.stateDir("identity"), d.log)
			return err
		},
		Stop: func(context.Context) error { enrich.Close(); return nil },
	}, {
		// The end-to-end canary's events are labelled here and count as
		// having come through the whole pipeline (the ingest stage makes
		// the reads).
		Name: "canary",
		Start: func(context.Context) (err error) {
			canaryPrincipal, canaryByIP, disarm, stopCanary, err = d.detectCanary(sink)
			return err
		},
		Stop: func(context.Context) error { stopCanary(); return nil },
	}}
	if err := d.mgr.Start(ctx, setup...); err != nil {
		return d.mgr.Stop(err)
	}
	if ctx.Err() != nil {
		return d.mgr.Stop(nil)
	}
	var cs []lifecycle.Component
	// Instances share credential links (an issue and its key's uses may
	// land on different instances).
	if kc.LinksTopic != "" && enrich != nil && enrich.linker != nil {
		run, err := d.shareLinks(k, kc.LinksTopic, enrich)
		if err != nil {
			return err
		}
		cs = append(cs, lifecycle.Component{Name: "identity links", Run: run})
	}
	for _, r := range []struct{ role, topic, group string }{
		{rolePrincipal, kc.EventsTopic, kc.DetectGroup},
		{roleByIP, kc.EventsByIPTopic, kc.DetectGroup + "-by-ip"},
	} {
		c, ok := detectConfigFor(dcfg, r.role)
		if !ok {
			continue
		}
		var ev pipeline.EventSink
		var st pipeline.StoreSink
		var hook func(context.Context, *schema.Event, []schema.Finding) []schema.Finding
		var flush func() error
		canary := canaryByIP
		open := d.detectorOpenerFor(r.role, c)
		if r.role == rolePrincipal {
			ev, st = events, storeSink
			hook = enrich.hook()
			flush = enrich.flushHook()
			canary = canaryPrincipal
			// Sigma rules see every event once: on the principal-keyed topic
			if open, err = d.withRules(ctx, open); err != nil {
				return err
			}
		}
		stage, err := pipeline.NewDetectStage(pipeline.DetectConfig{
			Enrich:             hook,
			BeforeCheckpoint:   flush,
			Canary:             canary,
			Open:               open,
			Findings:           sink,
			Events:             ev,
			Store:              st,
			StoreEventsOnly:    true,
			Replayable:         true,
			CheckpointEvents:   d.cfg.State.CheckpointEvents,
			CheckpointInterval: d.cfg.State.CheckpointInterval.D(),
			IdleDrain:          d.cfg.State.IdleDrain.D(),
			Logger:             d.log.With("instance", r.role),
			Registerer:         labelled(d.reg, "instance", r.role),
		})
		if err != nil {
			return err
		}
		var h stream.Handler = stage
		if r.role == rolePrincipal && canaryPrincipal != nil {
			h = disarmOnRevoke{stage, disarm}
		}
		cs = append(cs, lifecycle.Component{Name: "detect " + r.role, Run: func(ctx context.Context) error {
			return k.Consume(ctx, r.topic, r.group, h)
		}})
	}
	return d.runComponents(ctx, cs...)
}

// disarmOnRevoke disarms the passive canary when partitions are given up
// (the canary's events may now go to another instance).
type disarmOnRevoke struct {
	*pipeline.DetectStage
	disarm func()
}

func (h disarmOnRevoke) Revoked(ctx context.Context, parts []int) error {
	err := h.DetectStage.Revoked(ctx, parts)
	h.disarm()
	return err
}
