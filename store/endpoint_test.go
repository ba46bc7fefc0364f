package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"auditwatch/internal/secret"
)

// TestQueryEndpoint: while a process holds the embedded store, OpenQuery
// asks its endpoint, and every runbook query answers exactly what the
// store answers directly; on TCP a token is required.
func TestQueryEndpoint(t *testing.T) {
	dbSeq++
	cfg := chdbCfg(t, fmt.Sprintf("aw_ep_%d", dbSeq))
	ctx := context.Background()
	st := openRW(t, cfg)
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	evs, fs := known(now)
	if err := st.InsertEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	if err := st.InsertFindings(ctx, fs); err != nil {
		t.Fatal(err)
	}
	month := now.Add(-30 * 24 * time.Hour)
	queries := []struct {
		name string
		args QueryArgs
	}{
		{"who-accessed", QueryArgs{Resource: "secret/data/prod/db", Since: month}},
		{"principal", QueryArgs{Principal: "entity-alice", Since: month}},
		{"ip", QueryArgs{IP: "10.0.0.0/8", Since: month}},
		{"blast-radius", QueryArgs{AccessKey: "AKIAEXAMPLEKEY000001", Since: month}},
		{"failures", QueryArgs{Since: month}},
		{"findings", QueryArgs{Since: month}},
	}

	check := func(t *testing.T, cfg Config) {
		t.Helper()
		qs, err := ServeQueries(ctx, cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer qs.Close(ctx)
		q, err := OpenQuery(ctx, cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer q.Close()
		if _, ok := q.(*remote); !ok {
			t.Fatalf("OpenQuery returned %T while the endpoint is up, want the endpoint's client", q)
		}
		for _, c := range queries {
			want, err := st.Query(ctx, c.name, c.args)
			if err != nil {
				t.Fatal(err)
			}
			got, err := q.Query(ctx, c.name, c.args)
			if err != nil {
				t.Fatalf("%s through the endpoint: %v", c.name, err)
			}
			if len(want.Rows) == 0 {
				t.Fatalf("%s: no rows to compare", c.name)
			}
			if !reflect.DeepEqual(got.Columns, want.Columns) || !reflect.DeepEqual(got.Rows, want.Rows) {
				t.Errorf("%s: endpoint answered\n %v\nwant\n %v", c.name, got.Rows, want.Rows)
			}
		}
		if _, err := q.Query(ctx, "who-accessed", QueryArgs{Since: month}); !errors.Is(err, ErrQueryArgs) {
			t.Errorf("missing --resource through the endpoint: %v, want ErrQueryArgs", err)
		}
	}

	t.Run("unix", func(t *testing.T) {
		c := cfg
		c.SetDefaults()
		if want := "unix:" + filepath.Join(cfg.CHDB.Path, "query.sock"); c.Query.Listen != want {
			t.Fatalf("default listen %q, want %q", c.Query.Listen, want)
		}
		check(t, c)
		fi, err := os.Stat(strings.TrimPrefix(c.Query.Listen, "unix:"))
		if err == nil {
			t.Errorf("socket left behind after Close (mode %v)", fi.Mode())
		}
	})

	t.Run("tcp", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		c := cfg
		c.Query.Listen = addr
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "storage.query.token") {
			t.Fatalf("TCP endpoint without a token validated: %v", err)
		}
		t.Setenv("AW_TEST_QUERY_TOKEN", "s3cret-token")
		c.Query.Token = secret.Secret{Env: "AW_TEST_QUERY_TOKEN"}
		check(t, c)

		qs, err := ServeQueries(ctx, c, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer qs.Close(ctx)
		bad := newRemote("tcp", addr, "wrong", 5*time.Second)
		if _, err := bad.Query(ctx, "failures", QueryArgs{Since: month}); err == nil || !strings.Contains(err.Error(), "401") {
			t.Errorf("wrong token: %v, want 401", err)
		}
		nc := c
		nc.Query.Listen = "0.0.0.0:9999"
		if err := nc.Validate(); err == nil || !strings.Contains(err.Error(), "not a loopback") {
			t.Errorf("non-loopback endpoint validated: %v", err)
		}
	})
}

// TestQueryMissingStore: a read-only query of a store that does not exist
// names the path and creates nothing.
func TestQueryMissingStore(t *testing.T) {
	chdbConfig(t) // libchdb must load, as for any embedded query
	dir := filepath.Join(t.TempDir(), "nothing-here")
	cfg := Config{Backend: BackendCHDB, CHDB: chdbConfigAt(dir)}
	_, err := OpenQuery(context.Background(), cfg, nil)
	if !errors.Is(err, ErrNoStore) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("OpenQuery of a missing store: %v, want ErrNoStore naming %s", err, dir)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("OpenQuery created %s", dir)
	}
}

// TestOpenWaitsForQuery: a process that holds the embedded store's lock
// (as a query that opened it directly a moment earlier does) delays the
// pipeline's Open instead of making it fail.
func TestOpenWaitsForQuery(t *testing.T) {
	flock, err := exec.LookPath("flock")
	if err != nil {
		t.Skip("flock(1) not installed (util-linux)")
	}
	dir := chdbConfig(t).Path // the engine's one data path of this process
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Backend: BackendCHDB, Database: "aw_wait", CHDB: chdbConfigAt(dir)}
	cfg.Query.Listen = "off"
	// another process takes the lock and holds it until its stdin closes
	holder := exec.Command(flock, "-x", dir, "sh", "-c", "echo locked; exec cat >/dev/null")
	release, err := holder.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		release.Close()
		holder.Wait()
	}()
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "locked\n" {
		t.Fatalf("flock holder said %q, %v", line, err)
	}
	ctx := context.Background()
	if _, err := OpenQuery(ctx, Config{Backend: BackendCHDB, CHDB: chdbConfigAt(dir), Query: QueryConfig{Listen: "off"}}, nil); !errors.Is(err, ErrStoreBusy) {
		t.Fatalf("query while another process holds the store: %v, want ErrStoreBusy", err)
	}
	// Open's retries driven by hand: each one it waits for is handed over.
	retries := make(chan chan time.Time)
	defer func(orig func() <-chan time.Time) { lockRetry = orig }(lockRetry)
	lockRetry = func() <-chan time.Time {
		ch := make(chan time.Time, 1)
		retries <- ch
		return ch
	}
	retry := func() chan time.Time {
		t.Helper()
		select {
		case ch := <-retries:
			return ch
		case <-time.After(30 * time.Second): // a guard only
			t.Fatal("Open never waited for the lock")
			return nil
		}
	}
	type result struct {
		st  Store
		err error
	}
	opened := make(chan result, 1)
	go func() {
		st, err := Open(ctx, cfg, nil, nil)
		opened <- result{st, err}
	}()
	// Open found the lock taken and waits; after a retry it still waits.
	retry() <- time.Time{}
	next := retry()
	select {
	case r := <-opened:
		t.Fatalf("Open returned while the lock was held: %v", r.err)
	default:
	}
	// The other process ends: the next retry takes the lock.
	release.Close()
	if err := holder.Wait(); err != nil {
		t.Fatal(err)
	}
	next <- time.Time{}
	r := <-opened
	if r.err != nil {
		t.Fatalf("Open once the lock was free: %v", r.err)
	}
	r.st.Close()
}
