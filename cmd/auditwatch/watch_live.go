package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"auditwatch/ingest/source"
	"auditwatch/schema"
	"auditwatch/watch"
)

// canaryHook is the detect stage's canary hook (pipeline.DetectConfig.Canary).
type canaryHook = func(ev *schema.Event, replayed bool) bool

// watchLive wires the pipeline's watch over itself between the sources
// and pub: the silent-source alarm (on by default) and, with a `canary:`
// section, the end-to-end canary. Findings go to sink (every output). It
// returns the publisher the sources publish to, the hook that lets the
// detect stage label canary events and count them as arrived (nil without
// a canary) and a stop function. atIngest (the Kafka ingest stage, whose
// detect stage runs elsewhere): canary events count as arrived at the
// parser here, and the heartbeat is left to the detect stage's canary.
func (d *daemon) watchLive(ctx context.Context, pub source.Publisher, sink watch.FindingSink, atIngest bool) (source.Publisher, canaryHook, func(), error) {
	noop := func() {}
	sc, err := watch.DecodeSilence(&d.cfg.Silence)
	if err != nil {
		return nil, nil, noop, fmt.Errorf("config: silence: %w", err)
	}
	cc, err := watch.DecodeCanary(&d.cfg.Canary)
	if err != nil {
		return nil, nil, noop, fmt.Errorf("config: canary: %w", err)
	}
	var sil *watch.Silence
	silState := d.stateDir("watch", "silence.json")
	if *sc.Enabled {
		sil = watch.NewSilence(sc)
		// the baselines learned before a restart: no new learning period
		if err := sil.Load(silState, time.Now()); err != nil {
			d.log.Warn("silence baselines not restored: learning again", "err", err)
		}
	}
	var can *watch.Canary
	if cc.Active() {
		var sm watch.SecretsAPI
		if cc.AWS != nil {
			acfg, err := cc.AWS.AWS.Load(ctx)
			if err != nil {
				return nil, nil, noop, fmt.Errorf("canary.aws: %w", err)
			}
			sm = secretsmanager.NewFromConfig(acfg)
		}
		can = watch.NewCanary(cc, nil, sm)
		if atIngest {
			can.Stage = "parser"
		}
	}
	if sil == nil && can == nil {
		return pub, nil, noop, nil
	}
	hb, err := cc.Heartbeat()
	if err != nil {
		return nil, nil, noop, fmt.Errorf("canary: %w", err)
	}
	if atIngest {
		hb = ""
	}
	r := watch.NewRunner(sil, can, hb, sink, nil, nil, d.log.With("component", "watch"), d.reg)
	r.SilenceState = silState
	r.MatchAtIngest = atIngest
	every := sc.CheckInterval.D()
	if can != nil && (sil == nil || cc.CheckInterval.D() < every) {
		every = cc.CheckInterval.D()
	}
	var hook canaryHook
	if can != nil && !atIngest {
		hook = r.Detected
	}
	wctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.Run(wctx, every)
	}()
	return r.Publisher(pub), hook, func() { cancel(); wg.Wait() }, nil
}

// detectCanary is the Kafka detect stage's passive canary (with a
// `canary:` section): it labels canary events, keeps them from detectors
// and storage, and raises pipeline_blind when, once seen, they stop
// coming through (see watch.NewPassiveCanary). It returns the principal
// instance's hook, the by-IP instance's (label only), the Disarm to call
// when partitions are given up, and a stop function; nil hooks without a
// canary.
func (d *daemon) detectCanary(sink watch.FindingSink) (principal, byIP canaryHook, disarm func(), stop func(), err error) {
	noop := func() {}
	cc, err := watch.DecodeCanary(&d.cfg.Canary)
	if err != nil {
		return nil, nil, noop, noop, fmt.Errorf("config: canary: %w", err)
	}
	if !cc.Active() {
		return nil, nil, noop, noop, nil
	}
	hb, err := cc.Heartbeat()
	if err != nil {
		return nil, nil, noop, noop, fmt.Errorf("canary: %w", err)
	}
	can := watch.NewPassiveCanary(cc)
	r := watch.NewRunner(nil, can, hb, sink, nil, nil, d.log.With("component", "canary"), d.reg)
	wctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.Run(wctx, cc.CheckInterval.D())
	}()
	byIP = func(ev *schema.Event, _ bool) bool { return can.Is(ev) }
	return r.Detected, byIP, r.Disarm, func() { cancel(); wg.Wait() }, nil
}
