package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/aws/aws-sdk-go-v2/service/cloudtrail"

	"auditwatch/config"
	"auditwatch/ingest/source"
	"auditwatch/trail"
)

// integritySetter is a source that can feed CloudTrail validation.
type integritySetter interface {
	SetIntegrity(source.Integrity)
}

// trailLive wires CloudTrail digest validation to the sources that read
// CloudTrail objects: every S3+SQS source, and directory sources of
// format auto or cloudtrail when the config has a `trail:` section. It
// returns the publisher the sources publish to (the verifier watches the
// events for StartLogging and trail updates) and a stop function that
// waits for the last findings to be written. Without such a source it
// returns pub unchanged.
func (d *daemon) trailLive(ctx context.Context, srcs []source.Source, pub source.Publisher, sink trail.FindingSink) (source.Publisher, func(), error) {
	noop := func() {}
	tc, err := trail.DecodeConfig(&d.cfg.Trail)
	if err != nil {
		return nil, noop, fmt.Errorf("config: %w", err)
	}
	if !*tc.Enabled {
		return pub, noop, nil
	}
	explicit := d.cfg.Trail.Kind != 0
	var hooked []integritySetter
	for i, s := range srcs {
		is, ok := s.(integritySetter)
		if !ok || i >= len(d.cfg.Sources) {
			continue
		}
		sc := d.cfg.Sources[i]
		switch sc.Type {
		case config.SourceS3SQS:
			if tc.AWS.Region == "" && tc.PublicKeysFile == "" && sc.S3SQS != nil {
				tc.AWS = sc.S3SQS.AWS
			}
			hooked = append(hooked, is)
		case config.SourceDir:
			if explicit && (sc.Format == "" || sc.Format == "auto" || sc.Format == "cloudtrail") {
				hooked = append(hooked, is)
			}
		}
	}
	if len(hooked) == 0 {
		return pub, noop, nil
	}
	var keys trail.KeySource
	switch {
	case tc.PublicKeysFile != "":
		b, err := os.ReadFile(tc.PublicKeysFile)
		if err != nil {
			return nil, noop, fmt.Errorf("trail.public_keys_file: %w", err)
		}
		sk, err := trail.ParseKeysFile(b)
		if err != nil {
			return nil, noop, fmt.Errorf("trail.public_keys_file %s: %w", tc.PublicKeysFile, err)
		}
		keys = sk
	case tc.AWS.Region != "":
		acfg, err := tc.AWS.Load(ctx)
		if err != nil {
			return nil, noop, fmt.Errorf("trail.aws: %w", err)
		}
		keys = &trail.APIKeys{API: cloudtrail.NewFromConfig(acfg)}
	default:
		return nil, noop, errors.New("trail: set trail.aws.region (ListPublicKeys) or trail.public_keys_file to check digest signatures")
	}
	v := trail.NewVerifier(tc, keys, d.log.With("component", "trail"))
	live := trail.NewLive(v, sink, nil, d.log.With("component", "trail"), d.reg)
	live.StatePath = d.stateDir("trail", "verifier.json")
	if err := live.Restore(); err != nil {
		return nil, noop, err
	}
	for _, is := range hooked {
		is.SetIntegrity(live)
	}
	lctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		live.Run(lctx)
	}()
	d.log.Info("CloudTrail digest validation on", "sources", len(hooked))
	return live.Publisher(pub), func() { cancel(); wg.Wait() }, nil
}
