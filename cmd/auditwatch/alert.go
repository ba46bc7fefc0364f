package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"auditwatch/internal/lifecycle"
	"auditwatch/pipeline"
	"auditwatch/store"
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
// every finding to the finding sinks (findings file, alert router),
// committing only what they have taken. With a storage: section a second
// consumer group (stream.kafka.findings_store_group) reads the same topic
// and stores the findings at the store's pace, committing only what the
// store acknowledged: a slow or stalled store holds neither the outbox
// hand-off nor the outputs.
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
		storeSink  pipeline.StoreSink
	)
	kc := d.cfg.Stream.Kafka
	cs := []lifecycle.Component{{
		Name:  "kafka",
		Start: func(context.Context) (err error) { k, err = d.kafkaStream(); return err },
		Stop:  func(context.Context) error { return k.Close() },
	}, {
		Name: "finding sinks",
		Start: func(ctx context.Context) (err error) {
			if sinks, closeSinks, err = d.findingSinks(ctx); err != nil {
				return err
			}
			// Storage has its own consumer group (below), not a sink
			// on the alert path.
			sinks = withoutStorage(sinks)
			if storeSink, err = d.storeSink(ctx); err != nil {
				return err
			}
			if len(sinks) == 0 && storeSink == nil {
				return errors.New("no finding outputs configured (files.findings, alerts or storage)")
			}
			return nil
		},
		Stop: func(context.Context) error { closeSinks(); return nil },
	}}
	if d.conf.Storage != nil && d.conf.Storage.Backend != store.BackendOff {
		var st *pipeline.StoreStage
		cs = append(cs, lifecycle.Component{
			Name: "store findings",
			Start: func(context.Context) (err error) {
				st, err = pipeline.NewStoreStage(pipeline.StoreStageConfig{
					Store: storeSink, Topic: kc.FindingsTopic, CommitInterval: kc.CommitInterval.D(),
					Logger: d.log.With("component", "store-consumer"), Registerer: d.reg,
				})
				if err == nil {
					d.addStoreStatus(st)
				}
				return err
			},
			Run: func(ctx context.Context) error { return k.Consume(ctx, kc.FindingsTopic, kc.FindingsStoreGroup, st) },
		})
	}
	cs = append(cs, lifecycle.Component{
		Name: "alert",
		Start: func(context.Context) (err error) {
			stage, err = pipeline.NewAlertStage(pipeline.AlertConfig{
				Findings: sinks, CommitInterval: kc.CommitInterval.D(), Logger: d.log, Registerer: d.reg,
			})
			return err
		},
		Run: func(ctx context.Context) error { return k.Consume(ctx, kc.FindingsTopic, kc.AlertGroup, stage) },
	})
	return d.runComponents(ctx, cs...)
}

// addStoreStatus lists a store consumer in /readyz.
func (d *daemon) addStoreStatus(st interface{ WriteStatus(io.Writer) }) {
	d.statusMu.Lock()
	d.storeStages = append(d.storeStages, st)
	d.statusMu.Unlock()
}

// writeStoreStatus adds each store consumer's state to /readyz: what it
// handed to the store and the store has not acknowledged yet (a stalled
// store does not make the stage unready; the topic keeps the records).
func (d *daemon) writeStoreStatus(w io.Writer) {
	d.statusMu.Lock()
	sts := d.storeStages
	wr := d.storeStatusW
	d.statusMu.Unlock()
	if wr != nil {
		evs, fs, last := wr.Backlog()
		fmt.Fprintf(w, "store writer: events waiting %d, findings waiting %d", evs, fs)
		if !last.IsZero() {
			fmt.Fprintf(w, ", last block written %s ago", time.Since(last).Round(time.Millisecond))
		}
		fmt.Fprintln(w)
	}
	for _, st := range sts {
		st.WriteStatus(w)
	}
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
