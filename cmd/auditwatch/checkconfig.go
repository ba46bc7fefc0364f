package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"auditwatch/identity"
	"auditwatch/internal/configcheck"
	"auditwatch/internal/redact"
	"auditwatch/internal/secret"
	"auditwatch/watch"
)

func init() {
	register("check-config", command{
		summary: "validate a config file and print every problem as file:line: path: message",
		run:     checkConfig,
	})
}

// checkConfig exits 0 when FILE is valid, 1 when it is not (one problem a
// line on stdout), 2 on a usage error or an unreadable file.
func checkConfigMain(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("check-config", stderr, "[FILE]", commands["check-config"].summary)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: auditwatch check-config [FILE]")
		fmt.Fprintln(stderr)
		fmt.Fprintln(stderr, "Loads FILE exactly as every command does (strict YAML, defaults,")
		fmt.Fprintln(stderr, "every section validated) and prints every problem, one a line, as")
		fmt.Fprintln(stderr, "FILE:LINE: path: message. Exit status 0: valid, 1: invalid, 2: usage.")
		fmt.Fprintln(stderr, "Without FILE: $"+configcheck.EnvConfig+", else ./auditwatch.yaml, else")
		fmt.Fprintln(stderr, "/etc/auditwatch/config.yaml. It creates nothing.")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 1 {
		fs.Usage()
		return 2
	}
	path, _, err := discoverConfig(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "auditwatch check-config: %v\n", err)
		return 2
	}
	// A problem may quote a value written in the file, such as a URL
	// with credentials in it: stdout passes the redaction layer too.
	rw := redact.NewWriter(stdout)
	defer rw.Flush()
	stdout = rw
	probs, err := configcheck.File(path)
	if err != nil {
		fmt.Fprintf(stderr, "auditwatch check-config: %v\n", err)
		return 2
	}
	if len(probs) == 0 {
		fmt.Fprintf(stdout, "%s: ok\n", path)
		// Where each secret comes from and whether it is set; never any
		// part of its value.
		if l, err := configcheck.Load(path); err == nil {
			describe := func(prefix string) func(p string, s secret.Secret) {
				return func(p string, s secret.Secret) {
					if !s.IsZero() {
						fmt.Fprintf(stdout, "  %s%s: %s\n", prefix, strings.TrimPrefix(p, "config."), s.Describe())
					}
				}
			}
			secret.Walk(l, describe(""))
			// sections the loaded config keeps undecoded (their own packages')
			if c, err := identity.FromNode(&l.Identity); err == nil {
				secret.Walk(c, describe("identity."))
			}
			if c, err := watch.DecodeCanary(&l.Canary); err == nil {
				secret.Walk(c, describe("canary."))
			}
		}
		return 0
	}
	for _, p := range probs {
		fmt.Fprintln(stdout, p.In(path))
	}
	s := "s"
	if len(probs) == 1 {
		s = ""
	}
	fmt.Fprintf(stderr, "%s: %d problem%s\n", path, len(probs), s)
	return 1
}
