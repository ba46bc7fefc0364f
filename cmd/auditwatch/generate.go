package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"auditwatch/gen"
)

func init() {
	register("generate", command{
		summary: "generate realistic CloudTrail / Vault audit records with labelled anomalies",
		run:     runGenerate,
	})
}

func generateMain(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("generate", stderr, "[flags]", commands["generate"].summary)
	format := fs.String("format", "mixed", "output format: vault (JSON lines), cloudtrail (one record per line, or S3 objects with --s3), mixed (both: vault-audit.log and cloudtrail.jsonl in the directory --out, or one time-ordered stream with --out -)")
	events := fs.Int("events", 100_000, "number of client requests to generate (a Vault request is a request and a response line)")
	seed := fs.Int64("seed", 1, "random seed; the same flags give the same bytes")
	start := fs.String("start", "", "event time of the first record, RFC 3339 (default 2026-01-05T00:00:00Z, or now with --rate)")
	duration := fs.Duration("duration", 0, "event-time span of the output (default 24h, or events/rate with --rate)")
	rate := fs.Float64("rate", 0, "write at this many events per second in wall time, appending to --out and flushing each batch (a live stream)")
	anomalies := fs.Bool("anomalies", true, "inject labelled anomalies after the learning period")
	anomalyCount := fs.Int("anomaly-count", 0, "number of anomalies (default 20)")
	rollouts := fs.Bool("rollouts", true, "plan unlabelled secret rollouts (a write, then first reads) between the anomalies")
	labels := fs.String("labels", "", "write the anomaly labels as JSON lines to this file")
	out := fs.String("out", "-", "output file, or - for stdout; a directory for --format mixed (unless -) and for --s3")
	s3 := fs.Bool("s3", false, "write CloudTrail as S3 delivery objects ({\"Records\":[...]} .json.gz) under the directory --out")
	ctShare := fs.Float64("cloudtrail-share", 0.5, "share of the population in AWS for --format mixed")
	machines := fs.Int("machines", 0, "machine identities in the population (default 50)")
	humans := fs.Int("humans", 0, "human users in the population (default 20)")
	learning := fs.Float64("learning", 0, "leading share of the time span that is the learning period (default 0.2)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "auditwatch generate: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	cfg := gen.Config{
		Seed: *seed, Events: *events, Duration: *duration, Rate: *rate, Anomalies: *anomalies,
		AnomalyCount: *anomalyCount, NoRollouts: !*rollouts, Machines: *machines, Humans: *humans, LearningFraction: *learning,
	}
	switch *format {
	case "vault":
		cfg.CloudTrailShare = 0
	case "cloudtrail":
		cfg.CloudTrailShare = 1
	case "mixed":
		cfg.CloudTrailShare = *ctShare
	default:
		fmt.Fprintf(stderr, "auditwatch generate: --format %q: want vault, cloudtrail or mixed\n", *format)
		return 2
	}
	if *s3 && (*format == "vault" || *out == "-") {
		fmt.Fprintln(stderr, "auditwatch generate: --s3 needs --format cloudtrail or mixed and a directory --out")
		return 2
	}
	switch {
	case *start != "":
		t, err := time.Parse(time.RFC3339Nano, *start)
		if err != nil {
			fmt.Fprintf(stderr, "auditwatch generate: --start %q: %v\n", *start, err)
			return 2
		}
		cfg.Start = t
	case *rate > 0:
		cfg.Start = time.Now().UTC()
	}
	g, err := gen.New(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "auditwatch generate: %v\n", err)
		return 2
	}
	if *labels != "" {
		if err := writeLabelsFile(*labels, g.Labels()); err != nil {
			fmt.Fprintf(stderr, "auditwatch generate: %v\n", err)
			return 1
		}
	}
	var (
		o       gen.Output
		closers []func() error
		bufs    []*bufio.Writer
	)
	live := *rate > 0
	openOut := func(path string) (io.Writer, error) {
		if path == "-" {
			bw := bufio.NewWriterSize(stdout, 1<<20)
			bufs = append(bufs, bw)
			return bw, nil
		}
		flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
		if live {
			flags = os.O_CREATE | os.O_WRONLY | os.O_APPEND
		}
		f, err := os.OpenFile(path, flags, 0o644)
		if err != nil {
			return nil, err
		}
		closers = append(closers, f.Close)
		return f, nil
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "auditwatch generate: %v\n", err)
		return 1
	}
	switch *format {
	case "vault":
		w, err := openOut(*out)
		if err != nil {
			return fail(err)
		}
		o.Vault = w
	case "cloudtrail":
		if *s3 {
			o.CloudTrailS3 = gen.NewS3Writer(*out, *seed)
		} else {
			w, err := openOut(*out)
			if err != nil {
				return fail(err)
			}
			o.CloudTrail = w
		}
	case "mixed":
		if *out == "-" && !*s3 {
			w, _ := openOut("-")
			o.Combined = w
			break
		}
		if err := os.MkdirAll(*out, 0o755); err != nil {
			return fail(err)
		}
		w, err := openOut(filepath.Join(*out, "vault-audit.log"))
		if err != nil {
			return fail(err)
		}
		o.Vault = w
		if *s3 {
			o.CloudTrailS3 = gen.NewS3Writer(filepath.Join(*out, "cloudtrail"), *seed)
		} else if o.CloudTrail, err = openOut(filepath.Join(*out, "cloudtrail.jsonl")); err != nil {
			return fail(err)
		}
	}
	o.Flush = func() error {
		for _, b := range bufs {
			if err := b.Flush(); err != nil {
				return err
			}
		}
		return nil
	}
	st, runErr := g.Run(ctx, o)
	for _, c := range closers {
		if err := c(); err != nil && runErr == nil {
			runErr = err
		}
	}
	fmt.Fprintf(stderr, "auditwatch generate: %d events (%d cloudtrail, %d vault requests), %d bytes, %d anomalies, learning period ends %s\n",
		st.Events, st.CloudTrailEvents, st.VaultEvents, st.Bytes, len(g.Labels()), g.LearningEnd().Format(time.RFC3339Nano))
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		return fail(runErr)
	}
	return 0
}

func writeLabelsFile(path string, labels []gen.Label) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("labels: %w", err)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("labels: %w", err)
	}
	if err := gen.WriteLabels(f, labels); err != nil {
		f.Close()
		return fmt.Errorf("labels %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("labels %s: %w", path, err)
	}
	return nil
}
