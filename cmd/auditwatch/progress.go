package main

import (
	"fmt"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// progress prints one line on stderr every interval with the totals a
// person watching a long run wants: events read and rejected, events
// through the detectors, findings. It reads the daemon's own registry, so
// the figures are the ones /metrics serves. The returned func stops it and
// prints a last line.
func (d *daemon) progress(every time.Duration) func() {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	start := time.Now()
	line := func() {
		t := d.totals("auditwatch_ingest_events_total", "auditwatch_ingest_rejected_total",
			"auditwatch_detect_stage_events_total", "auditwatch_detect_stage_findings_total")
		el := time.Since(start).Round(time.Second)
		fmt.Fprintf(d.stderr, "progress %s: %.0f events read, %.0f rejected, %.0f through the detectors, %.0f findings\n",
			el, t[0], t[1], t[2], t[3])
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		tk := time.NewTicker(every)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				line()
			}
		}
	}()
	return func() {
		close(stop)
		wg.Wait()
		line()
	}
}

// totals sums every series of each named counter or gauge in the registry.
func (d *daemon) totals(names ...string) []float64 {
	out := make([]float64, len(names))
	mfs, err := d.reg.Gather()
	if err != nil {
		return out
	}
	idx := make(map[string]int, len(names))
	for i, n := range names {
		idx[n] = i
	}
	for _, mf := range mfs {
		i, ok := idx[mf.GetName()]
		if !ok {
			continue
		}
		for _, m := range mf.GetMetric() {
			out[i] += metricValue(m)
		}
	}
	return out
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return 0
}
