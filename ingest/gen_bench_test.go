package ingest

import (
	"bytes"
	"io"
	"sync"
	"testing"

	"auditwatch/gen"
)

var (
	genOnce sync.Once
	genData []byte
)

// genInput is 100,000 requests of `make bench-data`'s traffic (the
// generator's mixed CloudTrail and Vault/OpenBao stream), in memory.
func genInput(b *testing.B) []byte {
	genOnce.Do(func() {
		g, err := gen.New(gen.Config{Events: 100_000, Anomalies: true, CloudTrailShare: 0.5}.Defaults())
		if err != nil {
			b.Fatal(err)
		}
		var buf []byte
		for {
			var ok bool
			buf, _, ok = g.Next(buf)
			if !ok {
				break
			}
		}
		genData = buf
	})
	return genData
}

// BenchmarkParseGenerated reads generated traffic into events (parse and
// normalize, no output): the parsing half of replay's and normalize's
// cost per event, reported per CPU-second and in bytes allocated.
func BenchmarkParseGenerated(b *testing.B) {
	data := genInput(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	cpu0 := cpuSeconds()
	b.ResetTimer()
	events := 0
	for i := 0; i < b.N; i++ {
		r := NewReader(bytes.NewReader(data), "gen", DefaultOptions())
		for {
			_, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			events++
		}
	}
	b.StopTimer()
	if events != 100_000*b.N {
		b.Fatalf("%d events, want %d", events, 100_000*b.N)
	}
	b.ReportMetric(float64(events)/(cpuSeconds()-cpu0), "events/cpu-s")
}
