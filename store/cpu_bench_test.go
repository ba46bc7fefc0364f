package store

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"auditwatch/schema"
	"auditwatch/store/chdb"
	"auditwatch/store/chtest"
)

// cpuSeconds is this process's user+system CPU time: the Go side and the
// embedded engine's threads (inserts and background merges) together.
func cpuSeconds(tb testing.TB) float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// withRaw gives each event a Vault response record of about 1.4 KB, as
// `run` stores with raw_records (the default): the same shape, the
// event's own ids, path, address and times.
func withRaw(evs []schema.Event) {
	for i := range evs {
		ev := &evs[i]
		ev.Raw = fmt.Appendf(nil, `{"time":%q,"type":"response","auth":{"client_token":"hmac-sha256:%x","accessor":"hmac-sha256:%x","display_name":%q,"policies":["default","team-%d"],"token_policies":["default","team-%d"],"identity_policies":null,"metadata":{"role_name":"svc","service_account_name":%q},"entity_id":%q,"token_type":"service","token_ttl":2764800,"token_issue_time":"2026-12-01T10:11:12Z"},"request":{"id":"%016x-%08x","client_id":%q,"operation":"read","mount_point":"secret/","mount_type":"kv","mount_accessor":"kv_5f1a2b3c","mount_running_version":"v0.20.0+builtin","mount_class":"secret","client_token":"hmac-sha256:%x","client_token_accessor":"hmac-sha256:%x","namespace":{"id":"root"},"path":%q,"remote_address":%q,"remote_port":%d,"headers":{"user-agent":["vault-agent/1.17"]}},"response":{"mount_point":"secret/","mount_type":"kv","mount_accessor":"kv_5f1a2b3c","mount_running_plugin_version":"v0.20.0+builtin","mount_class":"secret","data":{"data":"hmac-sha256:%x","metadata":{"created_time":"hmac-sha256:%x","custom_metadata":null,"deletion_time":"hmac-sha256:3b7a","destroyed":false,"version":%d}}}}`,
			ev.Time.Format(time.RFC3339Nano), i*31, i*17, ev.PrincipalName, i%40, i%40, ev.PrincipalName, ev.Principal,
			i, i*7, ev.Principal, i*31, i*17, ev.Resource, ev.SourceIP, 40000+i%20000, i*131, i*71, i%9+1)
	}
}

// BenchmarkStoreCPU is the storage side of `run`'s CPU per event: it
// inserts the same generated events (with raw records) into embedded chDB
// through DB.InsertEvents in blocks of a given size (the detect stage
// stores one block per checkpoint: about rate × checkpoint interval rows)
// and waits for the background merges they set off. It reports events per
// CPU-second of the whole process (Go encoding, the engine's inserts and
// merges), for the inserts alone and until merges settle.
// AUDITWATCH_BENCH_CPU_ROWS sets the events per block size (default
// 100,000); AUDITWATCH_BENCH_CPU_BLOCKS a comma-free single block size.
func BenchmarkStoreCPU(b *testing.B) {
	n := 100_000
	if v, err := strconv.Atoi(os.Getenv("AUDITWATCH_BENCH_CPU_ROWS")); err == nil && v > 0 {
		n = v
	}
	blocks := []int{1_000, 10_000, 50_000}
	if v, err := strconv.Atoi(os.Getenv("AUDITWATCH_BENCH_CPU_BLOCK")); err == nil && v > 0 {
		blocks = []int{v}
	}
	path := chtest.CHDBPath(b)
	now := time.Now().UTC()
	evs := chtest.NewGen(7, now.Add(-time.Hour), time.Hour).Sequential(n).Events(n)
	withRaw(evs)
	for _, block := range blocks {
		// One load per block size, whatever b.N (-benchtime=5x in make
		// bench-store): the figure is per event, not per iteration.
		var measured []float64
		b.Run(fmt.Sprintf("block-%d", block), func(b *testing.B) {
			if measured != nil {
				b.ReportMetric(measured[0], "ev/cpu-s-insert")
				b.ReportMetric(measured[1], "ev/cpu-s")
				b.ReportMetric(measured[2], "ev/s-insert")
				return
			}
			{
				dbSeq++
				st, err := Open(context.Background(), Config{Backend: BackendCHDB, Database: fmt.Sprintf("aw_cpu_%d", dbSeq), CHDB: chdb.Config{Path: path}}, nil, nil)
				if err != nil {
					b.Fatal(err)
				}
				db := st.(*DB)
				if err := db.Migrate(context.Background()); err != nil {
					b.Fatal(err)
				}
				settle(b, db)
				start := cpuSeconds(b)
				wall := time.Now()
				for done := 0; done < n; done += block {
					if err := db.InsertEvents(context.Background(), evs[done:min(done+block, n)]); err != nil {
						b.Fatal(err)
					}
				}
				ins := cpuSeconds(b) - start
				insWall := time.Since(wall)
				settle(b, db)
				all := cpuSeconds(b) - start
				measured = []float64{float64(n) / ins, float64(n) / all, float64(n) / insWall.Seconds()}
				b.ReportMetric(measured[0], "ev/cpu-s-insert")
				b.ReportMetric(measured[1], "ev/cpu-s")
				b.ReportMetric(measured[2], "ev/s-insert")
				st.Close()
			}
		})
	}
}

// BenchmarkStoreFindingsCPU is the CPU of the findings inserts `run` makes
// when the detect stage hands findings on with the batch that raised them
// (the storage sink flushes each such hand-over): many small blocks. It
// reports CPU milliseconds per insert of AUDITWATCH_BENCH_CPU_FINDINGS
// (default 3) findings, merges included.
func BenchmarkStoreFindingsCPU(b *testing.B) {
	per := 3
	if v, err := strconv.Atoi(os.Getenv("AUDITWATCH_BENCH_CPU_FINDINGS")); err == nil && v > 0 {
		per = v
	}
	path := chtest.CHDBPath(b)
	dbSeq++
	st, err := Open(context.Background(), Config{Backend: BackendCHDB, Database: fmt.Sprintf("aw_cpu_%d", dbSeq), CHDB: chdb.Config{Path: path}}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	db := st.(*DB)
	if err := db.Migrate(context.Background()); err != nil {
		b.Fatal(err)
	}
	settle(b, db)
	now := time.Now().UTC()
	start := cpuSeconds(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		fs := make([]schema.Finding, per)
		for j := range fs {
			fs[j] = schema.Finding{ID: fmt.Sprintf("f-%d-%d", i, j), Revision: 1, Time: now, FirstTime: now, LastTime: now,
				Detector: "auth_failure_spike", Severity: "high", Principal: "entity-1", Source: "vault", Count: 12,
				Summary: "12 failed logins", EventIDs: []string{"a", "b"}, Attributes: map[string]string{"window": "5m"}}
		}
		if err := db.InsertFindings(context.Background(), fs); err != nil {
			b.Fatal(err)
		}
	}
	settle(b, db)
	b.ReportMetric(1000*(cpuSeconds(b)-start)/float64(b.N), "cpu-ms/insert")
}
