package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"auditwatch/config"
	"auditwatch/incident"
	"auditwatch/internal/configcheck"
	"auditwatch/pipeline"
	"auditwatch/schema"
	"auditwatch/sigma"
	"auditwatch/store"
	"auditwatch/stream"
)

// rulesConfig decodes the rules: section (zero Config when absent).
func rulesConfig(cfg *config.Config) (sigma.Config, error) {
	c, err := sigma.DecodeConfig(&cfg.Rules)
	if err != nil {
		return c, fmt.Errorf("config: %w", err)
	}
	return c, nil
}

// keepRaw reports whether sources must keep each event's original record:
// raw_records (the default) stores it where something stores events, Sigma
// rules read it. Without a store (storage off or absent, embedded stream)
// nothing reads it, and copying every record was most of what `run` did
// beyond `replay`.
func keepRaw(l *configcheck.Loaded) bool {
	cfg := l.Config
	if cfg.KeepRawRecords() && rawStored(l) {
		return true
	}
	if cfg.Rules.Kind == 0 {
		return false
	}
	c, err := rulesConfig(cfg)
	return err == nil && c.Enabled()
}

// rawStored reports whether events leave the process or are stored: on
// Kafka the events topic carries the record to whatever stores it; on the
// embedded stream only this process's store does.
func rawStored(l *configcheck.Loaded) bool {
	if l.Config.Stream.Type == stream.TypeKafka {
		return true
	}
	return l.Storage != nil && l.Storage.Backend != store.BackendOff
}

// stripRaw drops the original records before an event sink (raw_records:
// false with Sigma rules on: the rules read them, storage keeps none).
type stripRaw struct{ next pipeline.EventSink }

func (s stripRaw) WriteEvents(ctx context.Context, evs []schema.Event) error {
	out := make([]schema.Event, len(evs))
	for i := range evs {
		out[i] = evs[i]
		out[i].Raw = nil
	}
	return s.next.WriteEvents(ctx, out)
}

// rulesRuntime holds the loaded Sigma rule set of a daemon and replaces it
// on SIGHUP and when a rule file changes. A set with an invalid rule is
// rejected whole: the previous set keeps running, and the metric and the
// log line name the file and line.
type rulesRuntime struct {
	cfg sigma.Config
	log *slog.Logger

	mu   sync.Mutex
	set  *sigma.Set
	dets []*sigma.Detector
	sig  string // fingerprint of the rule files (names, sizes, mtimes)

	loaded   prometheus.Gauge
	reloads  *prometheus.CounterVec
	rejected *prometheus.GaugeVec
}

// maxRejectedSeries bounds the series of auditwatch_rules_rejected: the
// first invalid rules of a rejected set, by file and line.
const maxRejectedSeries = 8

func newRulesRuntime(cfg sigma.Config, log *slog.Logger, reg prometheus.Registerer) (*rulesRuntime, error) {
	rt := &rulesRuntime{cfg: cfg, log: log,
		loaded: prometheus.NewGauge(prometheus.GaugeOpts{Name: "auditwatch_rules_loaded",
			Help: "Sigma rules in the running set (single-event and correlation)."}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "auditwatch_rules_reloads_total",
			Help: "Sigma rule set reloads, by result (applied, rejected, unchanged)."}, []string{"result"}),
		rejected: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "auditwatch_rules_rejected",
			Help: "1 for each invalid rule (file, line; the first 8) while the rule files on disk are rejected and the previous set keeps running; one series with empty labels at 0 otherwise."},
			[]string{"file", "line"}),
	}
	rt.rejected.WithLabelValues("", "").Set(0)
	sum := func(pick func(u, n, l, r, e int64) int64) func() float64 {
		return func() float64 {
			rt.mu.Lock()
			defer rt.mu.Unlock()
			var t int64
			for _, d := range rt.dets {
				t += pick(d.Counters())
			}
			return float64(t)
		}
	}
	counters := []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "auditwatch_rules_records_unreadable_total",
			Help: "Events whose original record the Sigma rules could not read."}, sum(func(u, _, _, _, _ int64) int64 { return u })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "auditwatch_rules_records_missing_total",
			Help: "Events that carried no original record (the Sigma rules skip them)."}, sum(func(_, n, _, _, _ int64) int64 { return n })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "auditwatch_rules_correlation_late_total",
			Help: "Correlation inputs older than their group's window (counted, not used)."}, sum(func(_, _, l, _, _ int64) int64 { return l })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "auditwatch_rules_correlation_repeated_total",
			Help: "Correlation inputs seen before (a replay after a restart), not counted twice."}, sum(func(_, _, _, r, _ int64) int64 { return r })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "auditwatch_rules_correlation_evictions_total",
			Help: "Correlation groups dropped to stay within rules.max_groups."}, sum(func(_, _, _, _, e int64) int64 { return e })),
	}
	if reg != nil {
		for _, c := range append([]prometheus.Collector{rt.loaded, rt.reloads, rt.rejected}, counters...) {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("rules metrics: %w", err)
			}
		}
	}
	set, sig, err := rt.load()
	if err != nil {
		return nil, err
	}
	rt.set, rt.sig = set, sig
	rt.loaded.Set(float64(len(set.Rules)))
	single, corr := set.Stats()
	log.Info("sigma rules loaded", "rules", single, "correlations", corr, "skipped", len(set.Problems))
	for _, p := range set.Problems {
		log.Warn("sigma rule skipped", "file", p.File, "line", p.Line, "reason", p.Msg)
	}
	return rt, nil
}

func (rt *rulesRuntime) load() (*sigma.Set, string, error) {
	sig, err := rulesFingerprint(rt.cfg.Paths)
	if err != nil {
		return nil, "", err
	}
	set, err := sigma.Load(rt.cfg.Paths, rt.cfg.Options())
	if err != nil {
		return nil, sig, err
	}
	return set, sig, nil
}

// rulesFingerprint names every rule file with its size and mtime.
func rulesFingerprint(paths []string) (string, error) {
	files, err := sigma.Files(paths)
	if err != nil {
		return "", err
	}
	sort.Strings(files)
	var b strings.Builder
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			return "", fmt.Errorf("rules: %w", err)
		}
		fmt.Fprintf(&b, "%s\x00%d\x00%d\n", f, st.Size(), st.ModTime().UnixNano())
	}
	return b.String(), nil
}

// wrap puts the rule set beside a detector engine.
func (rt *rulesRuntime) wrap(inner sigma.Engine) (*sigma.Detector, error) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	d, err := sigma.NewDetector(inner, rt.set)
	if err != nil {
		return nil, err
	}
	d.Configure(rt.cfg)
	rt.dets = append(rt.dets, d)
	return d, nil
}

// reload loads the rule files again; force reloads even when no file
// changed (SIGHUP).
func (rt *rulesRuntime) reload(force bool) {
	sig, err := rulesFingerprint(rt.cfg.Paths)
	rt.mu.Lock()
	same := err == nil && sig == rt.sig
	rt.mu.Unlock()
	if same && !force {
		return
	}
	set, sig, err := rt.load()
	if err != nil {
		rt.reloads.WithLabelValues("rejected").Inc()
		rt.rejected.Reset()
		var le *sigma.LoadError
		if errors.As(err, &le) && len(le.Problems) > 0 {
			for i, p := range le.Problems {
				rt.log.Error("sigma rule set rejected; the previous set keeps running", "file", p.File, "line", p.Line, "rule", p.Rule, "reason", p.Msg)
				if i < maxRejectedSeries {
					rt.rejected.WithLabelValues(p.File, strconv.Itoa(p.Line)).Set(1)
				}
			}
		} else {
			rt.log.Error("sigma rule set rejected; the previous set keeps running", "err", err)
			rt.rejected.WithLabelValues("", "").Set(1)
		}
		// do not retry the same broken files every tick
		rt.mu.Lock()
		rt.sig = sig
		rt.mu.Unlock()
		return
	}
	rt.rejected.Reset()
	rt.rejected.WithLabelValues("", "").Set(0)
	rt.mu.Lock()
	rt.set, rt.sig = set, sig
	for _, d := range rt.dets {
		d.SetRules(set)
	}
	rt.mu.Unlock()
	rt.loaded.Set(float64(len(set.Rules)))
	rt.reloads.WithLabelValues("applied").Inc()
	single, corr := set.Stats()
	rt.log.Info("sigma rules reloaded", "rules", single, "correlations", corr, "skipped", len(set.Problems))
}

// watch reloads on SIGHUP and when the rule files change, until ctx ends.
func (rt *rulesRuntime) watch(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	iv := rt.cfg.WatchInterval.D()
	if iv <= 0 {
		iv = 5 * time.Second
	}
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			rt.reload(true)
		case <-t.C:
			rt.reload(false)
		}
	}
}

// withRules wraps a detector opener so each engine runs the daemon's Sigma
// rules beside it (unchanged when no rules are configured). It starts the
// reload watcher, which stops with ctx.
func (d *daemon) withRules(ctx context.Context, open pipeline.OpenDetector) (pipeline.OpenDetector, error) {
	rc, err := rulesConfig(d.cfg)
	if err != nil {
		return nil, err
	}
	if !rc.Enabled() {
		return open, nil
	}
	rt, err := newRulesRuntime(rc, d.log.With("component", "rules"), d.reg)
	if err != nil {
		return nil, err
	}
	go rt.watch(ctx)
	return func(p int, fresh bool) (pipeline.Detector, error) {
		det, err := open(p, fresh)
		if err != nil {
			return nil, err
		}
		// The rules run inside the correlation stage, so their findings
		// join incidents like every other.
		stage, correlated := det.(*incident.Stage)
		if correlated {
			det = stage.Unwrap()
		}
		sd, err := rt.wrap(det)
		if err != nil {
			det.Close()
			return nil, err
		}
		if correlated {
			return incident.Wrap(sd, stage.Config())
		}
		return sd, nil
	}, nil
}
