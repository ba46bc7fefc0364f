package main

import (
	"fmt"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"auditwatch/detect"
	"auditwatch/stream"
)

// kafkaStream opens the configured Kafka stream; the stage commands need
// one.
func (d *daemon) kafkaStream() (*stream.Kafka, error) {
	if d.cfg.Stream.Type != stream.TypeKafka {
		return nil, fmt.Errorf("stream.type is %q: the ingest, detect and alert commands run against Kafka (use `auditwatch run` for one process)", d.cfg.Stream.Type)
	}
	return stream.NewKafka(d.cfg.Stream.Kafka, d.log, d.reg)
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
