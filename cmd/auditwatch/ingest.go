package main

import (
	"auditwatch/detect"
	"context"

	"auditwatch/ingest/source"
	"auditwatch/pipeline"
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
	k, err := d.kafkaStream()
	if err != nil {
		return err
	}
	defer k.Close()
	cps, err := source.OpenStore(d.stateDir("ingest", "checkpoints.db"))
	if err != nil {
		return err
	}
	defer cps.Close()
	kc := d.cfg.Stream.Kafka
	ing, err := pipeline.NewIngest(pipeline.IngestConfig{
		Stream: k, EventsTopic: kc.EventsTopic, ByIPTopic: kc.EventsByIPTopic,
		Checkpoints: cps, Logger: d.log, Registerer: d.reg,
		// Rollout writes reach every partition: readers of the secret
		// are keyed to other principals' partitions.
		Notes: detect.RolloutWrites(d.conf.Detectors),
	})
	if err != nil {
		return err
	}
	srcs, err := buildSources(d.conf, cps, d.log, d.reg)
	if err != nil {
		return err
	}
	// CloudTrail validation and the pipeline watch raise their findings
	// here, beside the sources: they go to the findings topic, which the
	// alert stage delivers to every output.
	findings := pipeline.FindingsPublisher{Stream: k, Topic: kc.FindingsTopic}
	watchPub, _, stopWatch, err := d.watchLive(ctx, ing, findings, true)
	if err != nil {
		return err
	}
	defer stopWatch()
	srcPub, stopTrail, err := d.trailLive(ctx, srcs, watchPub, findings)
	if err != nil {
		return err
	}
	defer stopTrail()
	return d.runComponents(ctx, sourceComponents(srcs, srcPub)...)
}
