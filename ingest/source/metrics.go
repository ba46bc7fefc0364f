package source

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the per-source counters every source keeps. The source
// label is the configured source name (bounded by the config).
type Metrics struct {
	Records  *prometheus.CounterVec
	Events   *prometheus.CounterVec
	Rejected *prometheus.CounterVec
	Lag      *prometheus.GaugeVec
	Errors   *prometheus.CounterVec
	// Quarantine receives the raw records sources reject (nil: none kept).
	Quarantine *Quarantine
}

// NewMetrics registers the source metrics on reg (nil: unregistered).
// Registering twice on one registry returns the first set.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Records: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "auditwatch_ingest_records_total",
			Help: "Raw records (or objects, for object sources) read, by source."}, []string{"source"}),
		Events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "auditwatch_ingest_events_total",
			Help: "Events produced, by source."}, []string{"source"}),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "auditwatch_ingest_rejected_total",
			Help: "Bad records rejected (logged with input and position), by source."}, []string{"source"}),
		Lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "auditwatch_ingest_lag_bytes",
			Help: "Bytes (or items) available to a source but not yet read, by source."}, []string{"source"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "auditwatch_ingest_errors_total",
			Help: "Source errors (I/O, API), by source."}, []string{"source"}),
	}
	if reg == nil {
		return m
	}
	m.Records = register(reg, m.Records)
	m.Events = register(reg, m.Events)
	m.Rejected = register(reg, m.Rejected)
	m.Lag = register(reg, m.Lag)
	m.Errors = register(reg, m.Errors)
	return m
}

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
