package ingest

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sync"
	"testing"
)

var benchOut = flag.String("bench-out", "", "also write a ~100k-record benchmark input to this file")

var (
	ctIDRe    = regexp.MustCompile(`"eventID":"([0-9a-f-]{36})"`)
	vaultIDRe = regexp.MustCompile(`"request":\{"id":"([0-9a-f-]{36})"`)
)

// benchInput builds about n records by cycling the bundled CloudTrail
// sample and the OpenBao scenario log, rewriting ids so every cycle's
// events are distinct: CloudTrail records and Vault request/response
// pairs, about 1.4 KB per record. withCT / withVault select the formats.
func benchInput(tb testing.TB, n int, withCT, withVault bool) (data []byte, events int) {
	tb.Helper()
	root := repoRoot(tb)
	var ct, vl [][]byte
	for _, src := range []struct {
		path string
		dst  *[][]byte
	}{
		{filepath.Join(root, "ingest", "testdata", "cloudtrail-sample.jsonl"), &ct},
		{filepath.Join(root, "testdata", "openbao-scenario", "audit.log"), &vl},
	} {
		f, err := os.Open(src.path)
		if err != nil {
			tb.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			*src.dst = append(*src.dst, append([]byte(nil), sc.Bytes()...))
		}
		f.Close()
	}
	var buf bytes.Buffer
	records := 0
	for cycle := 0; records < n; cycle++ {
		suffix := fmt.Sprintf("%08x", cycle)
		if withCT {
			for _, l := range ct {
				buf.Write(ctIDRe.ReplaceAll(l, []byte(`"eventID":"${1}`+suffix+`"`)))
				buf.WriteByte('\n')
				records++
				events++
			}
		}
		if withVault {
			// the first scenario line is a request without response
			for _, l := range vl[1:] {
				buf.Write(vaultIDRe.ReplaceAll(l, []byte(`"request":{"id":"${1}`+suffix+`"`)))
				buf.WriteByte('\n')
				records++
			}
			events += (len(vl) - 1) / 2
		}
	}
	return buf.Bytes(), events
}

type benchData struct {
	once   sync.Once
	data   []byte
	events int
}

var benchMixed, benchCT, benchVault benchData

func (d *benchData) get(b *testing.B, withCT, withVault bool) ([]byte, int) {
	d.once.Do(func() { d.data, d.events = benchInput(b, 20000, withCT, withVault) })
	if d.data == nil {
		b.Fatal("benchmark input not built")
	}
	return d.data, d.events
}

// BenchmarkNormalize measures parse + normalize + JSON encoding of a mixed
// CloudTrail/Vault stream (about 1.9 records per event: a Vault event is a
// request and a response entry), reporting events/s and MB/s.
func BenchmarkNormalize(b *testing.B) {
	data, want := benchMixed.get(b, true, true)
	if *benchOut != "" {
		big, _ := benchInput(b, 100000, true, true)
		if err := os.WriteFile(*benchOut, big, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	benchNormalize(b, data, want)
}

// BenchmarkNormalizeCloudTrail is BenchmarkNormalize on CloudTrail records
// only (one record per event).
func BenchmarkNormalizeCloudTrail(b *testing.B) {
	data, want := benchCT.get(b, true, false)
	benchNormalize(b, data, want)
}

// BenchmarkNormalizeVault is BenchmarkNormalize on Vault/OpenBao
// request/response pairs only (two records per event).
func BenchmarkNormalizeVault(b *testing.B) {
	data, want := benchVault.get(b, false, true)
	benchNormalize(b, data, want)
}

func benchNormalize(b *testing.B, data []byte, want int) {
	opts := DefaultOptions()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	mallocs := ms.Mallocs
	cpu0 := cpuSeconds()
	b.ResetTimer()
	var out []byte
	events := 0
	for i := 0; i < b.N; i++ {
		r := NewReader(bytes.NewReader(data), "bench", opts)
		n := 0
		for {
			ev, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			out = ev.AppendJSON(out[:0])
			n++
		}
		if n != want {
			b.Fatalf("%d events, want %d", n, want)
		}
		events += n
	}
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
	b.StopTimer()
	if cpu := cpuSeconds() - cpu0; cpu > 0 {
		// with -cpu=1 this is one core's throughput, steady under load
		b.ReportMetric(float64(events)/cpu, "events/cpu-s")
	}
	runtime.ReadMemStats(&ms)
	if events > 0 {
		b.ReportMetric(float64(ms.Mallocs-mallocs)/float64(events), "allocs/event")
	}
}
