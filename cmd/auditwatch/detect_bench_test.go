package main

import (
	"bytes"
	"io"
	"testing"
	"time"

	"auditwatch/detect"
	"auditwatch/detect/state"
	"auditwatch/gen"
	"auditwatch/ingest"
	"auditwatch/schema"
)

// BenchmarkDetectGenerated runs the detectors alone (shipped defaults, a
// bbolt store, a checkpoint every 100,000 events) over 200,000 requests
// of `make bench-data`'s traffic, parsed before the timer starts: the
// detectors' share of replay's cost per event.
func BenchmarkDetectGenerated(b *testing.B) {
	g, err := gen.New(gen.Config{Events: 200_000, Anomalies: true, CloudTrailShare: 0.5}.Defaults())
	if err != nil {
		b.Fatal(err)
	}
	var data []byte
	for {
		var ok bool
		data, _, ok = g.Next(data)
		if !ok {
			break
		}
	}
	var evs []schema.Event
	r := ingest.NewReader(bytes.NewReader(data), "gen", ingest.DefaultOptions())
	for {
		ev, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			b.Fatal(err)
		}
		evs = append(evs, ev)
	}
	data = nil
	cfg, err := detect.DecodeConfig(nil)
	if err != nil {
		b.Fatal(err)
	}
	cfg.LearnUntil = g.LearningEnd()
	b.ReportAllocs()
	var cpu time.Duration
	findings := 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		st, err := state.Open(state.Config{Dir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		eng, err := detect.New(cfg, st, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		c0 := cpuNow()
		for n := range evs {
			findings += len(eng.Process(evs[n]))
			if n%100_000 == 99_999 {
				if err := eng.Checkpoint(nil); err != nil {
					b.Fatal(err)
				}
			}
		}
		if err := eng.Checkpoint(nil); err != nil {
			b.Fatal(err)
		}
		cpu += cpuNow() - c0
		b.StopTimer()
		st.Close()
		b.StartTimer()
	}
	if findings == 0 {
		b.Fatal("no findings")
	}
	b.ReportMetric(float64(len(evs)*b.N)/cpu.Seconds(), "events/cpu-s")
	b.ReportMetric(float64(findings)/float64(b.N), "findings")
}
