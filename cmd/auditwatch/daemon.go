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
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"auditwatch/alert"
	"auditwatch/config"
	"auditwatch/detect"
	"auditwatch/ingest/dir"
	"auditwatch/ingest/filetail"
	"auditwatch/ingest/lookup"
	"auditwatch/ingest/s3sqs"
	"auditwatch/ingest/socket"
	"auditwatch/ingest/source"
	"auditwatch/internal/configcheck"
	"auditwatch/internal/lifecycle"
	"auditwatch/store"
)

// daemon is what every long-running stage command shares: its config,
// logger, metrics registry and the HTTP endpoint.
type daemon struct {
	cfg *config.Config
	// conf is cfg with every section decoded and validated.
	conf *configcheck.Loaded
	// mgr runs the command's long-running components.
	mgr    *lifecycle.Manager
	log    *slog.Logger
	reg    *prometheus.Registry
	ready  atomic.Bool
	stderr io.Writer
	// stdout is set by commands that print for a person (console findings).
	stdout io.Writer

	// statePool is the detectors' state budget every engine of the
	// process shares (statePoolFor).
	poolOnce  sync.Once
	statePool *detect.Pool

	routerOnce, routerClose sync.Once
	routerV                 *alert.Router
	routerErr               error

	storeOnce, storeClose sync.Once
	storeDB               store.Store
	storeW                *store.Writer
	storeQS               *store.QueryServer
	storeErr              error

	// storeStages are the store consumers (Kafka stages), listed in
	// /readyz.
	statusMu     sync.Mutex
	storeStages  []interface{ WriteStatus(io.Writer) }
	storeStatusW *store.Writer // the writer, once opened
}

// newDaemon parses `--config FILE`, loads the config through the one
// load-and-validate path (configcheck.Load: every section, as
// check-config) and sets up logging and metrics.
func newDaemon(name string, args []string, stderr io.Writer) (*daemon, int) {
	fs := newFlagSet(name, stderr, "--config FILE", commands[name].summary)
	path := configFlag(fs)
	if code, done := parseFlags(fs, args); done {
		return nil, code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "auditwatch %s: unexpected argument %q\n", name, fs.Arg(0))
		fs.Usage()
		return nil, 2
	}
	l, code := loadConfig(name, *path, stderr)
	if l == nil {
		return nil, code
	}
	d := &daemon{cfg: l.Config, conf: l, log: l.Logging.Logger(stderr).With("stage", name), reg: prometheus.NewRegistry(), stderr: stderr}
	// go_gc_heap_live_bytes (the heap marked live by the last collection)
	// beside the defaults: with GOGC 400 the heap in use swings up to 5x
	// the live heap, so only the live heap shows what the process keeps.
	d.reg.MustRegister(collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(
		collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/gc/heap/live:bytes$`)})),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return d, 0
}

// daemonCommand is the entry of a long-running stage command: it loads
// the config as every command does (newDaemon), runs body and logs its
// failure; console findings go to stdout only where console is true.
func daemonCommand(name string, body func(d *daemon, ctx context.Context) error, console bool) commandFunc {
	return func(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
		d, code := newDaemon(name, args, stderr)
		if d == nil {
			return code
		}
		if console {
			d.stdout = stdout
		}
		if err := body(d, ctx); err != nil {
			d.log.Error(name+" failed", "err", err)
			return 1
		}
		return 0
	}
}

// configFlag registers --config on fs.
func configFlag(fs *flag.FlagSet) *string {
	return fs.String("config", "", "config `FILE` (YAML); default: $"+configcheck.EnvConfig+", else ./auditwatch.yaml, else /etc/auditwatch/config.yaml")
}

// configSearch is where commands look for a config file that neither
// --config nor $AUDITWATCH_CONFIG names (tests point it elsewhere).
var configSearch = configcheck.Search

// discoverConfig returns the config file a command uses (see
// configcheck.Discover) and which rule chose it.
func discoverConfig(flag string) (path, from string, err error) {
	return configcheck.Discover(flag, os.Getenv, configSearch)
}

// loadConfig finds the config file (--config, $AUDITWATCH_CONFIG,
// ./auditwatch.yaml, /etc/auditwatch/config.yaml) and loads it. On
// failure it prints every problem as file:line: path: message and returns
// the exit code: 2 for a missing or unreadable file, 1 for an invalid one.
func loadConfig(name, flagPath string, stderr io.Writer) (*configcheck.Loaded, int) {
	path, _, err := discoverConfig(flagPath)
	if err != nil {
		fmt.Fprintf(stderr, "auditwatch %s: %v\n", name, err)
		return nil, 2
	}
	l, err := configcheck.Load(path)
	var ce *configcheck.Error
	if errors.As(err, &ce) {
		for _, p := range ce.Problems {
			fmt.Fprintln(stderr, p.In(path))
		}
		fmt.Fprintf(stderr, "auditwatch %s: %s: %d config problem%s (check with: auditwatch check-config %s)\n", name, path, len(ce.Problems), plural(len(ce.Problems)), path)
		return nil, 1
	}
	if err != nil {
		fmt.Fprintf(stderr, "auditwatch %s: %v\n", name, err)
		return nil, 2
	}
	return l, 0
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// httpComponent serves /metrics, /healthz and /readyz on http.listen. It
// starts first and stops last, so health and metrics stay up while the
// other components stop.
func (d *daemon) httpComponent() lifecycle.Component {
	var ln net.Listener
	var srv *http.Server
	return lifecycle.Component{
		Name: "http",
		Start: func(context.Context) error {
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
				d.writeAlertStatus(w)
				d.writeStoreStatus(w)
			})
			var err error
			if ln, err = net.Listen("tcp", d.cfg.HTTP.Listen); err != nil {
				return fmt.Errorf("http listen: %w", err)
			}
			srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
			d.log.Info("serving metrics and health", "addr", ln.Addr().String())
			return nil
		},
		Run: func(ctx context.Context) error {
			errc := make(chan error, 1)
			go func() { errc <- srv.Serve(ln) }()
			select {
			case err := <-errc:
				return fmt.Errorf("http serve: %w", err)
			case <-ctx.Done():
			}
			sctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			srv.Shutdown(sctx)
			<-errc
			return nil
		},
	}
}

// startHTTP starts the lifecycle manager with the HTTP endpoint (when
// http.listen is set), so /healthz and /metrics answer while the command
// opens its stores and streams (/readyz says "starting" until all runs).
// The returned func stops it when the command returns before
// runComponents (a set-up error); after runComponents it does nothing.
func (d *daemon) startHTTP(ctx context.Context) (func(), error) {
	d.mgr = &lifecycle.Manager{ShutdownTimeout: d.cfg.ShutdownTimeout.D(), Logger: d.log, Ready: d.ready.Store}
	stop := func() { d.mgr.Stop(nil) }
	if d.cfg.HTTP.Listen == "" {
		return stop, nil
	}
	if err := d.mgr.Start(ctx, d.httpComponent()); err != nil {
		return stop, err
	}
	return stop, nil
}

// runComponents runs cs under the one lifecycle manager, after the HTTP
// endpoint: started in order, ready once all have started, stopped in
// reverse order within shutdown_timeout when ctx ends or one fails.
func (d *daemon) runComponents(ctx context.Context, cs ...lifecycle.Component) error {
	if d.mgr == nil {
		stop, err := d.startHTTP(ctx)
		if err != nil {
			stop()
			return err
		}
	}
	if err := d.mgr.Start(ctx, cs...); err != nil {
		return d.mgr.Stop(err)
	}
	return d.mgr.Wait(ctx)
}

// sourceComponents makes one component per source, publishing to pub. A
// source that has read everything may finish; the others keep running.
func sourceComponents(srcs []source.Source, pub source.Publisher) []lifecycle.Component {
	var cs []lifecycle.Component
	for _, s := range srcs {
		cs = append(cs, lifecycle.Component{
			Name:      "source " + s.Name(),
			Run:       func(ctx context.Context) error { return s.Run(ctx, pub) },
			MayFinish: true,
		})
	}
	return cs
}

// parserFor returns the parser of a source format; raw keeps each
// event's original record (for Sigma rules).
func parserFor(format string, raw bool) (source.Parser, error) {
	if format == "jsonl" {
		return source.JSONLines, nil
	}
	return auditParserRaw(format, raw)
}

// buildSources builds the configured sources of the loaded config.
func buildSources(l *configcheck.Loaded, cp source.Checkpoints, log *slog.Logger, reg prometheus.Registerer) ([]source.Source, error) {
	cfg := l.Config
	m := source.NewMetrics(reg)
	// Rejected raw records go to one capped file (quarantine:), by
	// default in the state directory.
	qc := l.Quarantine
	qc.DefaultPath(cfg.State.Dir)
	if qc.Path != source.QuarantineOff {
		if q, err := source.OpenQuarantine(qc.Path, qc.MaxBytes, reg); err != nil {
			log.Warn("no quarantine file for rejected records", "err", err)
		} else {
			m.Quarantine = q
		}
	}
	var out []source.Source
	var errs []error
	for i, sc := range cfg.Sources {
		parse, err := parserFor(sc.Format, keepRaw(l))
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
