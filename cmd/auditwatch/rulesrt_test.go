package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"auditwatch/config/duration"
	"auditwatch/schema"
	"auditwatch/sigma"
)

type nopEngine struct{ meta map[string][]byte }

func (e *nopEngine) Process(schema.Event) []schema.Finding { return nil }
func (e *nopEngine) Checkpoint(m map[string][]byte) error  { e.meta = m; return nil }
func (e *nopEngine) Meta() (map[string][]byte, error)      { return e.meta, nil }
func (e *nopEngine) Close() error                          { return nil }

const kmsRule = `title: KMS key disabled
id: 11111111-0000-4000-8000-000000000001
author: test
logsource: {product: aws, service: cloudtrail}
detection:
  sel:
    eventName: %s
  condition: sel
level: high
`

// A changed rule file is picked up; an invalid one is rejected whole with
// file and line in the log and the metric, and the previous set keeps
// running.
func TestRulesReload(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "kms.yml")
	write := func(body string) {
		if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		// a distinct mtime even on coarse clocks
		later := time.Now().Add(time.Duration(len(body)) * time.Second)
		os.Chtimes(file, later, later)
	}
	write(strings.Replace(kmsRule, "%s", "DisableKey", 1))
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	rt, err := newRulesRuntime(sigma.Config{Paths: []string{dir}, WatchInterval: duration.Duration(time.Second), MaxGroups: 10},
		slog.New(slog.NewTextHandler(&logs, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	det, err := rt.wrap(&nopEngine{})
	if err != nil {
		t.Fatal(err)
	}
	fire := func(name string) int {
		ev := schema.Event{Source: schema.SourceCloudTrail, ID: "e-" + name, Action: "kms:" + name,
			Raw: []byte(`{"eventSource":"kms.amazonaws.com","eventName":"` + name + `"}`)}
		return len(det.Process(ev))
	}
	if fire("DisableKey") != 1 || fire("EnableKey") != 0 {
		t.Fatal("initial set")
	}
	write(strings.Replace(kmsRule, "%s", "EnableKey", 1))
	rt.reload(false)
	if fire("EnableKey") != 1 || fire("DisableKey") != 0 {
		t.Fatal("changed set not applied")
	}
	write(strings.Replace(kmsRule, "eventName: %s", "eventName|bogus: X", 1))
	rt.reload(false)
	if fire("EnableKey") != 1 {
		t.Fatal("previous set not kept after a rejected reload")
	}
	// the metric names the file and line of the invalid rule, in one series
	if got := testutil.ToFloat64(rt.rejected.WithLabelValues(file, "7")); got != 1 || testutil.CollectAndCount(rt.rejected) != 1 {
		t.Errorf("auditwatch_rules_rejected{file=%q,line=\"7\"} %v in %d series, want 1 in 1", file, got, testutil.CollectAndCount(rt.rejected))
	}
	if got := testutil.ToFloat64(rt.reloads.WithLabelValues("rejected")); got != 1 {
		t.Errorf("rejected reloads %v", got)
	}
	if !strings.Contains(logs.String(), "kms.yml") || !strings.Contains(logs.String(), "line=7") {
		t.Errorf("log does not name file and line:\n%s", logs.String())
	}
	// an event without its record is counted, and shows on the registry
	det.Process(schema.Event{Source: schema.SourceCloudTrail, ID: "no-raw", Action: "kms:EnableKey"})
	n, err := testutil.GatherAndCount(reg, "auditwatch_rules_records_missing_total")
	if err != nil || n != 1 {
		t.Errorf("records_missing metric: %d series, %v", n, err)
	}
	if _, missing, _, _, _ := det.Counters(); missing != 1 {
		t.Errorf("missing records counted %d, want 1", missing)
	}
	// unchanged files: nothing happens
	rt.reload(false)
	if got := testutil.ToFloat64(rt.reloads.WithLabelValues("rejected")); got != 1 {
		t.Errorf("an unchanged broken set was reloaded again")
	}
	// fixed files: applied, and the metric is back to one series at 0
	write(strings.Replace(kmsRule, "%s", "DisableKey", 1) + "\n")
	rt.reload(false)
	if fire("DisableKey") != 1 {
		t.Fatal("fixed set not applied")
	}
	if got := testutil.ToFloat64(rt.rejected.WithLabelValues("", "")); got != 0 || testutil.CollectAndCount(rt.rejected) != 1 {
		t.Errorf("after a fix auditwatch_rules_rejected has %d series, want one at 0 (got %v)", testutil.CollectAndCount(rt.rejected), got)
	}
}
