package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"auditwatch/internal/lifecycle"
	"auditwatch/schema"
	"auditwatch/store"
)

func init() {
	register("load", command{
		summary: "store normalized events (JSON lines of schema.Event, e.g. from normalize) in the configured storage",
		run:     runLoad,
	})
}

// maxLoadLine bounds one JSON line.
const maxLoadLine = 4 << 20

func loadMain(ctx context.Context, j *lifecycle.Job, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("load", stderr, "[flags] [file ...]", commands["load"].summary)
	var sf storageFlags
	sf.register(fs)
	migrate := fs.Bool("migrate", true, "create or update the schema first")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: auditwatch load [flags] [file ...]   (no file or - reads stdin)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	cfg, err := sf.load()
	if err != nil {
		fmt.Fprintln(stderr, "auditwatch load:", err)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := jobOpen(j, "store", func(ctx context.Context) (store.Store, error) { return store.Open(ctx, cfg, logger, nil) }, store.Store.Close)
	if err != nil {
		fmt.Fprintln(stderr, "auditwatch load:", err)
		return 1
	}
	if *migrate {
		if err := st.Migrate(ctx); err != nil {
			fmt.Fprintln(stderr, "auditwatch load:", err)
			return 1
		}
	}
	w, err := store.NewWriter(st, cfg.Batch, logger, nil)
	if err != nil {
		fmt.Fprintln(stderr, "auditwatch load:", err)
		return 1
	}
	inputs := fs.Args()
	if len(inputs) == 0 {
		inputs = []string{"-"}
	}
	var stored, rejected int
	recErrs := newCappedWriter(stderr, "auditwatch load", maxRecordErrors)
	defer recErrs.Summary()
	for _, in := range inputs {
		var r io.Reader = stdin
		name := "stdin"
		if in != "-" {
			f, err := os.Open(in)
			if err != nil {
				fmt.Fprintln(stderr, "auditwatch load:", err)
				rejected++
				continue
			}
			defer f.Close()
			r, name = f, in
		}
		s, rej, err := loadStream(ctx, w, r, name, recErrs)
		stored += s
		rejected += rej
		if err != nil {
			fmt.Fprintln(stderr, "auditwatch load:", err)
			_ = w.Close(ctx)
			return 1
		}
	}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := w.Close(cctx); err != nil {
		fmt.Fprintln(stderr, "auditwatch load: flush:", err)
		return 1
	}
	fmt.Fprintf(stdout, "stored %d events (%d rejected) in %s database %s\n", stored, rejected, cfg.Backend, cfg.Database)
	if rejected > 0 {
		return 1
	}
	return 0
}

// loadStream reads JSON lines; a bad line is reported with its position
// and skipped, the events around it are stored.
func loadStream(ctx context.Context, w *store.Writer, r io.Reader, name string, stderr io.Writer) (stored, rejected int, err error) {
	br := bufio.NewReaderSize(r, 64<<10)
	batch := make([]schema.Event, 0, 1024)
	for line := 1; ; line++ {
		raw, rerr := br.ReadSlice('\n')
		if errors.Is(rerr, bufio.ErrBufferFull) {
			big := append([]byte(nil), raw...)
			for errors.Is(rerr, bufio.ErrBufferFull) && len(big) <= maxLoadLine {
				raw, rerr = br.ReadSlice('\n')
				big = append(big, raw...)
			}
			if len(big) > maxLoadLine {
				fmt.Fprintf(stderr, "%s:%d: line longer than %d bytes, skipped\n", name, line, maxLoadLine)
				rejected++
				for errors.Is(rerr, bufio.ErrBufferFull) {
					_, rerr = br.ReadSlice('\n')
				}
				raw = nil
			} else {
				raw = big
			}
		}
		if t := bytes.TrimSpace(raw); len(t) > 0 {
			var ev schema.Event
			if jerr := json.Unmarshal(t, &ev); jerr != nil {
				fmt.Fprintf(stderr, "%s:%d: %v\n", name, line, jerr)
				rejected++
			} else if ev.ID == "" || ev.Time.IsZero() {
				fmt.Fprintf(stderr, "%s:%d: event has no id or time, skipped\n", name, line)
				rejected++
			} else {
				batch = append(batch, ev)
			}
		}
		if len(batch) == cap(batch) || (rerr != nil && len(batch) > 0) {
			if err := w.Add(ctx, batch); err != nil {
				return stored, rejected, err
			}
			stored += len(batch)
			batch = batch[:0]
		}
		if rerr == io.EOF {
			return stored, rejected, nil
		}
		if rerr != nil {
			return stored, rejected, fmt.Errorf("%s:%d: %w", name, line, rerr)
		}
	}
}
