package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"auditwatch/ingest/source"
	"auditwatch/internal/configcheck"
)

type discardPub struct{}

func (discardPub) Publish(context.Context, source.Batch) error { return nil }

// TestQuarantineFromConfig: the sources' rejected records go to the file
// and cap the quarantine: section names (by default under state.dir).
func TestQuarantineFromConfig(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in")
	os.MkdirAll(in, 0o755)
	var bad strings.Builder
	for i := range 500 {
		fmt.Fprintf(&bad, "not an audit record %d\n", i)
	}
	os.WriteFile(filepath.Join(in, "bad.log"), []byte(bad.String()), 0o644)
	for _, tc := range []struct{ section, want string }{
		{"quarantine: {path: " + filepath.Join(dir, "q", "rejects.jsonl") + ", max_bytes: 4096}\n", filepath.Join(dir, "q", "rejects.jsonl")},
		{"", filepath.Join(dir, "state", "quarantine", "rejected.jsonl")},
	} {
		cfg := filepath.Join(dir, "c.yaml")
		os.WriteFile(cfg, []byte(fmt.Sprintf("sources:\n  - {name: drop, type: dir, dir: {path: %q, once: true}}\nstate: {dir: %q}\n%s",
			in, filepath.Join(dir, "state"), tc.section)), 0o644)
		l, err := configcheck.Load(cfg)
		if err != nil {
			t.Fatal(err)
		}
		srcs, err := buildSources(l, source.NewMemCheckpoints(nil), slog.New(slog.DiscardHandler), prometheus.NewRegistry())
		if err != nil || len(srcs) != 1 {
			t.Fatalf("buildSources: %v", err)
		}
		if err := srcs[0].Run(t.Context(), discardPub{}); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(tc.want)
		if err != nil || st.Size() == 0 {
			t.Fatalf("quarantine file %s: %v", tc.want, err)
		}
		if tc.section != "" && st.Size() > 4096 {
			t.Errorf("quarantine file %d bytes, over its 4096-byte cap", st.Size())
		}
	}
}
