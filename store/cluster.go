package store

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"time"

	chschema "auditwatch/schema/clickhouse"
	"auditwatch/store/chsql"
	"auditwatch/store/clickhouse"
)

// replica is one server of the writer's shard during a migration.
type replica struct {
	addr    string
	b       backend
	applied map[uint64]bool
}

var alterTableRE = regexp.MustCompile(`^ALTER TABLE \w+\.(\w+) `)

// migrateCluster applies the cluster form of every migration
// (chschema.ClusterMigrations) to every server in storage.clickhouse.addr,
// the replicas of this writer's shard, each with its own schema_migrations.
// Statements go step by step across the replicas, so each replica creates
// a replicated table with the structure the others registered in
// ZooKeeper; a change of a replicated table runs on one replica (ZooKeeper
// carries it to the others, and the migration waits until they show the
// same columns). Every replica must be reachable: an unreachable one is an
// error naming it, and a later run completes it.
func (d *DB) migrateCluster(ctx context.Context) error {
	ccfg := d.cfg.ClickHouse
	ccfg.SetDefaults()
	dia := d.Dialect()
	ms, err := chschema.ClusterMigrations(dia, chschema.Cluster{Name: ccfg.Cluster.Name, ZKPath: ccfg.Cluster.ZooKeeperPath, Replica: ccfg.Cluster.Replica})
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	var reps []*replica
	defer func() {
		for _, r := range reps {
			r.b.Close()
		}
	}()
	for _, addr := range ccfg.Addr {
		one := ccfg
		one.Addr = []string{addr}
		b, err := clickhouse.New(ctx, one, d.cfg.Database, nil, d.logger)
		if err != nil {
			return fmt.Errorf("migrate: replica %s: %w", addr, err)
		}
		reps = append(reps, &replica{addr: addr, b: b})
		if b.Modern() != dia.Modern {
			return fmt.Errorf("migrate: replica %s runs another server generation than %s", addr, ccfg.Addr[0])
		}
		if reps[len(reps)-1].applied, err = prepareMigrations(ctx, b, dia); err != nil {
			return fmt.Errorf("replica %s: %w", addr, err)
		}
	}
	for _, m := range ms {
		var pending []*replica
		for _, r := range reps {
			if !r.applied[uint64(m.Version)] {
				pending = append(pending, r)
			}
		}
		if len(pending) == 0 {
			continue
		}
		// A replica that applied it already changed the shared tables.
		shardDone := len(pending) < len(reps)
		for i, st := range m.Statements {
			if !m.OncePerShard[i] {
				for _, r := range pending {
					if err := execMigration(ctx, r.b, st); err != nil {
						return fmt.Errorf("migrate: replica %s: %04d_%s statement %d: %w", r.addr, m.Version, m.Name, i+1, err)
					}
				}
				continue
			}
			if shardDone {
				continue
			}
			if err := execMigration(ctx, pending[0].b, st); err != nil {
				return fmt.Errorf("migrate: replica %s: %04d_%s statement %d: %w", pending[0].addr, m.Version, m.Name, i+1, err)
			}
			if t := alterTableRE.FindStringSubmatch(st); t != nil {
				if err := d.awaitColumns(ctx, reps, t[1], ccfg.Cluster.SyncTimeout.D()); err != nil {
					return fmt.Errorf("migrate: %04d_%s statement %d: %w", m.Version, m.Name, i+1, err)
				}
			}
		}
		for _, r := range pending {
			if err := d.recordMigration(ctx, r.b, dia, m); err != nil {
				return fmt.Errorf("replica %s: %w", r.addr, err)
			}
		}
	}
	return d.setTTL(ctx, dia, true)
}

// awaitColumns waits until every replica shows the same columns of table
// as the first: a replicated ALTER reaches the others through ZooKeeper.
func (d *DB) awaitColumns(ctx context.Context, reps []*replica, table string, timeout time.Duration) error {
	cols := func(r *replica) ([]string, error) {
		res, err := r.b.Query(ctx, "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = {t:String} ORDER BY name",
			chsql.Params{chsql.Str("db", d.cfg.Database), chsql.Str("t", table)})
		if err != nil {
			return nil, err
		}
		var out []string
		for _, row := range res.Rows {
			out = append(out, fmt.Sprint(row[0], " ", row[1]))
		}
		return out, nil
	}
	want, err := cols(reps[0])
	if err != nil {
		return fmt.Errorf("replica %s: columns of %s: %w", reps[0].addr, table, err)
	}
	deadline := time.Now().Add(timeout)
	for _, r := range reps[1:] {
		for {
			got, err := cols(r)
			if err != nil {
				return fmt.Errorf("replica %s: columns of %s: %w", r.addr, table, err)
			}
			if slices.Equal(got, want) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("replica %s: %s did not take the change within %s (storage.clickhouse.cluster.sync_timeout): %w", r.addr, table, timeout, errReplicaBehind)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

var errReplicaBehind = errors.New("replica behind")
