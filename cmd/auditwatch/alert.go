package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"auditwatch/internal/lifecycle"
	"auditwatch/pipeline"
	"auditwatch/stream"
)

func init() {
	register("alert", command{
		summary: "deliver the Kafka findings topic to the alert outputs and storage (--config FILE)",
		run:     runAlert,
		daemon:  true,
	})
}

var runAlert = daemonCommand("alert", (*daemon).runAlert, false)

// runAlert joins the alert consumer group on the findings topic and hands
// every finding to the finding sinks (findings file, alert router,
// storage), committing only what they have taken.
func (d *daemon) runAlert(ctx context.Context) error {
	// Health and metrics answer during the set-up below.
	stopHTTP, err := d.startHTTP(ctx)
	defer stopHTTP()
	if err != nil {
		return err
	}
	// The set-up is components: opened in order, closed in reverse order
	// after the consumer stops (or when a later step fails).
	var (
		k          *stream.Kafka
		sinks      pipeline.FindingSinks
		closeSinks func()
		stage      *pipeline.AlertStage
	)
	kc := d.cfg.Stream.Kafka
	return d.runComponents(ctx, lifecycle.Component{
		Name:  "kafka",
		Start: func(context.Context) (err error) { k, err = d.kafkaStream(); return err },
		Stop:  func(context.Context) error { return k.Close() },
	}, lifecycle.Component{
		Name: "finding sinks",
		Start: func(ctx context.Context) (err error) {
			if sinks, closeSinks, err = d.findingSinks(ctx); err != nil {
				return err
			}
			if len(sinks) == 0 {
				return errors.New("no finding outputs configured (files.findings, alerts or storage)")
			}
			return nil
		},
		Stop: func(context.Context) error { closeSinks(); return nil },
	}, lifecycle.Component{
		Name: "alert",
		Start: func(context.Context) (err error) {
			stage, err = pipeline.NewAlertStage(pipeline.AlertConfig{
				Findings: sinks, CommitInterval: kc.CommitInterval.D(), Logger: d.log, Registerer: d.reg,
			})
			return err
		},
		Run: func(ctx context.Context) error { return k.Consume(ctx, kc.FindingsTopic, kc.AlertGroup, stage) },
	})
}

// writeAlertStatus adds each alert output's delivery state to /readyz, one
// line per output (a slow or dead output does not make the stage unready:
// it delays only itself, and its backlog waits in the outbox).
func (d *daemon) writeAlertStatus(w io.Writer) {
	if d.routerV == nil {
		return
	}
	for _, s := range d.routerV.Status() {
		fmt.Fprintf(w, "alert output %s: %s, backlog %d, lag %s", s.Output, s.State, s.Backlog, s.Lag.Round(time.Millisecond))
		if s.LastError != "" {
			fmt.Fprintf(w, ", last error %s", s.LastError)
		}
		if !s.LastDelivered.IsZero() {
			fmt.Fprintf(w, ", last delivered %s", s.LastDelivered.UTC().Format(time.RFC3339))
		}
		fmt.Fprintln(w)
	}
}
