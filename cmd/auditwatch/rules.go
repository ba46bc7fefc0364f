package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"auditwatch/internal/escape"
	"auditwatch/sigma"
)

func init() {
	register("rules", command{
		summary: "check Sigma rule files, or run their examples (rules check|test PATH...)",
		run:     runRules,
	})
}

func rulesUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: auditwatch rules check [--config F] PATH...   (files and folders, recursive)")
	fmt.Fprintln(w, "       auditwatch rules test [--config F] PATH...")
	fmt.Fprintln(w, "check prints each invalid or unsupported rule with its file and line, then")
	fmt.Fprintln(w, "'N loaded, M unsupported, K invalid'; exit 1 when any rule is invalid.")
	fmt.Fprintln(w, "test runs each rule file's examples, X.tests.jsonl beside X.yml: one JSON object a")
	fmt.Fprintln(w, `line, {"match": true|false, "record": {original record}}; exit 1 on a failed example.`)
	fmt.Fprintln(w, "The examples of a rule that is unsupported here are skipped, with the reason.")
	fmt.Fprintln(w, "--config takes rules.placeholders (the values of the expand modifier) from F.")
}

func rulesMain(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		rulesUsage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	sub := args[0]
	fl := newFlagSet("rules "+sub, stderr, "PATH...", commands["rules"].summary)
	requireTests := fl.Bool("require-tests", false, "test: a rule file without examples fails")
	cfgPath := fl.String("config", "", "config file whose rules.placeholders give the expand modifier's values")
	fl.Usage = func() { rulesUsage(stderr); fl.PrintDefaults() }
	if err := fl.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	paths := fl.Args()
	if len(paths) == 0 {
		rulesUsage(stderr)
		return 2
	}
	var opt sigma.Options
	if *cfgPath != "" && (sub == "check" || sub == "test") {
		_, rc, err := loadReplayConfigRules(*cfgPath)
		if err != nil {
			fmt.Fprintf(stderr, "rules %s: %s\n", sub, escape.String(escape.Terminal, err.Error()))
			return 2
		}
		opt = rc.Options()
	}
	switch sub {
	case "check":
		return rulesCheck(paths, opt, stdout, stderr)
	case "test":
		return rulesTest(paths, opt, *requireTests, stdout, stderr)
	}
	fmt.Fprintf(stderr, "rules: unknown subcommand %q (check or test)\n", escape.String(escape.Terminal, sub))
	return 2
}

func rulesCheck(paths []string, opt sigma.Options, stdout, stderr io.Writer) int {
	set, res, err := sigma.Check(paths, opt)
	if err != nil {
		fmt.Fprintf(stderr, "rules check: %s\n", escape.String(escape.Terminal, err.Error()))
		return 2
	}
	for _, p := range res.Invalid {
		fmt.Fprintln(stdout, escape.String(escape.Terminal, p.Error()))
	}
	for _, p := range res.Unsupported {
		fmt.Fprintln(stdout, escape.String(escape.Terminal, p.Error()))
	}
	fmt.Fprintf(stdout, "%d loaded, %d unsupported, %d invalid\n", len(set.Rules), len(res.Unsupported), len(res.Invalid))
	if len(res.Invalid) > 0 {
		return 1
	}
	return 0
}

func rulesTest(paths []string, opt sigma.Options, requireTests bool, stdout, stderr io.Writer) int {
	set, res, err := sigma.Check(paths, opt)
	if err != nil {
		fmt.Fprintf(stderr, "rules test: %s\n", escape.String(escape.Terminal, err.Error()))
		return 2
	}
	if len(res.Invalid) > 0 {
		for _, p := range res.Invalid {
			fmt.Fprintln(stdout, escape.String(escape.Terminal, p.Error()))
		}
		fmt.Fprintf(stdout, "%d invalid: fix them first (auditwatch rules check)\n", len(res.Invalid))
		return 1
	}
	// A file with a rule that does not load here (unsupported) has its
	// examples skipped with the reason, never run against a set without
	// that rule and reported as failures.
	skip := map[string][]string{}
	for _, p := range res.Unsupported {
		skip[sigma.TestsFile(p.File)] = append(skip[sigma.TestsFile(p.File)], p.Error())
	}
	files := res.Files
	passed, failed, missing, skipped, cases := 0, 0, 0, 0, 0
	for _, r := range sigma.RunTests(set, files) {
		if why := skip[r.File]; len(why) > 0 && !r.Missing {
			skipped++
			for _, w := range why {
				fmt.Fprintf(stdout, "skip %s: %s\n", escape.String(escape.Terminal, r.File), escape.String(escape.Terminal, w))
			}
			continue
		}
		switch {
		case r.Missing:
			missing++
			if requireTests {
				failed++
				fmt.Fprintf(stdout, "FAIL %s: missing\n", escape.String(escape.Terminal, r.File))
			}
		case len(r.Failures) > 0:
			failed++
			for _, f := range r.Failures {
				fmt.Fprintf(stdout, "FAIL %s\n", escape.String(escape.Terminal, f))
			}
		default:
			passed++
			cases += r.Cases
			fmt.Fprintf(stdout, "ok   %s (%d examples)\n", escape.String(escape.Terminal, r.File), r.Cases)
		}
	}
	fmt.Fprintf(stdout, "%d passed (%d examples), %d failed, %d without examples", passed, cases, failed, missing)
	if skipped > 0 {
		fmt.Fprintf(stdout, ", %d skipped (unsupported)", skipped)
	}
	fmt.Fprintln(stdout)
	if failed > 0 {
		return 1
	}
	return 0
}
