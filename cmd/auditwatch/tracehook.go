//go:build tracehook

package main

// A diagnosis build only (`go build -tags tracehook`; never in the shipped
// binary): `auditwatch run` writes a Go execution trace of
// AUDITWATCH_TRACE_FOR (default 30s) starting AUDITWATCH_TRACE_AFTER
// (default 15s) after its start to AUDITWATCH_TRACE_FILE.<pid>, for
// `go tool trace -pprof=syscall|sync` (docs/PERFORMANCE.md: which
// goroutines wait on the embedded store).

import (
	"os"
	"runtime/trace"
	"strconv"
	"time"
)

func init() {
	p := os.Getenv("AUDITWATCH_TRACE_FILE")
	if p == "" || len(os.Args) < 2 || os.Args[1] != "run" {
		return
	}
	after, err := time.ParseDuration(os.Getenv("AUDITWATCH_TRACE_AFTER"))
	if err != nil {
		after = 15 * time.Second
	}
	span, err := time.ParseDuration(os.Getenv("AUDITWATCH_TRACE_FOR"))
	if err != nil {
		span = 30 * time.Second
	}
	f, err := os.Create(p + "." + strconv.Itoa(os.Getpid()))
	if err != nil {
		return
	}
	go func() {
		time.Sleep(after)
		if trace.Start(f) != nil {
			f.Close()
			return
		}
		time.Sleep(span)
		trace.Stop()
		f.Close()
	}()
}
