package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"sync"
)

// newFlagSet returns the flag set of a subcommand. Its usage (-h, or a
// bad flag) prints "usage: auditwatch NAME SYNOPSIS", what the command
// does, and every flag with its default.
func newFlagSet(name string, stderr io.Writer, synopsis, summary string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	flagSets.Store(name, fs)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: auditwatch %s %s\n", name, synopsis)
		if summary != "" {
			fmt.Fprintf(stderr, "\n%s\n", summary)
		}
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprintln(stderr, "\nflags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

// flagSets holds the last flag set each subcommand made, so a test can
// check that its -h lists every flag.
var flagSets sync.Map

// parseFlags parses args. done reports that the command should end now
// with code: 0 after -h (usage printed), 2 after a bad flag.
func parseFlags(fs *flag.FlagSet, args []string) (code int, done bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, true
		}
		return 2, true
	}
	return 0, false
}
