package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"auditwatch/netinfo"
	"auditwatch/netinfo/netinfotest"
)

// BenchmarkReplayGeo replays the 1,000,000 generated requests of
// BenchmarkReplay1M twice per iteration, with network context off and on
// (the databases `make geo` fetched when $AUDITWATCH_GEO_DIR names them,
// else small ones written here), and reports the CPU ratio: what
// enrichment adds to replay, database loading included. Run with -cpu 1
// -benchtime 1x.
func BenchmarkReplayGeo(b *testing.B) {
	path, learn := benchInput1M(b)
	dir := b.TempDir()
	geo := os.Getenv(netinfo.DirEnv)
	real := geo != ""
	if !real {
		geo = filepath.Join(dir, "geo")
		if err := os.MkdirAll(geo, 0o755); err != nil {
			b.Fatal(err)
		}
		if err := netinfotest.Files(geo, netinfotest.Default); err != nil {
			b.Fatal(err)
		}
	}
	off, on := filepath.Join(dir, "off.yaml"), filepath.Join(dir, "on.yaml")
	if err := os.WriteFile(off, []byte("geo:\n  disabled: true\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(on, []byte("geo:\n  dir: "+geo+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	run := func(cfg string) time.Duration {
		runtime.GC()
		c0 := cpuNow()
		if code := runReplay(context.Background(), []string{"--config", cfg, "--learn-until", learn.Format(time.RFC3339Nano), path}, nil, io.Discard, io.Discard); code != 0 {
			b.Fatalf("replay %s: exit %d", cfg, code)
		}
		return cpuNow() - c0
	}
	var cpuOff, cpuOn time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cpuOff += run(off)
		cpuOn += run(on)
	}
	ev := float64(1_000_000 * b.N)
	b.ReportMetric(ev/cpuOff.Seconds(), "events/cpu-s")
	b.ReportMetric(ev/cpuOn.Seconds(), "geo-events/cpu-s")
	b.ReportMetric(cpuOn.Seconds()/cpuOff.Seconds(), "geo/plain-cpu")
	if real {
		b.ReportMetric(1, "real-databases")
	}
}
