// Package runbook owns the investigation commands suggested for a finding:
// which `auditwatch query` of the runbook catalog (store.Queries,
// docs/RUNBOOK.md) answers which question about it, with which flags. Alert
// outputs render them (Slack's "Investigate" block); a test in store checks
// every name and flag against the catalog, and the runbook test runs them
// against a running monitor. It imports only schema.
package runbook

import (
	"time"

	"auditwatch/schema"
)

// Flag is one flag and its value.
type Flag struct{ Name, Value string }

// Command is one `auditwatch query <Query> --flag value …` line.
type Command struct {
	Query string
	Flags []Flag
}

// Queries lists the catalog queries Investigate uses, with the flags each
// one passes; store tests check them against store.Queries.
var Queries = map[string][]string{
	"finding":      {"id", "since"},
	"who-accessed": {"resource", "since"},
	"principal":    {"principal", "since"},
	"blast-radius": {"principal", "since"},
	"ip":           {"ip", "since"},
}

// Since is the window start the commands use: an hour before the
// incident's first event (its time when unknown), as an absolute RFC 3339
// time so a command pasted days later still covers it.
func Since(f schema.Finding) string {
	t := f.FirstTime
	if t.IsZero() || (!f.Time.IsZero() && f.Time.Before(t)) {
		t = f.Time
	}
	return t.Add(-time.Hour).UTC().Truncate(time.Second).Format(time.RFC3339)
}

// Investigate returns the commands for f, in the order a responder runs
// them: the finding itself (all its revisions and event ids), who else
// touched its resource, what its principal did and could reach, and what
// came from its address. Commands whose input f lacks are left out.
func Investigate(f schema.Finding) []Command {
	since := Flag{"since", Since(f)}
	var out []Command
	if f.ID != "" {
		out = append(out, Command{"finding", []Flag{{"id", f.ID}, since}})
	}
	if f.Resource != "" {
		out = append(out, Command{"who-accessed", []Flag{{"resource", f.Resource}, since}})
	}
	if f.Principal != "" {
		out = append(out, Command{"principal", []Flag{{"principal", f.Principal}, since}})
		out = append(out, Command{"blast-radius", []Flag{{"principal", f.Principal}, since}})
	}
	if f.SourceIP != "" {
		out = append(out, Command{"ip", []Flag{{"ip", f.SourceIP}, since}})
	}
	return out
}
