package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"auditwatch/internal/escape"
	"auditwatch/internal/lifecycle"
	"auditwatch/store"
)

func init() {
	register("query", command{
		summary: "run an incident runbook query: " + strings.Join(store.QueryNames(), ", "),
		run:     runQuery,
	})
}

func queryUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintln(w, "usage: auditwatch query <name> [flags]")
	fmt.Fprintln(w, "\nqueries (docs/RUNBOOK.md shows each one's SQL):")
	for _, n := range store.QueryNames() {
		q := store.Queries[n]
		need := ""
		if len(q.Needs) > 0 {
			need = " (needs --" + strings.ReplaceAll(strings.Join(q.Needs, " or --"), "_", "-") + ")"
		}
		fmt.Fprintf(w, "  %-13s %s%s; default --since %s\n", n, q.Summary, need, fmtDur(q.DefaultSince))
	}
	fmt.Fprintf(w, "  %-13s %s\n", "token-accessor", "the Vault token accessor whose audit HMAC is --hmac (asks Vault: VAULT_ADDR, VAULT_TOKEN with sudo; see -h)")
	fmt.Fprintf(w, "  %-13s %s\n", "allows", "the allow entries `auditwatch allow` made (from state.dir; --all adds expired ones)")
	fmt.Fprintln(w, "\nflags:")
	fs.PrintDefaults()
}

func fmtDur(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

func queryMain(ctx context.Context, j *lifecycle.Job, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("query", stderr, "<name> [flags]", commands["query"].summary)
	var sf storageFlags
	sf.register(fs)
	var a store.QueryArgs
	since := fs.String("since", "", "window start: 90m, 24h, 7d or an RFC 3339 time (default per query)")
	until := fs.String("until", "", "window end: 90m, 24h, 7d (before now) or an RFC 3339 time (default: now)")
	format := fs.String("format", "table", "output: table, json, csv, or commands (credentials, blast-radius: revoke/rotate commands)")
	fs.StringVar(&a.Severity, "severity", "", "findings: at or above this severity (info, low, medium, high, critical)")
	fs.StringVar(&a.Detector, "detector", "", "findings: only this detector's")
	fs.StringVar(&a.ID, "id", "", "finding: a finding id or dedupe key")
	limit := fs.Uint64("limit", 1000, "at most this many rows")
	fs.StringVar(&a.Resource, "resource", "", "secret in any form: Vault path (secret/x or secret/data/x), Secrets Manager name or ARN, KMS key id, ARN or alias")
	fs.StringVar(&a.Principal, "principal", "", "principal (IAM ARN, Vault entity id, …)")
	fs.StringVar(&a.IP, "ip", "", "source address or CIDR")
	asn := fs.Uint("asn", 0, "ip: addresses of this autonomous system number (network context, geo: section)")
	fs.StringVar(&a.Country, "country", "", "ip: addresses in this country (ISO 3166 code, e.g. DE)")
	fs.StringVar(&a.AccessKey, "access-key", "", "AWS access key id (AKIA…/ASIA…)")
	fs.Usage = func() { queryUsage(stderr, fs) }
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			queryUsage(stderr, fs)
			return 0
		}
		queryUsage(stderr, fs)
		return 2
	}
	name := args[0]
	if name == "token-accessor" {
		return runTokenAccessor(ctx, args[1:], stdout, stderr)
	}
	if name == "allows" {
		return runQueryAllows(ctx, args[1:], stdout, stderr)
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	spec, ok := store.Queries[name]
	if !ok {
		fmt.Fprintf(stderr, "auditwatch query: unknown query %q\n\n", name)
		queryUsage(stderr, fs)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "auditwatch query: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	switch *format {
	case store.FormatTable, store.FormatJSON, store.FormatCSV:
	case store.FormatCommands:
		if !store.CommandsFor(name) {
			fmt.Fprintf(stderr, "auditwatch query: --format commands applies to credentials and blast-radius\n")
			return 2
		}
	default:
		fmt.Fprintf(stderr, "auditwatch query: --format %q: want table, json, csv or commands\n", *format)
		return 2
	}
	now := time.Now()
	t, err := parseSince(*since, now)
	if err != nil {
		fmt.Fprintln(stderr, "auditwatch query:", err)
		return 2
	}
	if t.IsZero() {
		t = now.Add(-spec.DefaultSince)
	}
	u, err := parseSince(*until, now)
	if err != nil {
		fmt.Fprintln(stderr, "auditwatch query:", strings.Replace(err.Error(), "--since", "--until", 1))
		return 2
	}
	a.Until = u
	a.Since, a.Limit = t, *limit
	if *asn > 1<<32-1 {
		fmt.Fprintf(stderr, "auditwatch query: --asn %d: not an AS number\n", *asn)
		return 2
	}
	a.ASN = uint32(*asn)
	if _, _, err := store.Build(name, a, "auditwatch"); err != nil {
		fmt.Fprintln(stderr, "auditwatch query:", err)
		return 2
	}
	cfg, err := sf.load()
	if err != nil {
		fmt.Fprintln(stderr, "auditwatch query:", err)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := jobOpen(j, "store", func(ctx context.Context) (store.Querier, error) { return store.OpenQuery(ctx, cfg, logger) }, store.Querier.Close)
	if err != nil {
		fmt.Fprintln(stderr, "auditwatch query:", err)
		return 1
	}
	res, err := st.Query(ctx, name, a)
	if err != nil {
		fmt.Fprintln(stderr, "auditwatch query:", err)
		return 1
	}
	if *format == store.FormatCommands {
		if err := store.WriteCommands(stdout, name, a, res, time.Now()); err != nil {
			fmt.Fprintln(stderr, "auditwatch query:", err)
			return 1
		}
		return 0
	}
	if *format == store.FormatTable && store.CommandsFor(name) && len(res.Rows) > 0 {
		defer fmt.Fprintf(stderr, "next: the same query with --format commands prints the revoke/rotate commands\n")
	}
	if err := store.WriteResult(stdout, res, *format); err != nil {
		fmt.Fprintln(stderr, "auditwatch query:", err)
		return 1
	}
	if *format != store.FormatTable {
		for _, n := range res.Notes {
			fmt.Fprintln(stderr, escape.String(escape.Terminal, n))
		}
	}
	return 0
}
