package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"auditwatch/alert"
	"auditwatch/config"
	"auditwatch/ingest/dir"
	"auditwatch/ingest/filetail"
	"auditwatch/ingest/lookup"
	"auditwatch/ingest/s3sqs"
	"auditwatch/ingest/socket"
	"auditwatch/ingest/source"
	"auditwatch/store"
)

// daemon is what every long-running stage command shares: its config,
// logger, metrics registry and the HTTP endpoint.
type daemon struct {
	cfg    *config.Config
	log    *slog.Logger
	reg    *prometheus.Registry
	ready  atomic.Bool
	srv    *http.Server
	ln     net.Listener
	stderr io.Writer
	// stdout is set by commands that print for a person (console findings).
	stdout io.Writer

	routerOnce, routerClose sync.Once
	routerV                 *alert.Router
	routerErr               error

	storeOnce, storeClose sync.Once
	storeDB               store.Store
	storeW                *store.Writer
	storeQS               *store.QueryServer
	storeErr              error
}

// newDaemon parses `--config FILE`, loads the config and sets up logging
// and metrics.
func newDaemon(name string, args []string, stderr io.Writer) (*daemon, int) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "config `FILE` (YAML)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, 0
		}
		return nil, 2
	}
	if *path == "" || fs.NArg() > 0 {
		fmt.Fprintf(stderr, "usage: auditwatch %s --config FILE\n", name)
		return nil, 2
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintf(stderr, "auditwatch %s: %v\n", name, err)
		return nil, 2
	}
	d := &daemon{cfg: cfg, log: cfg.Logging.Logger(stderr).With("stage", name), reg: prometheus.NewRegistry(), stderr: stderr}
	d.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return d, 0
}

// serve starts /metrics, /healthz and /readyz when http.listen is set.
func (d *daemon) serve() error {
	if d.cfg.HTTP.Listen == "" {
		return nil
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(d.reg, promhttp.HandlerOpts{Registry: d.reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !d.ready.Load() {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	ln, err := net.Listen("tcp", d.cfg.HTTP.Listen)
	if err != nil {
		return fmt.Errorf("http listen: %w", err)
	}
	d.ln = ln
	d.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go d.srv.Serve(ln)
	d.log.Info("serving metrics and health", "addr", ln.Addr().String())
	return nil
}

func (d *daemon) close(ctx context.Context) {
	if d.srv != nil {
		d.srv.Shutdown(ctx)
	}
}

// parserFor returns the parser of a source format.
func parserFor(format string) (source.Parser, error) {
	if format == "jsonl" {
		return source.JSONLines, nil
	}
	return auditParser(format)
}

// buildSources builds the configured sources.
func buildSources(cfg *config.Config, cp source.Checkpoints, log *slog.Logger, reg prometheus.Registerer) ([]source.Source, error) {
	m := source.NewMetrics(reg)
	// Rejected raw records go to one capped file in the state directory.
	if q, err := source.OpenQuarantine(filepath.Join(cfg.State.Dir, "quarantine", "rejected.jsonl"), 0, reg); err != nil {
		log.Warn("no quarantine file for rejected records", "err", err)
	} else {
		m.Quarantine = q
	}
	var out []source.Source
	var errs []error
	for i, sc := range cfg.Sources {
		parse, err := parserFor(sc.Format)
		if err != nil {
			errs = append(errs, fmt.Errorf("sources[%d] %s: %w", i, sc.Name, err))
			continue
		}
		var s source.Source
		switch sc.Type {
		case config.SourceDir:
			s, err = dir.New(*sc.Dir, sc.Name, parse, cp, log, m)
		case config.SourceFileTail:
			s, err = filetail.New(*sc.FileTail, sc.Name, parse, cp, log, m)
		case config.SourceSocket:
			s, err = socket.New(*sc.Socket, sc.Name, parse, cp, log, m, reg)
		case config.SourceLookup:
			s, err = lookup.New(*sc.Lookup, sc.Name, parse, cp, log, m, reg)
		case config.SourceS3SQS:
			s, err = s3sqs.New(*sc.S3SQS, sc.Name, parse, log, m, reg)
		default:
			err = fmt.Errorf("unknown type %q", sc.Type)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("sources[%d] %s: %w", i, sc.Name, err))
			continue
		}
		out = append(out, s)
	}
	return out, errors.Join(errs...)
}

// stateDir is a path inside the state directory.
func (d *daemon) stateDir(parts ...string) string {
	return filepath.Join(append([]string{d.cfg.State.Dir}, parts...)...)
}
