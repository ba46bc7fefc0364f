package main

import (
	"context"

	"auditwatch/detect"
	"auditwatch/ingest/source"
	"auditwatch/internal/lifecycle"
	"auditwatch/pipeline"
	"auditwatch/stream"
)

func init() {
	register("ingest", command{
		summary: "run the configured sources, publishing events to Kafka (--config FILE)",
		run:     runIngest,
		daemon:  true,
	})
}

var runIngest = daemonCommand("ingest", (*daemon).runIngest, false)

// runIngest reads every source and publishes to the events topic (and
// failed authentications to the events-by-ip topic). A source's checkpoint
// advances only once Kafka has acknowledged its batch.
func (d *daemon) runIngest(ctx context.Context) error {
	// Health and metrics answer during the set-up below.
	stopHTTP, err := d.startHTTP(ctx)
	defer stopHTTP()
	if err != nil {
		return err
	}
	// The set-up is components: opened in order, closed in reverse order
	// after the sources stop (or when a later step fails).
	var (
		k        *stream.Kafka
		cps      *source.Store
		ing      *pipeline.Ingest
		findings pipeline.FindingsPublisher
		watchPub source.Publisher
		srcs     []source.Source
		srcPub   source.Publisher

		stopWatch, stopTrail func()
	)
	kc := d.cfg.Stream.Kafka
	setup := []lifecycle.Component{{
		Name:  "kafka",
		Start: func(context.Context) (err error) { k, err = d.kafkaStream(); return err },
		Stop:  func(context.Context) error { return k.Close() },
	}, {
		Name: "checkpoints",
		Start: func(context.Context) (err error) {
			cps, err = source.OpenStore(d.stateDir("ingest", "checkpoints.db"))
			return err
		},
		Stop: func(context.Context) error { return cps.Close() },
	}, {
		// CloudTrail validation and the pipeline watch raise their
		// findings here, beside the sources: they go to the findings
		// topic, which the alert stage delivers to every output.
		Name: "watch",
		Start: func(ctx context.Context) (err error) {
			ing, err = pipeline.NewIngest(pipeline.IngestConfig{
				Stream: k, EventsTopic: kc.EventsTopic, ByIPTopic: kc.EventsByIPTopic,
				Checkpoints: cps, Logger: d.log, Registerer: d.reg,
				// Rollout writes reach every partition: readers of the
				// secret are keyed to other principals' partitions.
				Notes: detect.RolloutWrites(d.conf.Detectors),
			})
			if err != nil {
				return err
			}
			findings = pipeline.FindingsPublisher{Stream: k, Topic: kc.FindingsTopic}
			watchPub, _, stopWatch, err = d.watchLive(ctx, ing, findings, true)
			return err
		},
		Stop: func(context.Context) error { stopWatch(); return nil },
	}, {
		Name: "trail",
		Start: func(ctx context.Context) (err error) {
			if srcs, err = buildSources(d.conf, cps, d.log, d.reg); err != nil {
				return err
			}
			srcPub, stopTrail, err = d.trailLive(ctx, srcs, watchPub, findings)
			return err
		},
		Stop: func(context.Context) error { stopTrail(); return nil },
	}}
	if err := d.mgr.Start(ctx, setup...); err != nil {
		return d.mgr.Stop(err)
	}
	return d.runComponents(ctx, sourceComponents(srcs, srcPub)...)
}
