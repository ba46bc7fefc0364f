package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"auditwatch/detect"
	"auditwatch/detect/state"
	"auditwatch/incident"
	"auditwatch/ingest"
	"auditwatch/internal/configcheck"
	"auditwatch/internal/escape"
	"auditwatch/internal/lifecycle"
	"auditwatch/schema"
	"auditwatch/sigma"
)

func init() {
	register("replay", command{
		summary: "run the detectors over audit log files in event-time order",
		run:     runReplay,
	})
}

// loadReplayConfigRules finds the root configuration (--config, then
// $AUDITWATCH_CONFIG, ./auditwatch.yaml, /etc/auditwatch/config.yaml),
// loads it as every command does (every section validated) and returns
// its detectors and rules sections. No config file anywhere: the defaults.
func loadReplayConfigRules(flagPath string) (detect.Config, sigma.Config, error) {
	path, _, err := discoverConfig(flagPath)
	if errors.Is(err, configcheck.ErrNoConfig) {
		c, err := detect.DecodeConfig(nil)
		if err != nil {
			return c, sigma.Config{}, err
		}
		rc, err := sigma.DecodeConfig(nil)
		return c, rc, err
	}
	if err != nil {
		return detect.Config{}, sigma.Config{}, err
	}
	l, err := configcheck.Load(path)
	if err != nil {
		return detect.Config{}, sigma.Config{}, err
	}
	rc, err := sigma.DecodeConfig(&l.Rules)
	if err != nil {
		return l.Detectors, rc, fmt.Errorf("config %s: %w", path, err)
	}
	return l.Detectors, rc, nil
}

// pathList is a repeatable flag of paths (also comma-separated).
type pathList []string

func (p *pathList) String() string { return strings.Join(*p, ",") }

func (p *pathList) Set(v string) error {
	for _, x := range strings.Split(v, ",") {
		if x = strings.TrimSpace(x); x != "" {
			*p = append(*p, x)
		}
	}
	return nil
}

// replayEngine is what replay drives: the detector engine, or the engine
// with Sigma rules beside it.
type replayEngine interface {
	Process(ev schema.Event) []schema.Finding
	Checkpoint(meta map[string][]byte) error
	Flush() []schema.Finding
}

// replayPos is the per-input progress stored in checkpoint meta.
type replayPos struct {
	Events int64 `json:"events"`
	Done   bool  `json:"done"`
}

func replayMain(ctx context.Context, j *lifecycle.Job, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fl := newFlagSet("replay", stderr, "[flags] PATH...", commands["replay"].summary)
	configPath := fl.String("config", "", "auditwatch config file (its detectors: section is used)")
	stateDir := fl.String("state", "", "state directory (kept across runs); default a temporary store")
	learnUntil := fl.String("learn-until", "", "RFC3339 time: events before it build baselines and raise nothing")
	every := fl.Int("checkpoint-every", 100_000, "checkpoint state every N events")
	opts := ingest.DefaultOptions()
	fl.StringVar(&opts.Format, "format", opts.Format, "input format: auto, cloudtrail or vault")
	var rulePaths pathList
	fl.Var(&rulePaths, "rules", "Sigma rule file or folder (repeatable; adds to the config's rules.paths)")
	fl.Usage = func() {
		fmt.Fprintln(stderr, "usage: auditwatch replay [--config FILE] [--rules PATH]... [--state DIR] [--learn-until RFC3339] PATH...")
		fmt.Fprintln(stderr, "Normalizes the inputs, runs the detectors (inputs merged in event-time order) and writes findings as JSON lines on stdout.")
		fmt.Fprintln(stderr, "With --rules (or the config's rules: section) Sigma rules run beside the detectors over each event's original record.")
		fmt.Fprintln(stderr, "With --state the detector state, the per-source watermarks and each input's progress are checkpointed there:")
		fmt.Fprintln(stderr, "a later run continues (inputs already replayed are skipped; an interrupted input resumes after its last")
		fmt.Fprintln(stderr, "checkpoint, and findings re-emitted after it carry the ids already emitted).")
		fmt.Fprintln(stderr, "Exit status: 0 done, 1 failed, 2 bad usage or config, or some records rejected (named on stderr).")
		fl.PrintDefaults()
	}
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	paths := fl.Args()
	if len(paths) == 0 {
		fl.Usage()
		return 2
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, "replay: %s\n", escape.String(escape.Terminal, fmt.Sprintf(format, a...)))
		return code
	}
	dcfg, rcfg, err := loadReplayConfigRules(*configPath)
	if err != nil {
		return fail(2, "%v", err)
	}
	rcfg.Paths = append(rcfg.Paths, rulePaths...)
	var rules *sigma.Set
	if rcfg.Enabled() {
		rules, err = sigma.Load(rcfg.Paths, rcfg.Options())
		if err != nil {
			return fail(2, "%v", err)
		}
		for _, p := range rules.Problems {
			fmt.Fprintf(stderr, "replay: rule skipped: %s\n", escape.String(escape.Terminal, p.Error()))
		}
		opts.KeepRaw = true
		// only where a rule may read it: the rest would be garbage (the
		// inputs are read by one goroutine, readMerged's)
		opts.WantRaw = rules.Wanter()
	}
	if *learnUntil != "" {
		t, err := time.Parse(time.RFC3339Nano, *learnUntil)
		if err != nil {
			return fail(2, "--learn-until %q: want an RFC3339 time", *learnUntil)
		}
		dcfg.LearnUntil = t.UTC()
	}
	if *every < 1 {
		return fail(2, "--checkpoint-every must be at least 1")
	}
	if err := opts.Validate(); err != nil {
		return fail(2, "%v", err)
	}
	opts.Stdin = stdin

	setGoMemoryLimit(dcfg)
	// The set-up opens as the job's components, stopped in reverse order
	// when the replay ends or a later one fails. Without --state: a
	// temporary store, removed at exit.
	st, err := jobOpen(j, "detector state", func(context.Context) (*state.Store, error) {
		return state.Open(state.Config{Dir: *stateDir})
	}, (*state.Store).Close)
	if err != nil {
		return fail(1, "%v", err)
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	eng, err := jobOpen(j, "detectors", func(context.Context) (*detect.Engine, error) {
		return detect.New(dcfg, st, logger, nil)
	}, (*detect.Engine).Close)
	if err != nil {
		return fail(2, "%v", err)
	}
	var run replayEngine = eng
	if rules != nil {
		sd, err := sigma.NewDetector(eng, rules)
		if err != nil {
			return fail(1, "%v", err)
		}
		sd.Configure(rcfg)
		run = sd
	}
	enrich, err := jobOpen(j, "enrichment", func(context.Context) (*enrichment, error) {
		return replayEnrichment(*configPath, *stateDir, logger)
	}, (*enrichment).Close)
	if err != nil {
		return fail(2, "%v", err)
	}
	meta, err := eng.Meta()
	if err != nil {
		return fail(1, "%v", err)
	}
	// Findings join incidents before they are written (the same stage
	// run and detect use), state kept in the checkpoint.
	var corr *incident.Correlator
	if dcfg.Incidents.On() {
		if corr, err = incident.New(incidentConfig(dcfg)); err == nil {
			err = corr.RestoreState(meta[incident.MetaKey])
		}
		if err != nil {
			return fail(1, "%v", err)
		}
	}
	pos := map[string]replayPos{}
	for k, v := range meta {
		name, ok := strings.CutPrefix(k, "replay/")
		if !ok {
			continue
		}
		var p replayPos
		if err := json.Unmarshal(v, &p); err != nil {
			return fail(1, "state meta %q unreadable: %v", k, err)
		}
		pos[name] = p
	}

	out := bufio.NewWriterSize(stdout, 256<<10)
	var nFindings, sinceCkpt int64
	var buf []byte
	emit := func(fs []schema.Finding) error {
		if corr != nil {
			corr.Assign(fs)
		}
		for i := range fs {
			b, err := json.Marshal(&fs[i])
			if err != nil {
				return fmt.Errorf("encode finding: %w", err)
			}
			buf = append(append(buf[:0], b...), '\n')
			if _, err := out.Write(buf); err != nil {
				return fmt.Errorf("write output: %w", err)
			}
			nFindings++
		}
		return nil
	}
	// Events processed of the current input, not yet added to pos (a map
	// update per event cost more than the counting).
	var curName string
	var curEvents int64
	flushCount := func() {
		if curEvents > 0 {
			p := pos[curName]
			p.Events += curEvents
			pos[curName] = p
			curEvents = 0
		}
	}
	checkpoint := func() error {
		flushCount()
		// Findings are out before the state that no longer raises them is saved.
		if err := out.Flush(); err != nil {
			return fmt.Errorf("write output: %w", err)
		}
		m := make(map[string][]byte, len(pos))
		for name, p := range pos {
			b, _ := json.Marshal(p)
			m["replay/"+name] = b
		}
		if corr != nil {
			b, err := corr.MarshalState()
			if err != nil {
				return err
			}
			m[incident.MetaKey] = b
		}
		sinceCkpt = 0
		// What enrichment keeps (links, last places) is durable before
		// the positions past the events that wrote it.
		if err := enrich.Flush(); err != nil {
			return err
		}
		return run.Checkpoint(m)
	}
	var total ingest.Stats
	inputs, err := ingest.Inputs(paths)
	if err == nil {
		err = replayMerged(ctx, inputs, opts, pos, stderr, &total, func(name string, ev *schema.Event) error {
			if err := emit(enrich.Enrich(ctx, ev, nil)); err != nil {
				return err
			}
			if err := emit(run.Process(*ev)); err != nil {
				return err
			}
			if name != curName {
				flushCount()
				curName = name
			}
			curEvents++
			sinceCkpt++
			if sinceCkpt >= int64(*every) || eng.NeedCheckpoint() {
				return checkpoint()
			}
			return nil
		})
	}
	if err == nil {
		err = emit(run.Flush())
	}
	if err == nil {
		err = checkpoint()
	}
	if ferr := out.Flush(); ferr != nil && err == nil {
		err = fmt.Errorf("write output: %w", ferr)
	}
	s := eng.Stats()
	fmt.Fprintf(stderr, "replay: %d records, %d events (%d late), %d rejected, %d findings, %d state evictions\n",
		total.Records, s.Events, s.Late, total.Rejected, nFindings, s.Evictions)
	if err != nil {
		return fail(1, "%v", err)
	}
	if total.Rejected > 0 {
		// Like normalize: every good record was used; say some were not.
		return 2
	}
	return 0
}

// replaySource is one input of a replay: its reader, with the events an
// earlier run already replayed skipped.
type replaySource struct {
	r     *ingest.Reader
	c     io.Closer
	skip  int64
	total *ingest.Stats
}

func (s *replaySource) Next() (schema.Event, error) {
	for {
		ev, err := s.r.Next()
		if err != nil || s.skip == 0 {
			return ev, err
		}
		s.skip--
	}
}

func (s *replaySource) Close() error {
	*s.total = s.total.Add(s.r.Stats())
	return s.c.Close()
}

// replayMerged reads the inputs side by side and hands their events to
// process in event-time order (a k-way merge: several files of one time
// span, e.g. a Vault audit log and a CloudTrail export, interleave instead
// of the second arriving wholly late). Inputs a previous run finished are
// skipped; an interrupted input resumes after the events it already gave.
// Each input is marked done in pos once all its events were processed.
func replayMerged(ctx context.Context, inputs []string, opts ingest.Options, pos map[string]replayPos, stderr io.Writer,
	total *ingest.Stats, process func(name string, ev *schema.Event) error) error {
	// Parsing runs on its own goroutine, handing events over in batches:
	// with a second core, detection overlaps parsing instead of adding to
	// it. The reader works on its own copy of the positions; an input's
	// end travels in the batch stream, so it is marked done only after its
	// last event was processed.
	skip := make(map[string]replayPos, len(pos))
	for k, v := range pos {
		skip[k] = v
	}
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan []mergedItem, 4)
	free := make(chan []mergedItem, 6)
	var readErr error
	go func() {
		defer close(batches)
		readErr = readMerged(ctx, inputs, opts, skip, stderr, total, batches, free)
	}()
	var procErr error
	for b := range batches {
		for i := range b {
			if procErr != nil {
				break
			}
			if err := parent.Err(); err != nil {
				procErr = err
				cancel()
				break
			}
			it := &b[i]
			if it.done {
				p := pos[it.name]
				p.Done = true
				pos[it.name] = p
				continue
			}
			// process may change the event (enrichment): it is the
			// batch's copy, dropped after
			if err := process(it.name, &it.ev); err != nil {
				procErr = err
				cancel()
			}
		}
		clear(b)
		select {
		case free <- b[:0]:
		default:
		}
	}
	if procErr != nil {
		return procErr
	}
	return readErr
}

// mergedItem is one event of an input, or the mark that the input ended.
type mergedItem struct {
	name string
	ev   schema.Event
	done bool
}

const mergedBatch = 512

// readMerged merges the inputs by event time into batches of mergedItem.
func readMerged(ctx context.Context, inputs []string, opts ingest.Options, pos map[string]replayPos, stderr io.Writer,
	total *ingest.Stats, out chan<- []mergedItem, free <-chan []mergedItem) error {
	recErrs := newCappedWriter(stderr, "replay", maxRecordErrors)
	defer recErrs.Summary()
	var todo []string
	for _, name := range inputs {
		if pos[name].Done {
			fmt.Fprintf(stderr, "replay: %s already replayed into this state; skipped\n", escape.String(escape.Terminal, name))
			continue
		}
		todo = append(todo, name)
	}
	m := ingest.NewMerger(len(todo), 0, func(i int) (ingest.Source, error) {
		r, c, err := ingest.OpenInput(todo[i], opts)
		if err != nil {
			return nil, err
		}
		return &replaySource{r: r, c: c, skip: pos[todo[i]].Events, total: total}, nil
	})
	batch := make([]mergedItem, 0, mergedBatch)
	send := func() error {
		if len(batch) == 0 {
			return nil
		}
		select {
		case out <- batch:
		case <-ctx.Done():
			return ctx.Err()
		}
		select {
		case batch = <-free:
		default:
			batch = make([]mergedItem, 0, mergedBatch)
		}
		return nil
	}
	var ended []int
	for {
		if len(batch)%64 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		// inputs whose last event was handed over are done
		for _, i := range ended {
			batch = append(batch, mergedItem{name: todo[i], done: true})
		}
		// the event is read straight into its place in the batch (an
		// event is large; copies of it were a tenth of replay's cost)
		if len(batch) < cap(batch) {
			batch = batch[:len(batch)+1]
		} else {
			batch = append(batch, mergedItem{})
		}
		it := &batch[len(batch)-1]
		i, err := m.NextInto(&it.ev)
		ended = append(ended[:0], m.Ended()...)
		if err != nil {
			*it = mergedItem{}
			batch = batch[:len(batch)-1]
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			var re *ingest.RecordError
			if errors.As(err, &re) {
				fmt.Fprintf(recErrs, "replay: %s\n", escape.String(escape.Terminal, err.Error()))
				continue
			}
			if serr := send(); serr != nil {
				return serr
			}
			return err
		}
		it.name, it.done = todo[i], false
		if len(batch) >= mergedBatch {
			if err := send(); err != nil {
				return err
			}
		}
	}
	for _, i := range ended {
		batch = append(batch, mergedItem{name: todo[i], done: true})
	}
	return send()
}
