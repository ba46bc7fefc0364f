package alert

import (
	"github.com/prometheus/client_golang/prometheus"
)

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
	lag         *prometheus.HistogramVec
	outboxFull  prometheus.Gauge
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
		lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "auditwatch_alert_outbox_wait_seconds", Help: "Time an alert waited in its output's outbox queue until delivered or dead-lettered, by output.",
			Buckets: prometheus.ExponentialBuckets(0.005, 4, 10),
		}, []string{"output"}),
		outboxFull: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "auditwatch_alert_outbox_write_failing", Help: "1 while the outbox cannot be written (e.g. a full disk): the detect checkpoint waits.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.sent, m.eventsSent, m.failed, m.retries, m.deadLetter, m.latency, m.suppressed, m.evictions, m.groupsAlive, m.lag, m.outboxFull} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// registerOutputs registers the per-output queue gauges, read from the
// router when scraped: backlog, lag of the oldest queued alert, and the
// delivery state (1 for the current state).
func (m *metrics) registerOutputs(reg prometheus.Registerer, r *Router) error {
	if reg == nil {
		return nil
	}
	status := func(name string) OutputStatus {
		for _, s := range r.Status() {
			if s.Output == name {
				return s
			}
		}
		return OutputStatus{}
	}
	for _, name := range r.order {
		labels := prometheus.Labels{"output": name}
		cs := []prometheus.Collector{
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "auditwatch_alert_outbox_backlog",
				Help: "Alerts queued in the outbox for an output.", ConstLabels: labels},
				func() float64 { return float64(status(name).Backlog) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "auditwatch_alert_outbox_lag_seconds",
				Help: "Age of the oldest alert queued for an output (0 when its queue is empty).", ConstLabels: labels},
				func() float64 { return status(name).Lag.Seconds() }),
		}
		for _, st := range []string{StateIdle, StateDelivering, StateRetrying} {
			cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "auditwatch_alert_output_state",
				Help:        "Delivery state of an output: 1 for its current state (idle, delivering, retrying).",
				ConstLabels: prometheus.Labels{"output": name, "state": st}},
				func() float64 {
					if status(name).State == st {
						return 1
					}
					return 0
				}))
		}
		for _, c := range cs {
			if err := reg.Register(c); err != nil {
				return err
			}
		}
	}
	return nil
}
