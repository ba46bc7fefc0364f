package clickhouse

import (
	"context"
	"strings"
	"testing"
	"time"

	"auditwatch/config/duration"
	"auditwatch/internal/secret"
	"auditwatch/store/chsql"
	"auditwatch/store/chtest"
)

func TestConfigValidate(t *testing.T) {
	c := Config{Addr: []string{""}, Password: secret.Secret{Env: "A", File: "/b"}, DialTimeout: -1, TLS: TLSConfig{CAFile: "/ca.pem"}}
	err := Prefix("storage.clickhouse", c.Validate())
	for _, want := range []string{"storage.clickhouse.addr[0]", "storage.clickhouse.password", "storage.clickhouse.dial_timeout", "storage.clickhouse.tls"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to name %s", err, want)
		}
	}
	var d Config
	d.SetDefaults()
	if err := d.Validate(); err != nil {
		t.Errorf("defaults invalid: %v", err)
	}
	cl := Config{Addr: []string{"a:9000"}, Cluster: ClusterConfig{Name: "aw", ZooKeeperPath: "/clickhouse/tables", Replica: "r'1", SyncTimeout: duration.Duration(-1)}}
	err = Prefix("storage.clickhouse", cl.Validate())
	for _, want := range []string{"storage.clickhouse.cluster.zookeeper_path: \"/clickhouse/tables\" does not contain {shard}", "storage.clickhouse.cluster.replica", "storage.clickhouse.cluster.sync_timeout"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("cluster Validate() = %v, want it to name %s", err, want)
		}
	}
	if err := (ClusterConfig{Replica: "r1"}).Validate(); err == nil || !strings.Contains(err.Error(), "name: required") {
		t.Errorf("cluster options without a name: %v", err)
	}
	cl = Config{Cluster: ClusterConfig{Name: "aw"}}
	cl.SetDefaults()
	if err := cl.Validate(); err != nil || cl.Cluster.ZooKeeperPath != "/clickhouse/tables/{shard}" || cl.Cluster.Replica != "{replica}" {
		t.Errorf("cluster defaults %+v: %v", cl.Cluster, err)
	}
}

// TLS with a CA file, and a password from the environment, against a real
// 18.16 server; then a block insert and a read back.
func TestTLSAndPassword(t *testing.T) {
	srv := chtest.StartServerTLS(t)
	t.Setenv("AW_TEST_CH_PASSWORD", "not-used-by-default-user")
	ctx := context.Background()
	cfg := Config{Addr: []string{srv.TLSAddr}, TLS: TLSConfig{Enabled: true, CAFile: srv.CAFile, ServerName: "127.0.0.1"}, DialTimeout: duration.Duration(10 * time.Second)}
	// The test server's default user has an empty password: a wrong one must be refused.
	bad := cfg
	bad.Password = secret.Secret{Env: "AW_TEST_CH_PASSWORD"}
	if d, err := New(ctx, bad, "default", nil, nil); err == nil {
		d.Close()
		t.Error("wrong password accepted")
	} else if strings.Contains(err.Error(), "not-used-by-default-user") {
		t.Errorf("error leaks the password: %v", err)
	}
	d, err := New(ctx, cfg, "tlsdb", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Modern() {
		t.Errorf("server %s reported as modern", d.version)
	}
	if err := d.Exec(ctx, "CREATE DATABASE IF NOT EXISTS tlsdb"); err != nil {
		t.Fatal(err)
	}
	if err := d.Exec(ctx, "CREATE TABLE tlsdb.events (day Date, time DateTime('UTC'), source String, id String, principal String, principal_name String, principal_type String, session String, account String, access_key String, policies Array(String), token_hmac String, auth_method String, action String, resource String, mount String, mount_type String, namespace String, region String, source_ip String, source_ip_raw String, ip FixedString(16), source_is_service UInt8, user_agent String, outcome String, error String, failure_kind String, auth UInt8, read_only UInt8, http_status UInt16, resource_name String, key_principal String, key_issue String, country String, asn UInt32, as_org String, net_label String, token_accessor String, raw String) ENGINE = MergeTree() PARTITION BY toYYYYMMDD(day) ORDER BY (resource, time, id)"); err != nil {
		t.Fatal(err)
	}
	if err := d.Exec(ctx, "CREATE TABLE tlsdb.resource_names (resource_name String, resource String) ENGINE = ReplacingMergeTree() ORDER BY (resource_name, resource)"); err != nil {
		t.Fatal(err)
	}
	if err := d.Exec(ctx, "CREATE TABLE tlsdb.principal_events (day Date, time DateTime('UTC'), id String, principal String, access_key String, action String, resource String, source_ip String, outcome String, error String, failure_kind String, token_accessor String) ENGINE = MergeTree() PARTITION BY toMonday(day) ORDER BY (principal, time, id)"); err != nil {
		t.Fatal(err)
	}
	if err := d.Exec(ctx, "CREATE TABLE tlsdb.ip_events (day Date, time DateTime('UTC'), ip FixedString(16), id String, principal String, principal_name String, resource String, source_ip String, outcome String, country String, asn UInt32, as_org String) ENGINE = MergeTree() PARTITION BY toMonday(day) ORDER BY (ip, time, id)"); err != nil {
		t.Fatal(err)
	}
	evs := chtest.NewGen(9, time.Now().Add(-time.Hour), time.Hour).Events(1000)
	evs[0].SourceIP = "2001:db8::1"
	if err := d.InsertEvents(ctx, evs, "tok"); err != nil {
		t.Fatal(err)
	}
	res, err := d.Query(ctx, "SELECT toUInt64(count()), toUInt64(countIf(ip = unhex({ip:String}))) FROM tlsdb.events", chsql.Params{chsql.Str("ip", "20010DB8000000000000000000000001")})
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows[0][0] != uint64(1000) || res.Rows[0][1] != uint64(1) {
		t.Fatalf("read back %v, want 1000 rows and the IPv6 address once", res.Rows[0])
	}
	for _, tb := range []string{"principal_events", "ip_events"} {
		res, err = d.Query(ctx, "SELECT toUInt64(count()), toUInt64(uniqExact(principal)), toUInt64(countIf(source_ip = '2001:db8::1')) FROM tlsdb."+tb, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Rows[0][0] != uint64(1000) || res.Rows[0][1] == uint64(0) || res.Rows[0][2] != uint64(1) {
			t.Fatalf("%s read back %v, want the same 1000 rows", tb, res.Rows[0])
		}
	}
	res, err = d.Query(ctx, "SELECT toUInt64(count()) FROM tlsdb.ip_events WHERE ip = unhex({ip:String}) AND source_ip = '2001:db8::1'", chsql.Params{chsql.Str("ip", "20010DB8000000000000000000000001")})
	if err != nil || res.Rows[0][0] != uint64(1) {
		t.Fatalf("ip_events by address: %v %v, want the IPv6 row", res, err)
	}
}
