package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"auditwatch/config/duration"
	"auditwatch/internal/configcheck"
	"auditwatch/internal/escape"
	"auditwatch/internal/lifecycle"
	"auditwatch/schema"
	"auditwatch/sigma"
	"auditwatch/store"
)

func init() {
	register("backtest", command{
		summary: "replay stored audit logs through a new config and an old one and print the difference in findings",
		run:     runBacktest,
	})
}

// backtestGroup is the difference for one rule or detector.
type backtestGroup struct {
	// Key is the Sigma rule title, or the detector name.
	Key      string           `json:"key"`
	New      int              `json:"new"`
	Gone     int              `json:"gone"`
	Changed  int              `json:"changed_severity"`
	Examples []backtestSample `json:"examples,omitempty"`
}

type backtestSample struct {
	Change   string `json:"change"` // new, gone, changed_severity
	ID       string `json:"id"`
	Time     string `json:"time"`
	Severity string `json:"severity"`
	Was      string `json:"was_severity,omitempty"`
	Summary  string `json:"summary"`
}

type backtestReport struct {
	Since    string          `json:"since,omitempty"`
	Old      int             `json:"old_findings"`
	New      int             `json:"new_findings"`
	Unchange int             `json:"unchanged"`
	Groups   []backtestGroup `json:"groups"`
}

// maxExamples bounds the examples per rule or detector.
const maxExamples = 3

func backtestMain(ctx context.Context, j *lifecycle.Job, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fl := newFlagSet("backtest", stderr, "--config NEW.yaml [--against CURRENT.yaml] [--since 7d|RFC3339] [--history 7d] [--format text|json] [PATH...]",
		"Replays audit logs through both configurations — detectors, allowlists, rules: and the alerts: section's\n"+
			"silences — each from empty state, and prints per rule and detector the findings the new config adds,\n"+
			"those it no longer raises and those whose severity changed, with examples. The logs are the files at\n"+
			"PATH (files, directories, .gz), or without PATH the original records of the events stored in the\n"+
			"storage: section of --config (else of --against) from --since (default 7d) minus --history until now.\n"+
			"Without --against the comparison is with the defaults (built-in detectors, no rules). Findings before\n"+
			"--since are left out of the comparison (the history before it still builds baselines); a finding a\n"+
			"silence of its config mutes at its time counts as not raised. Exit 0 with or without differences;\n"+
			"1 on failure; 2 on bad usage.")
	newCfg := fl.String("config", "", "the new configuration (required)")
	against := fl.String("against", "", "the current configuration (default: the defaults, no rules)")
	since := fl.String("since", "", "compare findings from this time: a duration back from now (7d, 36h) or RFC3339")
	format := fl.String("format", "text", "output: text or json")
	learnUntil := fl.String("learn-until", "", "passed to both replays (RFC3339)")
	history := fl.String("history", "7d", "from the store: also read this much before --since, to build baselines")
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, "backtest: %s\n", escape.String(escape.Terminal, fmt.Sprintf(format, a...)))
		return code
	}
	if *newCfg == "" {
		fl.Usage()
		return 2
	}
	fromStore := fl.NArg() == 0
	if fromStore && *since == "" {
		*since = "7d"
	}
	if *format != "text" && *format != "json" {
		return fail(2, "--format %q: text or json", *format)
	}
	var from time.Time
	if *since != "" {
		if t, err := time.Parse(time.RFC3339Nano, *since); err == nil {
			from = t
		} else if d, err := duration.Parse(*since); err == nil {
			from = time.Now().Add(-d)
		} else {
			return fail(2, "--since %q: want a duration (7d, 36h) or an RFC3339 time", *since)
		}
	}
	inputs := fl.Args()
	if fromStore {
		hist, err := duration.Parse(*history)
		if err != nil || hist < 0 {
			return fail(2, "--history %q: want a duration (7d, 36h)", *history)
		}
		scfg, err := backtestStorage(*newCfg, *against)
		if err != nil {
			return fail(2, "%v", err)
		}
		// The export file is the job's component: removed when the
		// backtest ends, or when a later step fails.
		tmp, err := jobOpen(j, "export file", func(context.Context) (*os.File, error) {
			return os.CreateTemp("", "auditwatch-backtest-*.jsonl")
		}, func(f *os.File) error {
			f.Close()
			return os.Remove(f.Name())
		})
		if err != nil {
			return fail(1, "%v", err)
		}
		// The store is a job of its own: closed once the records are out,
		// before the replays.
		var n, noRaw int
		err = subJob(ctx, "backtest export", func(ctx context.Context, j *lifecycle.Job) error {
			st, err := jobOpen(j, "store", func(ctx context.Context) (store.Store, error) {
				return store.OpenReadOnly(ctx, scfg, nil)
			}, store.Store.Close)
			if err != nil {
				return err
			}
			w := bufio.NewWriterSize(tmp, 1<<20)
			n, noRaw, err = exportStored(ctx, st, scfg.Backend, from.Add(-hist), time.Now(), w)
			if err == nil {
				err = w.Flush()
			}
			return err
		})
		if err != nil {
			return fail(1, "reading stored events: %v", err)
		}
		if noRaw > 0 {
			fmt.Fprintf(stderr, "backtest: %d stored events carry no original record (stored with raw_records: false): left out\n", noRaw)
		}
		if n == 0 {
			return fail(1, "no stored event with its original record since %s in %s", from.Add(-hist).UTC().Format(time.RFC3339), scfg.Database)
		}
		fmt.Fprintf(stderr, "backtest: %d stored events since %s\n", n, from.Add(-hist).UTC().Format(time.RFC3339))
		inputs = []string{tmp.Name()}
	}
	replayWith := func(cfg string) ([]schema.Finding, error) {
		if cfg == "" {
			// the defaults, not whatever config discovery would find
			f, err := jobOpen(j, "defaults config", func(context.Context) (*os.File, error) {
				f, err := os.CreateTemp("", "auditwatch-backtest-*.yaml")
				if err != nil {
					return nil, err
				}
				if _, err := f.WriteString("{}\n"); err != nil {
					f.Close()
					os.Remove(f.Name())
					return nil, err
				}
				return f, f.Close()
			}, func(f *os.File) error { return os.Remove(f.Name()) })
			if err != nil {
				return nil, err
			}
			cfg = f.Name()
		}
		args := []string{"--config", cfg}
		if *learnUntil != "" {
			args = append(args, "--learn-until", *learnUntil)
		}
		args = append(args, inputs...)
		var out, errb bytes.Buffer
		// each replay a job of its own: its detector state closes when
		// it returns
		code := runReplay(ownJob(ctx), args, stdin, &out, &errb)
		if code == 1 || (code == 2 && !strings.Contains(errb.String(), "rejected")) {
			return nil, fmt.Errorf("replay with %s: %s", orDefaults(cfg), strings.TrimSpace(errb.String()))
		}
		fs, err := readFindingLines(out.Bytes())
		if err != nil {
			return nil, err
		}
		return unsilenced(cfg, fs)
	}
	oldF, err := replayWith(*against)
	if err != nil {
		return fail(1, "%v", err)
	}
	newF, err := replayWith(*newCfg)
	if err != nil {
		return fail(1, "%v", err)
	}
	rep := diffFindings(oldF, newF, from)
	if !from.IsZero() {
		rep.Since = from.UTC().Format(time.RFC3339)
	}
	if *format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return fail(1, "%v", err)
		}
		return 0
	}
	writeBacktestText(stdout, rep)
	return 0
}

// backtestStorage is the storage: section of the new config, else of the
// current one.
func backtestStorage(newCfg, against string) (store.Config, error) {
	for _, p := range []string{newCfg, against} {
		if p == "" {
			continue
		}
		l, err := configcheck.Load(p)
		if err != nil {
			return store.Config{}, err
		}
		if l.Storage != nil && l.Storage.Backend != store.BackendOff {
			c := *l.Storage
			c.SetDefaults()
			return c, c.Validate()
		}
	}
	return store.Config{}, fmt.Errorf("no PATH given and neither config has a storage: section to read stored events from")
}

// exportStored writes the original records (the raw column) of the events
// stored from from until to, in event-time order, one a line; an event
// stored twice (the same row) is written once. It reports how many it wrote and how many
// had no record (stored with raw_records: false).
func exportStored(ctx context.Context, st store.Store, backend string, from, to time.Time, w io.Writer) (n, noRaw int, err error) {
	db, ok := st.(*store.DB)
	if !ok {
		return 0, 0, fmt.Errorf("storage backend %q keeps no events", backend)
	}
	// a row a retried insert wrote twice is read once (store.ScanRecords)
	err = db.ScanRecords(ctx, from, to, func(raws []string, missing int) error {
		noRaw += missing
		for _, raw := range raws {
			if _, err := io.WriteString(w, strings.TrimRight(raw, "\n")+"\n"); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return n, noRaw, err
	}
	return n, noRaw, nil
}

// unsilenced drops the findings a silence of the config's alerts: section
// mutes at the finding's time (they would not have been delivered).
func unsilenced(cfg string, fs []schema.Finding) ([]schema.Finding, error) {
	l, err := configcheck.Load(cfg)
	if err != nil {
		return nil, err
	}
	if l.Alerts == nil || len(l.Alerts.Silences) == 0 {
		return fs, nil
	}
	out := fs[:0]
	for _, f := range fs {
		if !l.Alerts.Silenced(f, f.Time) {
			out = append(out, f)
		}
	}
	return out, nil
}

func orDefaults(cfg string) string {
	if cfg == "" {
		return "the defaults"
	}
	return cfg
}

func readFindingLines(b []byte) ([]schema.Finding, error) {
	var out []schema.Finding
	for _, l := range bytes.Split(b, []byte("\n")) {
		if len(bytes.TrimSpace(l)) == 0 {
			continue
		}
		var f schema.Finding
		if err := json.Unmarshal(l, &f); err != nil {
			return nil, fmt.Errorf("replay output: %w", err)
		}
		out = append(out, f)
	}
	return out, nil
}

// findingKey names what raised a finding: the Sigma rule, else the
// detector.
func findingKey(f *schema.Finding) string {
	if f.Detector == schema.DetectorSigma {
		if t := f.Attributes[sigma.AttrRuleTitle]; t != "" {
			return "sigma: " + t
		}
	}
	return f.Detector
}

// latest keeps the latest revision of each finding id at or after from.
func latest(fs []schema.Finding, from time.Time) map[string]schema.Finding {
	out := map[string]schema.Finding{}
	for _, f := range fs {
		if !from.IsZero() && f.Time.Before(from) {
			continue
		}
		if o, ok := out[f.ID]; !ok || f.Revision >= o.Revision {
			out[f.ID] = f
		}
	}
	return out
}

// diffFindings compares the findings of two replays by finding id (ids
// derive from the evidence, so the same finding has the same id in both).
func diffFindings(oldF, newF []schema.Finding, from time.Time) backtestReport {
	o, n := latest(oldF, from), latest(newF, from)
	rep := backtestReport{Old: len(o), New: len(n)}
	groups := map[string]*backtestGroup{}
	group := func(f *schema.Finding) *backtestGroup {
		k := findingKey(f)
		g := groups[k]
		if g == nil {
			g = &backtestGroup{Key: k}
			groups[k] = g
		}
		return g
	}
	sample := func(g *backtestGroup, change string, f *schema.Finding, was schema.Severity) {
		if len(g.Examples) >= maxExamples*3 {
			return
		}
		k := 0
		for _, e := range g.Examples {
			if e.Change == change {
				k++
			}
		}
		if k >= maxExamples {
			return
		}
		g.Examples = append(g.Examples, backtestSample{Change: change, ID: f.ID, Time: f.Time.UTC().Format(time.RFC3339),
			Severity: string(f.Severity), Was: string(was), Summary: f.Summary})
	}
	for _, id := range sortedFindingIDs(n) {
		f := n[id]
		of, ok := o[id]
		switch {
		case !ok:
			g := group(&f)
			g.New++
			sample(g, "new", &f, "")
		case of.Severity != f.Severity:
			g := group(&f)
			g.Changed++
			sample(g, "changed_severity", &f, of.Severity)
		default:
			rep.Unchange++
		}
	}
	for _, id := range sortedFindingIDs(o) {
		if _, ok := n[id]; ok {
			continue
		}
		f := o[id]
		g := group(&f)
		g.Gone++
		sample(g, "gone", &f, "")
	}
	for _, g := range groups {
		rep.Groups = append(rep.Groups, *g)
	}
	sort.Slice(rep.Groups, func(i, j int) bool { return rep.Groups[i].Key < rep.Groups[j].Key })
	return rep
}

func sortedFindingIDs(m map[string]schema.Finding) []string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool {
		a, b := m[ids[i]], m[ids[j]]
		if !a.Time.Equal(b.Time) {
			return a.Time.Before(b.Time)
		}
		return ids[i] < ids[j]
	})
	return ids
}

func writeBacktestText(w io.Writer, rep backtestReport) {
	t := func(s string) string { return escape.String(escape.Terminal, s) }
	if rep.Since != "" {
		fmt.Fprintf(w, "findings since %s\n", rep.Since)
	}
	fmt.Fprintf(w, "current: %d findings, new config: %d (%d unchanged)\n", rep.Old, rep.New, rep.Unchange)
	if len(rep.Groups) == 0 {
		fmt.Fprintln(w, "no difference")
		return
	}
	fmt.Fprintf(w, "\n%-60s %6s %6s %8s\n", "rule or detector", "new", "gone", "severity")
	for _, g := range rep.Groups {
		fmt.Fprintf(w, "%-60s %6d %6d %8d\n", t(clipText(g.Key, 60)), g.New, g.Gone, g.Changed)
	}
	for _, g := range rep.Groups {
		fmt.Fprintf(w, "\n%s\n", t(g.Key))
		for _, e := range g.Examples {
			sev := e.Severity
			if e.Was != "" {
				sev = e.Was + "→" + e.Severity
			}
			fmt.Fprintf(w, "  %-16s %s %-15s %s\n", e.Change, e.Time, sev, t(clipText(e.Summary, 160)))
		}
	}
}

func clipText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "…"
}
