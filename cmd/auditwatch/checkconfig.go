package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"auditwatch/internal/configcheck"
)

func init() {
	register("check-config", command{
		summary: "validate a config file and print every problem with its path (FILE)",
		run:     checkConfig,
	})
}

// checkConfig exits 0 when FILE is valid, 1 when it is not (one problem a
// line on stdout), 2 on a usage error or an unreadable file.
func checkConfig(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: auditwatch check-config FILE")
		fmt.Fprintln(stderr)
		fmt.Fprintln(stderr, "Loads FILE exactly as the stage commands do (strict YAML, defaults,")
		fmt.Fprintln(stderr, "every section validated) and prints every problem, one a line, as")
		fmt.Fprintln(stderr, "path: message (line N). Exit status 0: valid, 1: invalid, 2: usage.")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	path := fs.Arg(0)
	probs, err := configcheck.File(path)
	if err != nil {
		fmt.Fprintf(stderr, "auditwatch check-config: %v\n", err)
		return 2
	}
	if len(probs) == 0 {
		fmt.Fprintf(stdout, "%s: ok\n", path)
		return 0
	}
	for _, p := range probs {
		fmt.Fprintln(stdout, p.String())
	}
	s := "s"
	if len(probs) == 1 {
		s = ""
	}
	fmt.Fprintf(stderr, "%s: %d problem%s\n", path, len(probs), s)
	return 1
}
