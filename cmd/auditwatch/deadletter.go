package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"
	"time"

	"auditwatch/alert"
	"auditwatch/alert/deadletter"
	"auditwatch/alert/notify"
	"auditwatch/internal/escape"
	"auditwatch/internal/lifecycle"
)

func init() {
	register("deadletter", command{
		summary: "list or resend the alerts outputs could not deliver (list|resend --config FILE [--output NAME] [--file PATH])",
		run:     runDeadletter,
	})
}

const deadletterUsage = `usage: auditwatch deadletter list   --config FILE [--output NAME] [--file PATH]
       auditwatch deadletter resend --config FILE [--output NAME] [--file PATH]

list prints every record of the dead-letter file (the alerts section's
dead_letter.path, default <state.dir>/alert/dead-letter.jsonl). resend
delivers each record again to the output that failed it, through that
output's retries; it is idempotent: a finding revision already delivered
to its output, or an event batch resent before, is skipped, so running it
twice sends nothing twice. Records that fail again are appended to the
dead-letter file for a later run. While the stage that owns the alert
ledger (run or alert) is running, resend hands the request to it through
the resend spool (<state.dir>/alert/resend/) and prints its answer; it
waits --wait for that answer.
`

func deadletterMain(ctx context.Context, j *lifecycle.Job, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
		fmt.Fprint(stderr, deadletterUsage)
		return 0
	}
	if len(args) == 0 || (args[0] != "list" && args[0] != "resend") {
		fmt.Fprint(stderr, deadletterUsage)
		return 2
	}
	verb := args[0]
	fs := newFlagSet("deadletter "+verb, stderr, "[flags]", commands["deadletter"].summary)
	cfgPath := configFlag(fs)
	only := fs.String("output", "", "only records of the output `NAME`")
	file := fs.String("file", "", "dead-letter `PATH` (default: the configured one)")
	wait := fs.Duration("wait", 10*time.Minute, "how long resend waits for the running stage's answer")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprint(stderr, deadletterUsage)
		return 2
	}
	var dargs []string
	if *cfgPath != "" {
		dargs = []string{"--config", *cfgPath}
	}
	d, code := newDaemon("deadletter", dargs, stderr)
	if d == nil {
		return code
	}
	j.SetShutdownTimeout(d.cfg.ShutdownTimeout.D())
	acfg, err := alert.FromNode(&d.cfg.Alerts)
	if err != nil {
		fmt.Fprintf(stderr, "auditwatch deadletter: config: %v\n", err)
		return 2
	}
	acfg.DefaultPaths(d.stateDir("alert"))
	path := *file
	if path == "" {
		path = acfg.DeadLetter.Path
	}
	if path == "" {
		fmt.Fprintln(stderr, "auditwatch deadletter: no dead-letter file (the config has no alert outputs)")
		return 2
	}
	if *only != "" {
		known := false
		for _, o := range acfg.Outputs {
			known = known || o.Name == *only
		}
		if !known {
			fmt.Fprintf(stderr, "auditwatch deadletter: --output %q is not an output of the config\n", escape.String(escape.Terminal, *only))
			return 2
		}
	}
	if verb == "list" {
		return deadletterList(path, *only, stdout, stderr)
	}
	r, err := jobOpen(j, "alert router", func(context.Context) (*alert.Router, error) {
		return alert.New(acfg, d.log.With("component", "alert"), d.reg, alert.WithoutDelivery())
	}, (*alert.Router).Close)
	if errors.Is(err, alert.ErrInUse) {
		return resendThroughRunning(ctx, acfg, path, *only, *wait, stdout, stderr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "auditwatch deadletter resend: %v\n", err)
		return 1
	}
	st, err := r.Replay(ctx, path, *only)
	return resendReport(acfg, st, err, stdout, stderr)
}

// resendThroughRunning asks the running stage, which holds the ledger, to
// resend (alert.RequestResend) and reports its answer.
func resendThroughRunning(ctx context.Context, acfg alert.Config, path, only string, wait time.Duration, stdout, stderr io.Writer) int {
	dir := alert.ResendDir(acfg)
	abs, err := filepath.Abs(path)
	if err != nil {
		fmt.Fprintf(stderr, "auditwatch deadletter resend: %v\n", err)
		return 1
	}
	id, err := alert.RequestResend(dir, alert.ResendRequest{File: abs, Output: only, Requested: time.Now().UTC()})
	if err != nil {
		fmt.Fprintf(stderr, "auditwatch deadletter resend: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "auditwatch deadletter resend: the alert ledger is held by a running stage; asked it to resend (request %s)\n", id)
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	res, err := alert.WaitResend(wctx, dir, id)
	if err != nil {
		fmt.Fprintf(stderr, "auditwatch deadletter resend: %v\n", err)
		return 1
	}
	var rerr error
	if res.Error != "" {
		rerr = errors.New(res.Error)
	}
	return resendReport(acfg, res.Stats, rerr, stdout, stderr)
}

func resendReport(acfg alert.Config, st alert.ReplayStats, err error, stdout, stderr io.Writer) int {
	fmt.Fprintf(stdout, "resent %d findings and %d events; %d failed again (appended to %s); %d already delivered; %d skipped\n",
		st.Findings, st.Events, st.Failed, escape.String(escape.Terminal, acfg.DeadLetter.Path), st.Done, st.Skipped)
	if err != nil {
		fmt.Fprintf(stderr, "auditwatch deadletter resend: %v\n", err)
		return 1
	}
	if st.Failed > 0 {
		return 3
	}
	return 0
}

func deadletterList(path, only string, stdout, stderr io.Writer) int {
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LINE\tTIME\tOUTPUT\tREASON\tATTEMPTS\tWHAT\tERROR")
	n := 0
	err := deadletter.ReadFile(path, func(line int, rec deadletter.Record) error {
		if only != "" && rec.Output != only {
			return nil
		}
		n++
		what := fmt.Sprintf("%d events", len(rec.Events))
		if rec.Finding != nil {
			what = fmt.Sprintf("finding %s rev %d (%s)", rec.Finding.ID, rec.Finding.Revision, rec.Finding.Detector)
		}
		errText := notify.Truncate(rec.Error, 160)
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\n", line, rec.Time.UTC().Format("2006-01-02T15:04:05Z"),
			escape.String(escape.Terminal, rec.Output), escape.String(escape.Terminal, rec.Reason), rec.Attempts, escape.String(escape.Terminal, what), escape.String(escape.Terminal, errText))
		return nil
	})
	tw.Flush()
	if err != nil {
		fmt.Fprintf(stderr, "auditwatch deadletter list: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%d records\n", n)
	return 0
}
