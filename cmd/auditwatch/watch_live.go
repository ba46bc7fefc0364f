package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"auditwatch/ingest/source"
	"auditwatch/watch"
)

// watchLive wires the pipeline's watch over itself between the sources
// and pub: the silent-source alarm (on by default) and, with a `canary:`
// section, the end-to-end canary. Findings go to sink (every output). It
// returns the publisher the sources publish to and a stop function.
func (d *daemon) watchLive(ctx context.Context, pub source.Publisher, sink watch.FindingSink) (source.Publisher, func(), error) {
	noop := func() {}
	sc, err := watch.DecodeSilence(&d.cfg.Silence)
	if err != nil {
		return nil, noop, fmt.Errorf("config: silence: %w", err)
	}
	cc, err := watch.DecodeCanary(&d.cfg.Canary)
	if err != nil {
		return nil, noop, fmt.Errorf("config: canary: %w", err)
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
				return nil, noop, fmt.Errorf("canary.aws: %w", err)
			}
			sm = secretsmanager.NewFromConfig(acfg)
		}
		can = watch.NewCanary(cc, nil, sm)
	}
	if sil == nil && can == nil {
		return pub, noop, nil
	}
	r := watch.NewRunner(sil, can, cc.HeartbeatURL, sink, nil, nil, d.log.With("component", "watch"), d.reg)
	r.SilenceState = silState
	wctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.Run(wctx, 5*time.Second)
	}()
	return r.Publisher(pub), func() { cancel(); wg.Wait() }, nil
}
