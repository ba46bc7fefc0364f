package store

import (
	"context"
	"os"
	"testing"
)

func TestZZScratchLoad(t *testing.T) {
	addr := os.Getenv("SCRATCH_ADDR")
	if addr == "" {
		t.Skip()
	}
	c := Config{Backend: BackendClickHouse, Database: "aw_perf"}
	c.ClickHouse.Addr = []string{addr}
	st := openRW(t, c)
	if err := st.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, s := loadGenerated(t, st, benchRows())
	t.Logf("sample %+v", s)
}
