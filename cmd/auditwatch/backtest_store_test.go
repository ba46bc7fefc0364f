package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"auditwatch/alert"
	"auditwatch/ingest"
	"auditwatch/schema"
	"auditwatch/store"
	"auditwatch/store/chtest"
)

// storeWeek stores the original records of a generated week's events
// (as run does with raw_records on) in database db of cfg.
func storeWeek(t *testing.T, cfg store.Config, data string) int {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(data)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	opts := ingest.DefaultOptions()
	opts.KeepRaw = true
	r := ingest.NewReader(f, data, opts)
	var batch []schema.Event
	n := 0
	flush := func() {
		if err := st.InsertEvents(ctx, batch); err != nil {
			t.Fatal(err)
		}
		n += len(batch)
		batch = batch[:0]
	}
	for {
		ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		batch = append(batch, ev)
		if len(batch) == 5000 {
			flush()
		}
	}
	flush()
	return n
}

// TestBacktestFromStore backtests a rule change (one rule's level raised,
// one removed, one added) and a silence (the new config mutes a detector)
// over a generated week of events read back from storage — embedded chDB
// and a ClickHouse 18.16 server — and checks the reported difference
// against two separate replays of the same week's files, the silence
// applied to the new one.
func TestBacktestFromStore(t *testing.T) {
	work := t.TempDir()
	data := filepath.Join(work, "week.log")
	f, err := os.Create(data)
	if err != nil {
		t.Fatal(err)
	}
	var genErr bytes.Buffer
	if code := run([]string{"generate", "--format", "mixed", "--seed", "7", "--events", "8000", "--machines", "15",
		"--humans", "6", "--duration", "168h"}, nil, f, &genErr); code != 0 {
		t.Fatalf("generate: %s", genErr.String())
	}
	f.Close()
	write := func(name, body string) string {
		p := filepath.Join(work, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("v1/a.yml", fmt.Sprintf(btRuleA, "low"))
	write("v1/b.yml", btRuleB)
	write("v2/a.yml", fmt.Sprintf(btRuleA, "high"))
	write("v2/c.yml", btRuleC)
	const silence = "alerts:\n  silences:\n    - {detectors: [auth_failure_spike], until: 2099-01-01T00:00:00Z, reason: noisy during the migration}\n"

	// the reference: two separate replays of the files, compared by id
	oldRules := fmt.Sprintf("rules: {paths: [%q]}\n", filepath.Join(work, "v1"))
	newRules := fmt.Sprintf("rules: {paths: [%q]}\n", filepath.Join(work, "v2")) + silence
	oldF, stderr, code := replayBin(t, "--config", write("ref-old.yaml", oldRules), data)
	if code != 0 {
		t.Fatal(stderr)
	}
	newF, stderr, code := replayBin(t, "--config", write("ref-new.yaml", newRules), data)
	if code != 0 {
		t.Fatal(stderr)
	}
	var ac alert.Config
	ac.Silences = []alert.SilenceConfig{{Match: alert.Match{Detectors: []string{schema.DetectorAuthFailureSpike}}, Until: time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)}}
	kept := newF[:0]
	silenced := 0
	for _, f := range newF {
		if ac.Silenced(f, f.Time) {
			silenced++
			continue
		}
		kept = append(kept, f)
	}
	newF = kept
	if silenced == 0 {
		t.Fatal("reference: the silence mutes nothing: the test exercises nothing")
	}

	backends := []struct {
		name    string
		storage func(t *testing.T, db string) (string, store.Config)
	}{
		{"chdb", func(t *testing.T, db string) (string, store.Config) {
			path := chtest.CHDBPath(t)
			c := store.Config{Backend: store.BackendCHDB, Database: db}
			c.CHDB.Path = path
			return fmt.Sprintf("storage: {backend: chdb, database: %s, chdb: {path: %q}}\n", db, path), c
		}},
		{"clickhouse-server", func(t *testing.T, db string) (string, store.Config) {
			srv := chtest.StartServer(t)
			c := store.Config{Backend: store.BackendClickHouse, Database: db}
			c.ClickHouse.Addr = []string{srv.Addr}
			return fmt.Sprintf("storage: {backend: clickhouse, database: %s, clickhouse: {addr: [%q]}}\n", db, srv.Addr), c
		}},
	}
	for _, bc := range backends {
		t.Run(bc.name, func(t *testing.T) {
			storage, scfg := bc.storage(t, "backtest_week")
			stored := storeWeek(t, scfg, data)
			oldCfg := write(bc.name+"/old.yaml", oldRules+storage)
			newCfg := write(bc.name+"/new.yaml", newRules+storage)
			// the generated week ends in early 2026: --since is a time,
			// --history reaches back over the whole week
			since := "2026-01-08T00:00:00Z"
			var out, errb bytes.Buffer
			if code := run([]string{"backtest", "--config", newCfg, "--against", oldCfg, "--since", since, "--history", "30d", "--format", "json"}, nil, &out, &errb); code != 0 {
				t.Fatalf("backtest: exit %d: %s", code, errb.String())
			}
			if !bytes.Contains(errb.Bytes(), []byte(fmt.Sprintf("backtest: %d stored events", stored))) {
				t.Errorf("backtest read other than the %d stored events: %s", stored, errb.String())
			}
			var rep backtestReport
			if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
				t.Fatalf("%v: %s", err, out.String())
			}
			from, _ := time.Parse(time.RFC3339, since)
			want := diffFindings(oldF, newF, from)
			if rep.Old != want.Old || rep.New != want.New || rep.Unchange != want.Unchange {
				t.Errorf("totals: from the store %d/%d/%d, replays %d/%d/%d", rep.Old, rep.New, rep.Unchange, want.Old, want.New, want.Unchange)
			}
			byKey := map[string]backtestGroup{}
			for _, g := range want.Groups {
				byKey[g.Key] = g
			}
			for _, k := range []string{"sigma: Redis secret read", "sigma: Vault login", "sigma: Worker reads a secret", schema.DetectorAuthFailureSpike} {
				if _, ok := byKey[k]; !ok {
					t.Errorf("reference: no difference for %s: %+v", k, want.Groups)
				}
			}
			if g := byKey[schema.DetectorAuthFailureSpike]; g.Gone == 0 || g.New != 0 {
				t.Errorf("reference: the silence shows as %+v", g)
			}
			if len(rep.Groups) != len(want.Groups) {
				t.Errorf("from the store %d groups, replays %d: %+v", len(rep.Groups), len(want.Groups), rep.Groups)
			}
			for _, g := range rep.Groups {
				w, ok := byKey[g.Key]
				if !ok || g.New != w.New || g.Gone != w.Gone || g.Changed != w.Changed {
					t.Errorf("%s: from the store new %d gone %d changed %d, replays %+v", g.Key, g.New, g.Gone, g.Changed, w)
				}
			}
		})
	}
}
