package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"auditwatch/detect"
	"auditwatch/stream"
)

// task is one long-running part of a stage command.
type task struct {
	name string
	run  func(ctx context.Context) error
}

// kafkaStream opens the configured Kafka stream; the stage commands need
// one.
func (d *daemon) kafkaStream() (*stream.Kafka, error) {
	if d.cfg.Stream.Type != stream.TypeKafka {
		return nil, fmt.Errorf("stream.type is %q: the ingest, detect and alert commands run against Kafka (use `auditwatch run` for one process)", d.cfg.Stream.Type)
	}
	return stream.NewKafka(d.cfg.Stream.Kafka, d.log, d.reg)
}

// runTasks serves the HTTP endpoint, runs the tasks until ctx ends or one
// fails, then stops them all within the shutdown deadline.
func (d *daemon) runTasks(ctx context.Context, tasks ...task) error {
	if err := d.serve(); err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		d.close(sctx)
	}()
	tctx, stop := context.WithCancel(context.Background())
	defer stop()
	errc := make(chan error, len(tasks))
	var wg sync.WaitGroup
	for _, t := range tasks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := t.run(tctx)
			if err == nil && tctx.Err() == nil {
				err = errors.New("stopped unexpectedly")
			}
			if err != nil {
				err = fmt.Errorf("%s: %w", t.name, err)
			}
			errc <- err
		}()
	}
	d.ready.Store(true)
	d.log.Info("running", "tasks", len(tasks))
	var failure error
	select {
	case <-ctx.Done():
		d.log.Info("shutting down", "deadline", d.cfg.ShutdownTimeout)
	case failure = <-errc:
	}
	d.ready.Store(false)
	stop()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d.cfg.ShutdownTimeout):
		return fmt.Errorf("did not stop within %v", d.cfg.ShutdownTimeout)
	}
	close(errc)
	for err := range errc {
		if failure == nil && err != nil && !errors.Is(err, context.Canceled) {
			failure = err
		}
	}
	if failure != nil {
		return failure
	}
	d.log.Info("stopped")
	return nil
}

// Detector instances of the Kafka detect stage.
const (
	// rolePrincipal consumes the events topic (keyed by principal) and
	// runs every detector, counting auth failures per principal.
	rolePrincipal = "principal"
	// roleByIP consumes the events-by-ip topic and runs only
	// auth_failure_spike, counting per source IP.
	roleByIP = "by-ip"
)

// detectConfigFor splits the detectors configuration between the two
// instances so no failure is counted twice. ok is false when the role has
// nothing to do.
func detectConfigFor(c detect.Config, role string) (detect.Config, bool) {
	off := func() *bool { b := false; return &b }
	auth := c.AuthFailureSpike.Enabled == nil || *c.AuthFailureSpike.Enabled
	switch role {
	case rolePrincipal:
		if slices.Contains(c.AuthFailureSpike.Keys, "principal") {
			c.AuthFailureSpike.Keys = []string{"principal"}
		} else {
			c.AuthFailureSpike.Enabled = off()
		}
		return c, true
	case roleByIP:
		if !auth || !slices.Contains(c.AuthFailureSpike.Keys, "ip") {
			return c, false
		}
		c.AuthFailureSpike.Keys = []string{"ip"}
		c.UnexpectedIP.Enabled = off()
		c.FirstTimeAccess.Enabled = off()
		c.PrivilegedUse.Enabled = off()
		c.AccessVolumeSpike.Enabled = off()
		return c, true
	}
	return c, false
}

// labelled wraps reg so every metric registered through it carries
// name=value (one of a fixed set of instance names).
func labelled(reg prometheus.Registerer, name, value string) prometheus.Registerer {
	return prometheus.WrapRegistererWith(prometheus.Labels{name: value}, reg)
}
