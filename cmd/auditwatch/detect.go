package main

import (
	"context"
	"io"

	"auditwatch/internal/lifecycle"
	"auditwatch/pipeline"
	"auditwatch/schema"
)

func init() {
	register("detect", command{
		summary: "run the detectors on the Kafka events topics, publishing findings (--config FILE)",
		run:     runDetect,
	})
}

func runDetect(ctx context.Context, args []string, _ io.Reader, _, stderr io.Writer) int {
	d, code := newDaemon("detect", args, stderr)
	if d == nil {
		return code
	}
	if err := d.runDetect(ctx); err != nil {
		d.log.Error("detect failed", "err", err)
		return 1
	}
	return 0
}

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
	k, err := d.kafkaStream()
	if err != nil {
		return err
	}
	defer k.Close()
	kc := d.cfg.Stream.Kafka
	sink := pipeline.FindingsPublisher{Stream: k, Topic: kc.FindingsTopic}
	// Every event is stored (and forwarded to SIEM outputs) by the
	// principal-keyed instance, whose topic carries all of them.
	events, closeEvents, err := d.eventSinks(ctx)
	if err != nil {
		return err
	}
	defer closeEvents()
	// Credential linking runs in the principal-keyed instance, which sees
	// every event (the by-IP topic carries failures only).
	enrich, err := openEnrichment(d.cfg, d.stateDir("identity"), d.log)
	if err != nil {
		return err
	}
	defer enrich.Close()
	var cs []lifecycle.Component
	for _, r := range []struct{ role, topic, group string }{
		{rolePrincipal, kc.EventsTopic, kc.DetectGroup},
		{roleByIP, kc.EventsByIPTopic, kc.DetectGroup + "-by-ip"},
	} {
		c, ok := detectConfigFor(dcfg, r.role)
		if !ok {
			continue
		}
		var ev pipeline.EventSink
		var hook func(context.Context, *schema.Event, []schema.Finding) []schema.Finding
		var flush func() error
		open := d.detectorOpenerFor(r.role, c)
		if r.role == rolePrincipal {
			ev = events
			hook = enrich.hook()
			flush = enrich.flushHook()
			// Sigma rules see every event once: on the principal-keyed topic
			if open, err = d.withRules(ctx, open); err != nil {
				return err
			}
		}
		stage, err := pipeline.NewDetectStage(pipeline.DetectConfig{
			Enrich:             hook,
			BeforeCheckpoint:   flush,
			Open:               open,
			Findings:           sink,
			Events:             ev,
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
		cs = append(cs, lifecycle.Component{Name: "detect " + r.role, Run: func(ctx context.Context) error {
			return k.Consume(ctx, r.topic, r.group, stage)
		}})
	}
	return d.runComponents(ctx, cs...)
}
