package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"auditwatch/config/duration"
	"auditwatch/detect"
	"auditwatch/detect/state"
	"auditwatch/incident"
	"auditwatch/ingest"
	"auditwatch/ingest/s3sqs"
	"auditwatch/internal/awscfg"
	"auditwatch/internal/lifecycle"
	"auditwatch/pipeline"
	"auditwatch/schema"
	"auditwatch/store"
	"auditwatch/trail"

	"github.com/prometheus/client_golang/prometheus"
)

func init() {
	register("baseline", command{
		summary: "learn first-seen pairs, known networks and rate baselines from the stored events or archived trails into the detector state, so run starts without a learning period (--config FILE [--since 30d] [--state DIR] --from-store | PATH|s3://bucket/prefix...)",
		run:     runBaseline,
	})
}

// baselineMain replays history into the detector state `run` opens (or
// --state DIR, the store `replay --state` reads): the events already in
// the storage: section's store (--from-store: embedded chDB or a
// ClickHouse server) or archived trails (files, directories, .gz, and
// s3://bucket/prefix as CloudTrail delivers it). Nothing is raised; the store remembers where
// the history ends, so principals, pairs and networks seen in it count as
// learned from then on, without a learning period of their own.
func baselineMain(ctx context.Context, j *lifecycle.Job, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fl := newFlagSet("baseline", stderr, "[--config FILE] [--since 30d] [--state DIR] --from-store | PATH|s3://bucket/prefix...", commands["baseline"].summary)
	configPath := configFlag(fl)
	since := fl.String("since", "30d", "learn events this recent (Go duration or days, e.g. 30d)")
	stateDir := fl.String("state", "", "a replay state directory instead of run's detector state under state.dir")
	fromStore := fl.Bool("from-store", false, "learn from the events in the config's storage: section (stop run first when it holds the embedded store)")
	var s3f s3Flags
	s3f.register(fl)
	opts := ingest.DefaultOptions()
	fl.StringVar(&opts.Format, "format", opts.Format, "input format: auto, cloudtrail or vault")
	if code, done := parseFlags(fl, args); done {
		return code
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, "auditwatch baseline: "+format+"\n", a...)
		return code
	}
	if fl.NArg() == 0 && !*fromStore {
		return fail(2, "no input: give --from-store or the archived trails (files, directories, .gz, s3://bucket/prefix) to learn from")
	}
	if fl.NArg() > 0 && *fromStore {
		return fail(2, "give either --from-store or archived trails, not both (each is learned in event-time order)")
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
		// the set-up opens as the job's components, stopped in reverse
		// order when the command ends or a later one fails
		st, err := jobOpen(j, "detector state", func(context.Context) (*state.Store, error) {
			return state.Open(state.Config{Dir: *stateDir})
		}, (*state.Store).Close)
		if err != nil {
			return fail(1, "%v", err)
		}
		eng, err := jobOpen(j, "detectors", func(context.Context) (*detect.Engine, error) {
			return detect.New(dcfg, st, slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})), nil)
		}, (*detect.Engine).Close)
		if err != nil {
			return fail(2, "%v", err)
		}
		det, where = eng, *stateDir
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
		det, err = jobOpen(j, "detector state", func(context.Context) (pipeline.Detector, error) {
			return d.detectorOpenerFor("embedded", dcfg)(0, false)
		}, pipeline.Detector.Close)
		if err != nil {
			return fail(1, "open run's detector state (is run still holding it?): %v", err)
		}
		where = d.stateDir("detect", "embedded", "0")
	}
	// run's source positions stay as they were.
	meta, err := det.Meta()
	if err != nil {
		return fail(1, "%v", err)
	}
	var learned, older int64
	var first, last time.Time
	learn := func(ev schema.Event) error {
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
	}
	var total ingest.Stats
	var inputs []string
	removeDownloads := func() {}
	if *fromStore {
		err = baselineFromStore(ctx, j, *configPath, cutoff, now, learn)
		inputs = []string{"store"}
	} else {
		var paths []string
		// downloaded archives: removed when the command ends
		paths, err = jobOpen(j, "archive downloads", func(ctx context.Context) ([]string, error) {
			paths, cleanup, err := fetchS3Inputs(ctx, fl.Args(), s3f)
			if err != nil {
				cleanup()
				return nil, err
			}
			removeDownloads = cleanup
			return paths, nil
		}, func([]string) error { removeDownloads(); return nil })
		if err == nil {
			inputs, err = ingest.Inputs(paths)
		}
		if err == nil {
			err = replayMerged(ctx, inputs, opts, map[string]replayPos{}, stderr, &total, func(_ string, ev *schema.Event) error {
				return learn(*ev)
			})
		}
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
		return fail(1, "no event within --since %s in %d input(s) (%d older): nothing learned", *since, len(inputs), older)
	}
	fmt.Fprintf(stdout, "baseline: learned %d events from %s to %s into %s (%d outside the last %s skipped)\n",
		learned, first.Format(time.RFC3339Nano), last.Format(time.RFC3339Nano), where, older, *since)
	return 0
}

// baselineFromStore hands learn the events stored between from and to
// (the storage: section of the config at configPath), in time order.
func baselineFromStore(ctx context.Context, j *lifecycle.Job, configPath string, from, to time.Time, learn func(schema.Event) error) error {
	sf := storageFlags{config: configPath}
	scfg, err := sf.load()
	if err != nil {
		return err
	}
	if scfg.Backend == store.BackendOff {
		return errors.New("--from-store: the config has no storage: section")
	}
	st, err := jobOpen(j, "store", func(ctx context.Context) (store.Store, error) {
		return store.OpenReadOnly(ctx, scfg, nil)
	}, store.Store.Close)
	if err != nil {
		return fmt.Errorf("--from-store (is run still holding the embedded store?): %w", err)
	}
	sc, ok := st.(store.EventScanner)
	if !ok {
		return fmt.Errorf("--from-store: the %s backend cannot read events back", scfg.Backend)
	}
	return sc.ScanEvents(ctx, from, to, func(evs []schema.Event) error {
		for i := range evs {
			if err := learn(evs[i]); err != nil {
				return err
			}
		}
		return nil
	})
}

// s3Flags select the S3 client of s3:// inputs.
type s3Flags struct {
	region, endpoint string
	pathStyle        bool
}

func (f *s3Flags) register(fl *flag.FlagSet) {
	fl.StringVar(&f.region, "region", os.Getenv("AWS_REGION"), "AWS region of s3:// inputs")
	fl.StringVar(&f.endpoint, "s3-endpoint", "", "S3 endpoint override (s3:// inputs)")
	fl.BoolVar(&f.pathStyle, "path-style", false, "S3 path-style addressing (s3:// inputs)")
}

// maxArchiveObject bounds one downloaded archive object.
const maxArchiveObject = 1 << 30

// fetchS3Inputs downloads the CloudTrail log objects under each
// s3://bucket/prefix input (digests skipped) into a temporary directory
// that replaces it in the returned paths; cleanup removes it.
func fetchS3Inputs(ctx context.Context, inputs []string, f s3Flags) ([]string, func(), error) {
	cleanup := func() {}
	var out []string
	var cl *s3.Client
	for _, in := range inputs {
		rest, ok := strings.CutPrefix(in, "s3://")
		if !ok {
			out = append(out, in)
			continue
		}
		bucket, prefix, _ := strings.Cut(rest, "/")
		if bucket == "" {
			return nil, cleanup, fmt.Errorf("%q: no bucket", in)
		}
		if cl == nil {
			ac := awscfg.Config{Region: f.region}
			if err := ac.Validate(); err != nil {
				return nil, cleanup, fmt.Errorf("s3 inputs: %w (set --region or AWS_REGION)", err)
			}
			acfg, err := ac.Load(ctx)
			if err != nil {
				return nil, cleanup, err
			}
			cl = s3.NewFromConfig(acfg, func(o *s3.Options) {
				o.UsePathStyle = f.pathStyle
				// CloudTrail objects carry no checksum: not worth a log line each.
				o.DisableLogOutputChecksumValidationSkipped = true
				if f.endpoint != "" {
					o.BaseEndpoint = aws.String(f.endpoint)
				}
			})
		}
		dir, err := os.MkdirTemp("", "auditwatch-baseline-")
		if err != nil {
			return nil, cleanup, err
		}
		prev := cleanup
		cleanup = func() { prev(); os.RemoveAll(dir) }
		st := trail.S3Store{API: cl, Bucket: bucket, Prefix: prefix}
		keys, err := st.List(ctx)
		if err != nil {
			return nil, cleanup, err
		}
		n := 0
		for _, k := range keys {
			if s3sqs.IsDigest(k) || !(strings.HasSuffix(k, ".json.gz") || strings.HasSuffix(k, ".json")) {
				continue
			}
			if err := download(ctx, st, k, filepath.Join(dir, fmt.Sprintf("%07d-%s", n, path.Base(k)))); err != nil {
				return nil, cleanup, err
			}
			n++
		}
		if n == 0 {
			return nil, cleanup, fmt.Errorf("%s: no CloudTrail log objects", in)
		}
		out = append(out, dir)
	}
	return out, cleanup, nil
}

func download(ctx context.Context, st trail.S3Store, key, to string) error {
	body, _, err := st.Open(ctx, key)
	if err != nil {
		return err
	}
	defer body.Close()
	f, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	n, err := io.Copy(f, io.LimitReader(body, maxArchiveObject+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n > maxArchiveObject {
		err = fmt.Errorf("larger than %d bytes", maxArchiveObject)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", st.Display(key), err)
	}
	return nil
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
