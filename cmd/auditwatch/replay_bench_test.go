package main

import (
	"bufio"
	"context"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"auditwatch/gen"
	"auditwatch/ingest"
)

var (
	benchOnce  sync.Once
	benchPath  string
	benchLearn time.Time
	benchErr   error
	benchDir   string
)

// benchInput1M generates 1,000,000 client requests (CloudTrail and
// Vault/OpenBao, interleaved in time as one stream, with anomalies) once
// per test binary into a temporary file.
func benchInput1M(b *testing.B) (string, time.Time) {
	benchOnce.Do(func() {
		benchDir, benchErr = os.MkdirTemp("", "auditwatch-bench-")
		if benchErr != nil {
			return
		}
		g, err := gen.New(gen.Config{Events: 1_000_000, Anomalies: true, CloudTrailShare: 0.5}.Defaults())
		if err != nil {
			benchErr = err
			return
		}
		benchLearn = g.LearningEnd()
		benchPath = filepath.Join(benchDir, "mixed.log")
		f, err := os.Create(benchPath)
		if err != nil {
			benchErr = err
			return
		}
		w := bufio.NewWriterSize(f, 1<<20)
		var buf []byte
		for {
			var ok bool
			buf, _, ok = g.Next(buf[:0])
			if !ok {
				break
			}
			w.Write(buf)
		}
		if err := w.Flush(); err != nil {
			benchErr = err
		}
		f.Close()
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchPath, benchLearn
}

// cleanupBenchData removes the generated benchmark input (called by TestMain).
func cleanupBenchData() {
	if benchDir != "" {
		os.RemoveAll(benchDir)
	}
}

func cpuNow() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// peakHeap samples the heap until stop is closed and returns the peak.
func peakHeap(stop <-chan struct{}) <-chan uint64 {
	out := make(chan uint64, 1)
	go func() {
		var ms runtime.MemStats
		var peak uint64
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-stop:
				out <- peak
				return
			case <-t.C:
			}
		}
	}()
	return out
}

// normalizeAll parses every event of path (the normalize stage alone).
func normalizeAll(path string) (int, error) {
	n := 0
	err := ingest.OpenPaths([]string{path}, ingest.DefaultOptions(), func(_ string, r *ingest.Reader) error {
		for {
			_, err := r.Next()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			n++
		}
	})
	return n, err
}

// BenchmarkReplay1M replays 1,000,000 generated requests (a temporary
// state store, checkpoints every 100,000 events, findings to io.Discard)
// and, untimed, normalizes the same file alone for comparison. Reported:
// events/s (wall), events/cpu-s (process CPU time, the one-core figure on
// a shared machine), the same for normalize alone, replay/normalize CPU
// ratio, and peak heap during replay. Run with -cpu 1 -benchtime 1x.
func BenchmarkReplay1M(b *testing.B) {
	path, learn := benchInput1M(b)
	var normCPU, replayCPU, replayWall time.Duration
	var normWall time.Duration
	var peak uint64
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		runtime.GC()
		c0, w0 := cpuNow(), time.Now()
		n, err := normalizeAll(path)
		if err != nil || n != 1_000_000 {
			b.Fatalf("normalize: %d events, %v", n, err)
		}
		normCPU += cpuNow() - c0
		normWall += time.Since(w0)
		runtime.GC()
		stop := make(chan struct{})
		peakc := peakHeap(stop)
		c0, w0 = cpuNow(), time.Now()
		b.StartTimer()
		code := runReplay(context.Background(), []string{"--learn-until", learn.Format(time.RFC3339Nano), path}, nil, io.Discard, io.Discard)
		b.StopTimer()
		replayCPU += cpuNow() - c0
		replayWall += time.Since(w0)
		close(stop)
		peak = max(peak, <-peakc)
		if code != 0 {
			b.Fatalf("replay exit %d", code)
		}
		b.StartTimer()
	}
	ev := float64(1_000_000 * b.N)
	b.ReportMetric(ev/replayWall.Seconds(), "events/s")
	b.ReportMetric(ev/replayCPU.Seconds(), "events/cpu-s")
	b.ReportMetric(ev/normWall.Seconds(), "normalize-events/s")
	b.ReportMetric(ev/normCPU.Seconds(), "normalize-events/cpu-s")
	b.ReportMetric(replayCPU.Seconds()/normCPU.Seconds(), "replay/normalize-cpu")
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
}

// BenchmarkReplayOnly1M is BenchmarkReplay1M without the normalize run:
// the one to profile (-cpuprofile) when looking for replay's own cost.
func BenchmarkReplayOnly1M(b *testing.B) {
	path, learn := benchInput1M(b)
	b.ReportAllocs()
	var cpu time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c0 := cpuNow()
		if code := runReplay(context.Background(), []string{"--learn-until", learn.Format(time.RFC3339Nano), path}, nil, io.Discard, io.Discard); code != 0 {
			b.Fatalf("replay exit %d", code)
		}
		cpu += cpuNow() - c0
	}
	b.ReportMetric(float64(1_000_000*b.N)/cpu.Seconds(), "events/cpu-s")
}

// BenchmarkNormalizeOnly1M runs the normalize command over the same input
// as BenchmarkReplayOnly1M (output discarded): its profile is the baseline
// replay's is compared with.
func BenchmarkNormalizeOnly1M(b *testing.B) {
	path, _ := benchInput1M(b)
	b.ReportAllocs()
	var cpu time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c0 := cpuNow()
		if code := runNormalize(context.Background(), []string{path}, nil, io.Discard, io.Discard); code != 0 {
			b.Fatalf("normalize exit %d", code)
		}
		cpu += cpuNow() - c0
	}
	b.ReportMetric(float64(1_000_000*b.N)/cpu.Seconds(), "events/cpu-s")
}
