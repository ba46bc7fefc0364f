package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"auditwatch/config/duration"
	"auditwatch/detect"
	"auditwatch/detect/state"
	"auditwatch/incident"
	"auditwatch/ingest"
	"auditwatch/schema"

	"github.com/prometheus/client_golang/prometheus"
)

func init() {
	register("baseline", command{
		summary: "learn first-seen pairs, known networks and rate baselines from archived trails into the detector state, so run starts without a learning period (--config FILE [--since 30d] [--state DIR] PATH...)",
		run:     runBaseline,
	})
}

// runBaseline replays archived trails (files, directories, .gz) as
// history into the detector state `run` opens (or --state DIR, the store
// `replay --state` reads). Nothing is raised; the store remembers where
// the history ends, so principals, pairs and networks seen in it count as
// learned from then on, without a learning period of their own.
func baselineMain(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fl := newFlagSet("baseline", stderr, "[--config FILE] [--since 30d] [--state DIR] PATH...", commands["baseline"].summary)
	configPath := configFlag(fl)
	since := fl.String("since", "30d", "learn events this recent (Go duration or days, e.g. 30d)")
	stateDir := fl.String("state", "", "a replay state directory instead of run's detector state under state.dir")
	opts := ingest.DefaultOptions()
	fl.StringVar(&opts.Format, "format", opts.Format, "input format: auto, cloudtrail or vault")
	if code, done := parseFlags(fl, args); done {
		return code
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, "auditwatch baseline: "+format+"\n", a...)
		return code
	}
	if fl.NArg() == 0 {
		return fail(2, "no input: give the archived trails (files, directories, .gz) to learn from")
	}
	window, err := duration.Parse(*since)
	if err != nil || window <= 0 {
		return fail(2, "--since %q: want a positive duration such as 30d or 720h", *since)
	}
	now := time.Now().UTC()
	cutoff := now.Add(-window)

	var det interface {
		Process(schema.Event) []schema.Finding
		Checkpoint(map[string][]byte) error
		Meta() (map[string][]byte, error)
		Close() error
	}
	var where string
	if *stateDir != "" {
		dcfg, _, err := loadReplayConfigRules(*configPath)
		if err != nil {
			return fail(2, "%v", err)
		}
		dcfg.LearnUntil = now
		st, err := state.Open(state.Config{Dir: *stateDir})
		if err != nil {
			return fail(1, "%v", err)
		}
		eng, err := detect.New(dcfg, st, slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})), nil)
		if err != nil {
			st.Close()
			return fail(2, "%v", err)
		}
		det, where = engine{Engine: eng, st: st}, *stateDir
	} else {
		l, code := loadConfig("baseline", *configPath, stderr)
		if l == nil {
			return code
		}
		d := &daemon{cfg: l.Config, conf: l, log: l.Logging.Logger(stderr).With("stage", "baseline"), reg: prometheus.NewRegistry(), stderr: stderr}
		dcfg, err := d.detectConfig()
		if err != nil {
			return fail(2, "%v", err)
		}
		// Everything learned is history: it raises nothing, and the store
		// keeps this end so run treats what it saw as learned.
		dcfg.LearnUntil = now
		det, err = d.detectorOpenerFor("embedded", dcfg)(0, false)
		if err != nil {
			return fail(1, "open run's detector state (is run still holding it?): %v", err)
		}
		where = d.stateDir("detect", "embedded", "0")
	}
	defer det.Close()
	// run's source positions stay as they were.
	meta, err := det.Meta()
	if err != nil {
		return fail(1, "%v", err)
	}
	var learned, older int64
	var first, last time.Time
	var total ingest.Stats
	inputs, err := ingest.Inputs(fl.Args())
	if err == nil {
		err = replayMerged(ctx, inputs, opts, map[string]replayPos{}, stderr, &total, func(_ string, ev schema.Event) error {
			if ev.Time.Before(cutoff) || ev.Time.After(now) {
				older++
				return nil
			}
			det.Process(ev)
			learned++
			if first.IsZero() || ev.Time.Before(first) {
				first = ev.Time
			}
			if ev.Time.After(last) {
				last = ev.Time
			}
			if learned%200_000 == 0 {
				return det.Checkpoint(meta)
			}
			return nil
		})
	}
	if err == nil && learned > 0 {
		// The history ends just after the last event learned: later
		// events (run's) are judged.
		endHistory(det, last.Add(time.Nanosecond))
		err = det.Checkpoint(meta)
	}
	if err != nil {
		return fail(1, "%v", err)
	}
	if learned == 0 {
		return fail(1, "no event within --since %s in %d input(s): nothing learned", *since, len(inputs))
	}
	fmt.Fprintf(stdout, "baseline: learned %d events from %s to %s into %s (%d outside the last %s skipped)\n",
		learned, first.Format(time.RFC3339Nano), last.Format(time.RFC3339Nano), where, older, *since)
	return 0
}

// endHistory finds the detector engine behind det (the correlation stage
// wraps it) and ends its history at t.
func endHistory(det any, t time.Time) {
	for det != nil {
		switch d := det.(type) {
		case interface{ EndHistory(time.Time) }:
			d.EndHistory(t)
			return
		case interface{ Unwrap() incident.Detector }:
			det = d.Unwrap()
		default:
			return
		}
	}
}
