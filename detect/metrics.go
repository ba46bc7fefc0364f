package detect

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	events, late, firstSeenRevised, checkpoints, checkpointErrors prometheus.Counter
	skew                                                          *prometheus.CounterVec
	checkpointSeconds                                             prometheus.Histogram
	findings                                                      *prometheus.CounterVec
	evictions, spillDrops, expired                                *prometheus.CounterVec
	findingBy                                                     map[string]prometheus.Counter
	evictBy, dropBy                                               map[string]prometheus.Counter
	learningEvictions                                             prometheus.Counter
	oneOffDrops                                                   *prometheus.CounterVec
	oneOffBy                                                      map[string]prometheus.Counter
	stateBytes, held                                              prometheus.Gauge
	mem                                                           *memBudget
}

// register registers c, or returns the collector already registered under
// the same name (a second engine in one process shares the series).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if old, ok := are.ExistingCollector.(C); ok {
				return old
			}
		}
	}
	return c
}

func newMetrics(reg prometheus.Registerer) *metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := &metrics{
		events: register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: "auditwatch_detect_events_total",
			Help: "Events given to the detection engine."})),
		late: register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: "auditwatch_detect_late_events_total",
			Help: "Events that arrived later than the allowed lateness (processed, findings marked late)."})),
		firstSeenRevised: register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: "auditwatch_detect_first_seen_revised_total",
			Help: "Events that arrived after a later event of their principal and moved its first-seen time earlier (decisions before used the later time)."})),
		skew: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "auditwatch_detect_time_skew_events_total",
			Help: "Events dated more than max_ahead after the wall clock (ahead) or more than max_behind behind their source's watermark (behind); processed and flagged."}, []string{"direction"})),
		checkpoints: register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: "auditwatch_detect_checkpoints_total",
			Help: "Detector state checkpoints committed."})),
		checkpointErrors: register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: "auditwatch_detect_checkpoint_errors_total",
			Help: "Detector state checkpoints that failed."})),
		checkpointSeconds: register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{Name: "auditwatch_detect_checkpoint_seconds",
			Help: "Time to commit one checkpoint.", Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10)})),
		findings: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "auditwatch_detect_findings_total",
			Help: "Findings raised, by detector."}, []string{"detector"})),
		evictions: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "auditwatch_detect_state_evictions_total",
			Help: "Entries evicted from a bounded in-memory state table, by table."}, []string{"table"})),
		spillDrops: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "auditwatch_detect_state_spill_dropped_total",
			Help: "Evicted unsaved entries dropped before a checkpoint could save them (state lost), by table."}, []string{"table"})),
		expired: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "auditwatch_detect_state_expired_total",
			Help: "Saved state entries deleted after idling past their retention, by table."}, []string{"table"})),
		learningEvictions: register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: "auditwatch_detect_state_learning_evictions_total",
			Help: "State entries of principals still in their learning period evicted from memory because the memory budget was spent (reloaded from the store when needed)."})),
		stateBytes: register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Name: "auditwatch_detect_state_bytes",
			Help: "Estimated bytes of detector state held in memory (tables and unsaved spill), against detectors.memory_budget."})),
		held: register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Name: "auditwatch_detect_state_held_entries",
			Help: "Unsaved entries of new keys (principals not saved before their event, addresses of anonymous failures) that checkpoints hold in memory instead of writing, beyond 1,024 per table and checkpoint, 64 while the table is full (a flood); a crash loses them: such a principal's next event counts as its first."})),
		oneOffDrops: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "auditwatch_detect_state_one_off_dropped_total",
			Help: "Unsaved entries of new keys (principals not saved before their event, or none) evicted before a checkpoint admitted them, not written to the store (admission), by table."}, []string{"table"})),
		oneOffBy:  map[string]prometheus.Counter{},
		findingBy: map[string]prometheus.Counter{},
		evictBy:   map[string]prometheus.Counter{},
		dropBy:    map[string]prometheus.Counter{},
	}
	return m
}

func (m *metrics) finding(det string) {
	c := m.findingBy[det]
	if c == nil {
		c = m.findings.WithLabelValues(det)
		m.findingBy[det] = c
	}
	c.Inc()
}

func (m *metrics) evicted(space string) {
	c := m.evictBy[space]
	if c == nil {
		c = m.evictions.WithLabelValues(space)
		m.evictBy[space] = c
	}
	c.Inc()
}

func (m *metrics) spillDropped(space string) {
	c := m.dropBy[space]
	if c == nil {
		c = m.spillDrops.WithLabelValues(space)
		m.dropBy[space] = c
	}
	c.Inc()
}

func (m *metrics) expiredN(space string, n uint64) {
	m.expired.WithLabelValues(space).Add(float64(n))
}

func (m *metrics) skewed(direction string) { m.skew.WithLabelValues(direction).Inc() }

func (m *metrics) budget() *memBudget { return m.mem }

func (m *metrics) oneOffDropped(space string) {
	c := m.oneOffBy[space]
	if c == nil {
		c = m.oneOffDrops.WithLabelValues(space)
		m.oneOffBy[space] = c
	}
	c.Inc()
}
