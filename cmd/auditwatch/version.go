package main

import (
	"context"
	"fmt"
	"io"
	"runtime/debug"

	"auditwatch/netinfo"
)

func init() {
	register("version", command{
		summary: "print the build version",
		run: func(_ context.Context, _ []string, _ io.Reader, stdout, _ io.Writer) int {
			v := "devel"
			if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
				v = bi.Main.Version
			}
			fmt.Fprintln(stdout, "auditwatch", v)
			fmt.Fprintln(stdout, netinfo.Attribution)
			return 0
		},
	})
}
