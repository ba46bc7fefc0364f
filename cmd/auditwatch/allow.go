package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/user"
	"path/filepath"
	"time"

	"auditwatch/config/duration"
	"auditwatch/detect/allow"
	"auditwatch/incident"
	"auditwatch/internal/configcheck"
	"auditwatch/pipeline"
	"auditwatch/schema"
	"auditwatch/store"
)

func init() {
	register("allow", command{
		summary: "turn a stored finding into an expiring allow entry: the next identical finding does not alert (--finding ID [--expires 30d] [--comment TEXT]); `query allows` lists them",
		run:     runAllow,
	})
}

// runAllow is a one-shot command (see oneShot).
var runAllow = asJob("allow", allowMain)

// allowPath is the entries file under a state directory.
func allowPath(stateDir string) string { return filepath.Join(stateDir, "allow", allow.FileName) }

// allowConfig loads the root config the storage flags name and returns
// its state directory (the --state-dir flag wins) and the detectors'
// network sizes.
func allowConfig(sf *storageFlags, stateDir string) (string, allow.Prefixes, error) {
	p := allow.Prefixes{IPv4: 24, IPv6: 64}
	path, _, err := discoverConfig(sf.config)
	switch {
	case err == nil:
		l, err := configcheck.Load(path)
		if err != nil {
			return "", p, err
		}
		if stateDir == "" {
			stateDir = l.Config.State.Dir
		}
		p = allow.Prefixes{IPv4: l.Detectors.UnexpectedIP.IPv4Prefix, IPv6: l.Detectors.UnexpectedIP.IPv6Prefix}
	case !errors.Is(err, configcheck.ErrNoConfig):
		return "", p, err
	}
	if stateDir == "" {
		return "", p, errors.New("no state directory: give --config (its state.dir) or --state-dir")
	}
	return stateDir, p, nil
}

// runAllow looks the finding up in the store (through run's query
// endpoint while run holds the embedded store) and appends the allow entry
// made from it to <state.dir>/allow/entries.jsonl, which run and detect
// read while they run.
func allowMain(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fl := newFlagSet("allow", stderr, "--finding ID [--expires 30d] [--comment TEXT] [--config FILE]", commands["allow"].summary)
	var sf storageFlags
	sf.register(fl)
	id := fl.String("finding", "", "the finding's id (any revision's) or dedupe key, as alerts and `query findings` show it")
	expires := fl.String("expires", "30d", "how long the entry allows (90m, 24h, 30d); never: no expiry")
	comment := fl.String("comment", "", "why the finding is benign (kept with the entry)")
	stateDir := fl.String("state-dir", "", "override state.dir (where run keeps its state)")
	since := fl.String("since", "90d", "look the finding up among findings this recent")
	if code, done := parseFlags(fl, args); done {
		return code
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, "auditwatch allow: "+format+"\n", a...)
		return code
	}
	if *id == "" {
		return fail(2, "--finding is required")
	}
	if fl.NArg() > 0 {
		return fail(2, "unexpected argument %q", fl.Arg(0))
	}
	var ttl time.Duration
	if *expires != "never" {
		d, err := duration.Parse(*expires)
		if err != nil || d <= 0 {
			return fail(2, "--expires %q: want a positive duration such as 30d or 12h, or never", *expires)
		}
		ttl = d
	}
	now := time.Now()
	from, err := parseSince(*since, now)
	if err != nil {
		return fail(2, "%v", err)
	}
	dir, prefixes, err := allowConfig(&sf, *stateDir)
	if err != nil {
		return fail(2, "%v", err)
	}
	scfg, err := sf.load()
	if err != nil {
		return fail(2, "%v", err)
	}
	if scfg.Backend == store.BackendOff {
		return fail(2, "no storage: the finding is looked up in the store (storage: section)")
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	f, err := lookupFinding(ctx, scfg, logger, *id, from)
	if err != nil {
		return fail(1, "%v", err)
	}
	e, err := allow.FromFinding(f, prefixes, now, ttl)
	if err != nil {
		return fail(1, "%v", err)
	}
	e.Comment = *comment
	if u, err := user.Current(); err == nil {
		e.By = u.Username
	}
	path := allowPath(dir)
	if err := allow.Append(path, e); err != nil {
		return fail(1, "%v", err)
	}
	exp := "never"
	if !e.Expires.IsZero() {
		exp = e.Expires.Format(time.RFC3339)
	}
	fmt.Fprintf(stdout, "allow %s: %s findings of principal %q", e.ID, e.Detector, e.Principal)
	if e.Network != "" {
		fmt.Fprintf(stdout, " from %s", e.Network)
	}
	if e.Resource != "" {
		fmt.Fprintf(stdout, " on %q", e.Resource)
	}
	fmt.Fprintf(stdout, " are allowed until %s (%s)\n", exp, path)
	return 0
}

// lookupFinding reads the finding with id (a revision's id or the dedupe
// key: its first revision) from the store's finding query.
func lookupFinding(ctx context.Context, cfg store.Config, logger *slog.Logger, id string, since time.Time) (schema.Finding, error) {
	q, err := store.OpenQuery(ctx, cfg, logger)
	if err != nil {
		return schema.Finding{}, err
	}
	defer q.Close()
	res, err := q.Query(ctx, "finding", store.QueryArgs{ID: id, Since: since, Limit: 10_000})
	if err != nil {
		return schema.Finding{}, err
	}
	col := map[string]int{}
	for i, c := range res.Columns {
		col[c] = i
	}
	for _, c := range []string{"id", "detector", "principal", "source_ip", "resource", "dedupe_key"} {
		if _, ok := col[c]; !ok {
			return schema.Finding{}, fmt.Errorf("finding query: no column %q", c)
		}
	}
	str := func(row []any, c string) string { s, _ := row[col[c]].(string); return s }
	var pick []any
	for _, row := range res.Rows {
		if str(row, "id") == id {
			pick = row
			break
		}
		if pick == nil && str(row, "dedupe_key") == id {
			pick = row // rows come in revision order: the first
		}
	}
	if pick == nil {
		return schema.Finding{}, fmt.Errorf("finding %q: not in the store since %s", id, since.UTC().Format(time.RFC3339))
	}
	return schema.Finding{ID: str(pick, "id"), Detector: str(pick, "detector"), Principal: str(pick, "principal"),
		SourceIP: str(pick, "source_ip"), Resource: str(pick, "resource"), DedupeKey: str(pick, "dedupe_key")}, nil
}

// runQueryAllows is `auditwatch query allows`: the allow entries, active
// ones first unless --all.
func runQueryAllows(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fl := newFlagSet("query allows", stderr, "[--config FILE] [--state-dir DIR] [--all] [--format table|json|csv]", "the allow entries `auditwatch allow` made")
	var sf storageFlags
	sf.register(fl)
	stateDir := fl.String("state-dir", "", "override state.dir")
	all := fl.Bool("all", false, "also list expired entries")
	format := fl.String("format", store.FormatTable, "output: table, json or csv")
	if code, done := parseFlags(fl, args); done {
		return code
	}
	switch *format {
	case store.FormatTable, store.FormatJSON, store.FormatCSV:
	default:
		fmt.Fprintf(stderr, "auditwatch query allows: --format %q: want table, json or csv\n", *format)
		return 2
	}
	dir, _, err := allowConfig(&sf, *stateDir)
	if err != nil {
		fmt.Fprintln(stderr, "auditwatch query allows:", err)
		return 2
	}
	es, err := allow.Load(allowPath(dir))
	if err != nil {
		// The entries that read are still listed (and still apply).
		fmt.Fprintln(stderr, "auditwatch query allows:", err)
	}
	now := time.Now()
	res := &store.Result{Columns: []string{"id", "detector", "principal", "network", "resource", "created", "expires", "active", "finding", "by", "comment"}}
	for _, e := range es {
		active := e.Active(now)
		if !active && !*all {
			continue
		}
		exp := "never"
		if !e.Expires.IsZero() {
			exp = e.Expires.UTC().Format(time.RFC3339)
		}
		res.Rows = append(res.Rows, []any{e.ID, e.Detector, e.Principal, e.Network, e.Resource, e.Created, exp, fmt.Sprint(active), e.Finding, e.By, e.Comment})
	}
	if err := store.WriteResult(stdout, res, *format); err != nil {
		fmt.Fprintln(stderr, "auditwatch query allows:", err)
		return 1
	}
	return 0
}

// allowFiltered drops the findings an allow entry covers, before they
// are correlated or handed on.
type allowFiltered struct {
	pipeline.Detector
	list *allow.List
}

// allowing puts the allow entries of <state.dir>/allow behind a
// partition's engine.
func (d *daemon) allowing(det pipeline.Detector) pipeline.Detector {
	l := allow.Open(allowPath(d.stateDir()), nil)
	log := d.log.With("component", "allow")
	l.OnError = func(err error) { log.Warn("allow entries", "err", err) }
	return &allowFiltered{Detector: det, list: l}
}

func (a *allowFiltered) Process(ev schema.Event) []schema.Finding {
	return a.list.Filter(a.Detector.Process(ev))
}

// Join filters the findings raised beside the detector (Enrich's).
func (a *allowFiltered) Join(fs []schema.Finding) []schema.Finding { return a.list.Filter(fs) }

// Note filters what a note raises (pipeline.Noter).
func (a *allowFiltered) Note(ev schema.Event) []schema.Finding {
	n, ok := a.Detector.(pipeline.Noter)
	if !ok {
		return nil
	}
	return a.list.Filter(n.Note(ev))
}

func (a *allowFiltered) Drain() []schema.Finding {
	d, ok := a.Detector.(pipeline.Drainer)
	if !ok {
		return nil
	}
	return a.list.Filter(d.Drain())
}

func (a *allowFiltered) Buffered() int {
	d, ok := a.Detector.(pipeline.Drainer)
	if !ok {
		return 0
	}
	return d.Buffered()
}

func (a *allowFiltered) NeedCheckpoint() bool {
	nc, ok := a.Detector.(interface{ NeedCheckpoint() bool })
	return ok && nc.NeedCheckpoint()
}

// Unwrap returns the engine (baseline ends its history).
func (a *allowFiltered) Unwrap() incident.Detector { return a.Detector }
