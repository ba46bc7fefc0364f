package store

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"auditwatch/internal/resname"
	"auditwatch/schema"
	"auditwatch/store/chdb"
	"auditwatch/store/chtest"
)

// benchRows is the size of the benchmark data set: AUDITWATCH_BENCH_ROWS
// (make bench-store sets 10,000,000), else a small smoke size.
func benchRows() int {
	if v, err := strconv.Atoi(os.Getenv("AUDITWATCH_BENCH_ROWS")); err == nil && v > 0 {
		return v
	}
	return 200_000
}

// benchBlock is the rows per insert: AUDITWATCH_BENCH_BLOCK, else the
// Writer's default block size (storage.batch.max_rows).
func benchBlock() int {
	if v, err := strconv.Atoi(os.Getenv("AUDITWATCH_BENCH_BLOCK")); err == nil && v > 0 {
		return v
	}
	var c Config
	c.SetDefaults()
	return c.Batch.MaxRows
}

// loadStats is what a load measured: insert time (generation excluded)
// over all rows and over the second half of them, when the tables already
// hold millions of rows and background merges run beside the inserts (the
// steady state of a long-running stream).
type loadStats struct {
	spent, steady time.Duration
	steadyRows    int
}

func (l loadStats) rate(n int) float64  { return float64(n) / l.spent.Seconds() }
func (l loadStats) steadyRate() float64 { return float64(l.steadyRows) / l.steady.Seconds() }

// loadGenerated inserts n generated events over the last 30 days in
// blocks of benchBlock() rows and returns the insert times and a sample
// event whose principal, resource, address and key the query benchmarks
// look up.
func loadGenerated(tb testing.TB, st *DB, n int) (loadStats, schema.Event) {
	tb.Helper()
	ctx := context.Background()
	now := time.Now().UTC()
	g := chtest.NewGen(42, now.Add(-30*24*time.Hour), 30*24*time.Hour).Sequential(n)
	var ls loadStats
	var sample schema.Event
	block := benchBlock()
	for done := 0; done < n; {
		k := min(block, n-done)
		evs := g.Events(k)
		if done+k == n {
			// The sample is among the newest events, so every window finds
			// it; its access key is a recent CloudTrail event's.
			sample = evs[len(evs)-1]
			sample.KeyPrincipal = sample.Principal
			for i := len(evs) - 1; i >= 0 && sample.AccessKey == ""; i-- {
				// KeyPrincipal carries the key's principal, for credentials.
				sample.AccessKey, sample.KeyPrincipal = evs[i].AccessKey, evs[i].Principal
			}
		}
		start := time.Now()
		if err := st.InsertEvents(ctx, evs); err != nil {
			tb.Fatal(err)
		}
		d := time.Since(start)
		ls.spent += d
		if done >= n/2 {
			ls.steady += d
			ls.steadyRows += k
		}
		done += k
	}
	return ls, sample
}

// scanIPSQL is the ip query as it was before migration 0019: a scan of
// the window of events (sorted by resource), timed as a baseline beside
// the ip query on ip_events.
const scanIPSQL = `SELECT principal, any(principal_name) AS principal_name, resource,
       uniqExact(id) AS events, uniqExactIf(id, outcome = 'failure') AS failures,
       arrayStringConcat(arraySlice(arraySort(groupUniqArray(source_ip)), 1, 5), ' ') AS source_ips,
       min(time) AS first_seen, max(time) AS last_seen
FROM auditwatch.events
WHERE ip >= unhex({ip_lo:String}) AND ip <= unhex({ip_hi:String}) AND ` + window + `
GROUP BY principal, resource
ORDER BY events DESC, principal, resource
LIMIT {limit:UInt64}`

// benchQueries times every runbook query (and variant) on the loaded
// data: wall time and CPU time (cpu reads the CPU time of whichever
// process runs the queries: this one for chDB, the server's otherwise), so
// the load of a shared machine shows as the gap between the two.
func benchQueries(b *testing.B, st *DB, sample schema.Event, cpu func() time.Duration) {
	now := time.Now()
	week := now.Add(-7 * 24 * time.Hour)
	cases := []struct {
		name, query string
		a           QueryArgs
	}{
		{"who-accessed", "who-accessed", QueryArgs{Resource: sample.Resource, Since: now.Add(-24 * time.Hour)}},
		// The canonical name (a Vault logical path, a secret's name) over a
		// week: matched through resource_names.
		{"who-accessed-name", "who-accessed", QueryArgs{Resource: resname.Name(&sample), Since: week}},
		{"principal", "principal", QueryArgs{Principal: sample.Principal, Since: week}},
		{"ip", "ip", QueryArgs{IP: sample.SourceIP, Since: week}},
		{"ip-cidr24", "ip", QueryArgs{IP: sample.SourceIP + "/24", Since: week}},
		{"ip-scan-events-baseline", "", QueryArgs{IP: sample.SourceIP, Since: week}},
		{"ip-asn", "ip", QueryArgs{ASN: 64500, Since: week}},
		{"blast-radius-key", "blast-radius", QueryArgs{AccessKey: sample.AccessKey, Since: now.Add(-30 * 24 * time.Hour)}},
		{"blast-radius-principal", "blast-radius", QueryArgs{Principal: sample.Principal, Since: now.Add(-30 * 24 * time.Hour)}},
		{"credentials", "credentials", QueryArgs{Principal: sample.KeyPrincipal, Since: now.Add(-30 * 24 * time.Hour)}},
		{"failures", "failures", QueryArgs{Since: now.Add(-time.Hour)}},
		{"finding", "finding", QueryArgs{ID: "no-such-finding", Since: now.Add(-30 * 24 * time.Hour)}},
		{"findings", "findings", QueryArgs{Since: now.Add(-24 * time.Hour)}},
		{"findings-high", "findings", QueryArgs{Since: week, Severity: "high"}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			run := func() (*Result, error) { return st.Query(ctx, c.query, c.a) }
			if c.query == "" {
				_, ps, err := Build("ip", c.a, st.cfg.Database)
				if err != nil {
					b.Fatal(err)
				}
				run = func() (*Result, error) { return st.Raw(ctx, WithDB(scanIPSQL, st.cfg.Database), ps) }
			}
			c0 := cpu()
			for i := 0; i < b.N; i++ {
				res, err := run()
				if err != nil {
					b.Fatal(err)
				}
				if len(res.Rows) == 0 && !strings.HasPrefix(c.name, "finding") && c.name != "ip-asn" {
					b.Fatalf("%s found nothing for a known event", c.name)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/query")
			b.ReportMetric(float64((cpu()-c0).Microseconds())/1000/float64(b.N), "cpu-ms/query")
		})
	}
}

// selfCPU is this process's CPU time (user and system).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is the CPU time of process pid (utime+stime of /proc/pid/stat).
func procCPU(pid int) func() time.Duration {
	return func() time.Duration {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return 0
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndex(s, ")")+2:])
		if len(f) < 13 {
			return 0
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		k, _ := strconv.ParseInt(f[12], 10, 64)
		return time.Duration(u+k) * 10 * time.Millisecond // USER_HZ 100
	}
}

func runBench(b *testing.B, cfg Config, cpu func() time.Duration) {
	st, err := Open(context.Background(), cfg, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	db := st.(*DB)
	if err := db.Migrate(context.Background()); err != nil {
		b.Fatal(err)
	}
	n := benchRows()
	var sample schema.Event
	var rate, steady float64
	b.Run(fmt.Sprintf("insert-%d", n), func(b *testing.B) {
		if sample.ID == "" { // the data set is loaded once, whatever b.N
			ls, s := loadGenerated(b, db, n)
			sample, rate, steady = s, ls.rate(n), ls.steadyRate()
		}
		b.ReportMetric(rate, "rows/s")
		b.ReportMetric(steady, "steady-rows/s")
	})
	if sample.ID == "" {
		b.Fatal("data set not loaded")
	}
	settle(b, db)
	benchQueries(b, db, sample, cpu)
}

// BenchmarkCHDB loads benchRows generated events into embedded chDB
// (reporting insert rows/s) and times every runbook query on them.
func BenchmarkCHDB(b *testing.B) {
	dbSeq++
	runBench(b, Config{Backend: BackendCHDB, Database: fmt.Sprintf("aw_bench_%d", dbSeq), CHDB: chdb.Config{Path: chtest.CHDBPath(b)}}, selfCPU)
}

// BenchmarkServer does the same against a ClickHouse server started for it.
func BenchmarkServer(b *testing.B) {
	srv := chtest.StartServer(b)
	c := Config{Backend: BackendClickHouse, Database: "aw_bench"}
	c.ClickHouse.Addr = []string{srv.Addr}
	runBench(b, c, procCPU(srv.PID))
}

// settle waits (at most 3 minutes) for the background merges the load set
// off, so queries are timed on the steady state rather than against merges.
func settle(b *testing.B, db *DB) {
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		r, err := db.Raw(context.Background(), "SELECT toUInt64(count()) FROM system.merges", nil)
		if err != nil {
			b.Fatal(err)
		}
		if r.Rows[0][0] == uint64(0) {
			return
		}
		time.Sleep(time.Second)
	}
	b.Log("merges still running after 3 minutes; timing queries anyway")
}
