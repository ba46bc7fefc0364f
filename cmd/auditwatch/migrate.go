package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"auditwatch/internal/lifecycle"
	"auditwatch/store"
)

func init() {
	register("migrate", command{
		summary: "create or update the storage schema (idempotent); --drop-expired applies retention",
		run:     runMigrate,
	})
}

func migrateMain(ctx context.Context, j *lifecycle.Job, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("migrate", stderr, "[flags]", commands["migrate"].summary)
	var sf storageFlags
	sf.register(fs)
	drop := fs.Bool("drop-expired", false, "also drop day partitions older than storage.retention_days")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	cfg, err := sf.load()
	if err != nil {
		fmt.Fprintln(stderr, "auditwatch migrate:", err)
		return 2
	}
	if cfg.Backend == store.BackendOff {
		fmt.Fprintln(stdout, "storage is off; nothing to migrate")
		return 0
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := jobOpen(j, "store", func(ctx context.Context) (store.Store, error) { return store.Open(ctx, cfg, logger, nil) }, store.Store.Close)
	if err != nil {
		fmt.Fprintln(stderr, "auditwatch migrate:", err)
		return 1
	}
	if err := st.Migrate(ctx); err != nil {
		fmt.Fprintln(stderr, "auditwatch migrate:", err)
		return 1
	}
	fmt.Fprintf(stdout, "storage schema up to date (backend %s, database %s)\n", cfg.Backend, cfg.Database)
	if *drop {
		db := st.(*store.DB)
		dropped, err := db.DropExpired(ctx, time.Now())
		if err != nil {
			fmt.Fprintln(stderr, "auditwatch migrate:", err)
			return 1
		}
		fmt.Fprintf(stdout, "dropped %d expired partitions\n", len(dropped))
	}
	return 0
}
