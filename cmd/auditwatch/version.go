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
		run:     runVersion,
	})
}

func versionMain(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("version", stderr, "", commands["version"].summary)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	fmt.Fprintln(stdout, "auditwatch", buildVersion())
	fmt.Fprintln(stdout, netinfo.Attribution)
	return 0
}

// buildVersion is the module version the binary was built at ("(devel)"
// for a local build), with the VCS revision when the build recorded one.
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	v := bi.Main.Version
	if v == "" {
		v = "devel"
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" {
		v += " (" + rev + dirty + ")"
	}
	return v
}
