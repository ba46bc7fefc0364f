// Command auditwatch-bench is the soak/load harness (`make soak`): it runs
// the auditwatch binary's pipeline commands as separate processes at a
// fixed rate from a live generated stream and reports throughput, lost
// events, latency, memory and goroutines. It is a separate command so the
// production binary links no test broker.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"auditwatch/internal/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := bench.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
