package store

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	chschema "auditwatch/schema/clickhouse"
	"auditwatch/store/chtest"
)

// TestMigrateConcurrently: two processes starting together against one
// ClickHouse server (the Kafka detect and alert stages both store) migrate
// a fresh database at the same time. Both succeed, each migration is
// recorded, and the tables take rows. Without waiting for the other
// process's record, one of them failed on a table the other had renamed
// (seen in the stage tests: "0018_principal_events statement 2: Table
// events_by_principal doesn't exist").
func TestMigrateConcurrently(t *testing.T) {
	srv := chtest.StartServer(t)
	for round := range 4 {
		db := fmt.Sprintf("aw_conc_%d", round)
		cfg := Config{Backend: BackendClickHouse, Database: db}
		cfg.ClickHouse.Addr = []string{srv.Addr}
		a, b := openRW(t, cfg), openRW(t, cfg)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, st := range []*DB{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = st.Migrate(context.Background())
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d: process %d: %v", round, i+1, err)
			}
		}
		applied, err := prepareMigrations(context.Background(), a.b, a.Dialect())
		if err != nil {
			t.Fatal(err)
		}
		ms, err := chschema.Migrations(a.Dialect())
		if err != nil {
			t.Fatal(err)
		}
		if len(applied) != len(ms) {
			t.Errorf("round %d: %d migrations recorded, want %d", round, len(applied), len(ms))
		}
		evs, fs := known(time.Now().UTC())
		if err := b.InsertEvents(context.Background(), evs); err != nil {
			t.Fatalf("round %d: insert after concurrent migrations: %v", round, err)
		}
		if err := a.InsertFindings(context.Background(), fs); err != nil {
			t.Fatalf("round %d: insert findings: %v", round, err)
		}
	}
}
