package store

import (
	"context"
	"fmt"
	"os"
	"strconv"
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
			for i := len(evs) - 1; i >= 0 && sample.AccessKey == ""; i-- {
				sample.AccessKey = evs[i].AccessKey
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

func benchQueries(b *testing.B, st *DB, sample schema.Event) {
	now := time.Now()
	cases := []struct {
		name string
		a    QueryArgs
	}{
		{"who-accessed", QueryArgs{Resource: sample.Resource, Since: now.Add(-24 * time.Hour)}},
		// The canonical name (a Vault logical path, a secret's name) over a
		// week: matched through resource_name, not the sort key.
		{"who-accessed-name", QueryArgs{Resource: resname.Name(&sample), Since: now.Add(-7 * 24 * time.Hour)}},
		{"principal", QueryArgs{Principal: sample.Principal, Since: now.Add(-7 * 24 * time.Hour)}},
		{"ip", QueryArgs{IP: sample.SourceIP, Since: now.Add(-7 * 24 * time.Hour)}},
		{"ip-cidr24", QueryArgs{IP: sample.SourceIP + "/24", Since: now.Add(-7 * 24 * time.Hour)}},
		{"blast-radius-key", QueryArgs{AccessKey: sample.AccessKey, Since: now.Add(-30 * 24 * time.Hour)}},
		{"blast-radius-principal", QueryArgs{Principal: sample.Principal, Since: now.Add(-30 * 24 * time.Hour)}},
		{"failures", QueryArgs{Since: now.Add(-time.Hour)}},
		{"findings", QueryArgs{Since: now.Add(-24 * time.Hour)}},
		{"findings-high", QueryArgs{Since: now.Add(-7 * 24 * time.Hour), Severity: "high"}},
	}
	for _, c := range cases {
		name := c.name
		switch name {
		case "ip-cidr24":
			name = "ip"
		case "who-accessed-name":
			name = "who-accessed"
		case "findings-high":
			name = "findings"
		case "blast-radius-key", "blast-radius-principal":
			name = "blast-radius"
		}
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			for i := 0; i < b.N; i++ {
				res, err := st.Query(ctx, name, c.a)
				if err != nil {
					b.Fatal(err)
				}
				if len(res.Rows) == 0 && name != "findings" {
					b.Fatalf("%s found nothing for a known event", c.name)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/query")
		})
	}
}

func runBench(b *testing.B, cfg Config) {
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
	benchQueries(b, db, sample)
}

// BenchmarkCHDB loads benchRows generated events into embedded chDB
// (reporting insert rows/s) and times every runbook query on them.
func BenchmarkCHDB(b *testing.B) {
	dbSeq++
	runBench(b, Config{Backend: BackendCHDB, Database: fmt.Sprintf("aw_bench_%d", dbSeq), CHDB: chdb.Config{Path: chtest.CHDBPath(b)}})
}

// BenchmarkServer does the same against a ClickHouse server started for it.
func BenchmarkServer(b *testing.B) {
	srv := chtest.StartServer(b)
	c := Config{Backend: BackendClickHouse, Database: "aw_bench"}
	c.ClickHouse.Addr = []string{srv.Addr}
	runBench(b, c)
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
