package gen

import (
	"context"
	"io"
	"testing"
)

// BenchmarkGenerate renders records to io.Discard and reports records/s
// (CloudTrail records or Vault audit lines) and MB/s.
func BenchmarkGenerate(b *testing.B) {
	for _, bc := range []struct {
		name  string
		share float64
	}{{"cloudtrail", 1}, {"vault", 0}, {"mixed", 0.5}} {
		b.Run(bc.name, func(b *testing.B) {
			const events = 200_000
			var recs, bytes int64
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				g, err := New(Config{Seed: int64(i + 1), Events: events, CloudTrailShare: bc.share, Anomalies: true})
				if err != nil {
					b.Fatal(err)
				}
				st, err := g.Run(context.Background(), Output{Vault: io.Discard, CloudTrail: io.Discard})
				if err != nil {
					b.Fatal(err)
				}
				recs += int64(st.CloudTrailEvents + 2*st.VaultEvents)
				bytes += st.Bytes
			}
			sec := b.Elapsed().Seconds()
			b.ReportMetric(float64(recs)/sec, "records/s")
			b.ReportMetric(float64(bytes)/sec/1e6, "MB/s")
			b.ReportMetric(float64(bytes)/float64(recs), "B/record")
		})
	}
}
