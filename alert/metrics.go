package alert

import "github.com/prometheus/client_golang/prometheus"

// metrics are per output; label values are output names from the config
// and the closed set of notify.Reason values, so cardinality is bounded.
type metrics struct {
	sent        *prometheus.CounterVec
	eventsSent  *prometheus.CounterVec
	failed      *prometheus.CounterVec
	retries     *prometheus.CounterVec
	deadLetter  *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	suppressed  *prometheus.CounterVec
	evictions   prometheus.Counter
	groupsAlive prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "auditwatch_alert_sent_total", Help: "Alerts delivered, by output.",
		}, []string{"output"}),
		eventsSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "auditwatch_alert_events_sent_total", Help: "Raw events delivered, by output.",
		}, []string{"output"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "auditwatch_alert_failed_total", Help: "Failed delivery attempts, by output and reason.",
		}, []string{"output", "reason"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "auditwatch_alert_retries_total", Help: "Delivery attempts after the first, by output.",
		}, []string{"output"}),
		deadLetter: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "auditwatch_alert_dead_letter_total", Help: "Alerts or event batches written to the dead-letter file, by output and reason.",
		}, []string{"output", "reason"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "auditwatch_alert_delivery_seconds", Help: "Time from hand-off to delivery, retries included, by output.",
			Buckets: prometheus.ExponentialBuckets(0.005, 4, 9),
		}, []string{"output"}),
		suppressed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "auditwatch_alert_suppressed_total", Help: "Findings not delivered on purpose, by cause (silence, min_severity, duplicate, unrouted).",
		}, []string{"cause"}),
		evictions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "auditwatch_alert_group_evictions_total", Help: "Alert groups evicted from the bounded group table before their window ended.",
		}),
		groupsAlive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "auditwatch_alert_groups", Help: "Alert groups currently tracked.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.sent, m.eventsSent, m.failed, m.retries, m.deadLetter, m.latency, m.suppressed, m.evictions, m.groupsAlive} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
