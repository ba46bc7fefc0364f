package chsql

import (
	"testing"
	"time"

	"auditwatch/schema"
)

func BenchmarkAppendEventRowBinary(b *testing.B) {
	ev := schema.Event{Time: time.Now(), Source: "vault", ID: "gen-0000000000000001", Principal: "entity-00000001", PrincipalName: "user-1",
		Action: "vault:read", Resource: "secret/data/team-1/svc-1", SourceIP: "10.1.2.3", SourceIPRaw: "10.1.2.3", Outcome: "success", Policies: []string{"default", "team-1"}}
	var buf []byte
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf = AppendEventRowBinary(buf[:0], &ev)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}
