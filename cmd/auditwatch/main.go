// Command auditwatch watches who touches secrets: it normalizes AWS
// CloudTrail and Vault/OpenBao audit logs, runs detectors over them, alerts
// and stores every event. Each subcommand lives in its own file and
// registers itself in commands.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"

	"auditwatch/internal/lifecycle"
	"auditwatch/internal/redact"
	"auditwatch/netinfo"
)

// command is one subcommand. run returns the process exit code.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int
	// daemon marks the long-running stage commands, which run their
	// components on the lifecycle manager themselves; every other command
	// runs as a lifecycle job (oneShot).
	daemon bool
}

var commands = map[string]command{}

func register(name string, c command) {
	if _, dup := commands[name]; dup {
		panic("auditwatch: command registered twice: " + name)
	}
	commands[name] = c
}

func main() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	// Every message a command prints on stderr, logged or not, passes
	// the one redaction layer.
	rw := redact.NewWriter(stderr)
	defer rw.Flush()
	stderr = rw
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	if args[0] == "--version" || args[0] == "-version" || args[0] == "-v" {
		fmt.Fprintln(stdout, "auditwatch", buildVersion())
		fmt.Fprintln(stdout, netinfo.Attribution)
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "auditwatch: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if c.daemon {
		return c.run(ctx, args[1:], stdin, stdout, stderr)
	}
	return oneShot(ctx, args[0], stderr, func(ctx context.Context, _ *lifecycle.Job) int {
		return c.run(ctx, args[1:], stdin, stdout, stderr)
	})
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: auditwatch <command> [flags] [args]")
	fmt.Fprintln(w, "       auditwatch --version")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-14s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'auditwatch <command> -h' for a command's flags. Commands that take a")
	fmt.Fprintln(w, "config read --config FILE, else $AUDITWATCH_CONFIG, else ./auditwatch.yaml,")
	fmt.Fprintln(w, "else /etc/auditwatch/config.yaml.")
}
