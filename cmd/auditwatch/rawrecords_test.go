package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"auditwatch/ingest/cloudtrail"
	"auditwatch/ingest/source"
	"auditwatch/internal/configcheck"
	"auditwatch/schema"
)

type collectPub struct{ evs []schema.Event }

func (c *collectPub) Publish(_ context.Context, b source.Batch) error {
	c.evs = append(c.evs, b.Events...)
	return nil
}

// TestRawRecordsKeptOnlyWhereUsed: the sources keep each event's original
// record where it is stored (a store in this process, or the Kafka events
// topic for whoever stores it) or read (Sigma rules), and not otherwise:
// copying every record nobody reads was most of what `run` with storage
// off cost beyond `replay`. Credential-issuing CloudTrail events keep
// theirs always (session linking reads it).
func TestRawRecordsKeptOnlyWhereUsed(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in")
	os.MkdirAll(in, 0o755)
	sample, err := os.ReadFile(filepath.Join("..", "..", "ingest", "testdata", "cloudtrail-sample.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(in, "ct.jsonl"), sample, 0o644)
	rules := filepath.Join(dir, "rules")
	os.MkdirAll(rules, 0o755)
	os.WriteFile(filepath.Join(rules, "kms.yml"), fmt.Appendf(nil, kmsRule, "DisableKey"), 0o644)
	chdb := fmt.Sprintf("storage: {backend: chdb, chdb: {path: %q}}\n", filepath.Join(dir, "chdb"))
	for _, tc := range []struct {
		name, section string
		all           bool
	}{
		{"no storage section", "", false},
		{"storage off", "storage: {backend: off}\n", false},
		{"storage off, raw_records true", "storage: {backend: off}\nraw_records: true\n", false},
		{"chdb", chdb, true},
		{"chdb, raw_records false", chdb + "raw_records: false\n", false},
		{"kafka stream", "stream: {type: kafka, kafka: {brokers: [\"127.0.0.1:9\"]}}\nstorage: {backend: off}\n", true},
		{"sigma rules, storage off", fmt.Sprintf("storage: {backend: off}\nrules: {paths: [%q]}\n", rules), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := filepath.Join(dir, "c.yaml")
			os.WriteFile(cfg, fmt.Appendf(nil, "sources:\n  - {name: ct, type: dir, dir: {path: %q, once: true}}\nstate: {dir: %q}\n%s",
				in, filepath.Join(dir, "state-"+filepath.Base(t.Name())), tc.section), 0o644)
			l, err := configcheck.Load(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got := keepRaw(l); got != tc.all {
				t.Errorf("keepRaw = %v, want %v", got, tc.all)
			}
			srcs, err := buildSources(l, source.NewMemCheckpoints(nil), slog.New(slog.DiscardHandler), prometheus.NewRegistry())
			if err != nil || len(srcs) != 1 {
				t.Fatalf("buildSources: %v", err)
			}
			var pub collectPub
			if err := srcs[0].Run(t.Context(), &pub); err != nil {
				t.Fatal(err)
			}
			if len(pub.evs) < 100 {
				t.Fatalf("%d events read, want the sample's", len(pub.evs))
			}
			for i := range pub.evs {
				ev := &pub.evs[i]
				want := tc.all || cloudtrail.IssuesCredentials(ev)
				if (len(ev.Raw) > 0) != want {
					t.Fatalf("event %d (%s): raw record kept = %v, want %v", i, ev.Action, len(ev.Raw) > 0, want)
				}
			}
		})
	}
}
