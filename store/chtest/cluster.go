package chtest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ZooKeeperJar is Debian's ZooKeeper server (package zookeeper, pulled
// in by zookeeperd; scripts/setup/20-clickhouse.sh installs it).
const ZooKeeperJar = "/usr/share/java/zookeeper.jar"

// ZooKeeper is a standalone ZooKeeper started for one test.
type ZooKeeper struct {
	Host string
	Port int
}

// StartZooKeeper starts a standalone ZooKeeper on 127.0.0.1 with its
// data in a temp dir and stops it when the test ends. It waits until the
// server answers `srvr`.
func StartZooKeeper(t testing.TB) *ZooKeeper {
	t.Helper()
	java, err := exec.LookPath("java")
	if err == nil {
		_, err = os.Stat(ZooKeeperJar)
	}
	if err != nil {
		Missing(t, "ZooKeeper (java and "+ZooKeeperJar+")", err)
	}
	dir := t.TempDir()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf("tickTime=500\ninitLimit=10\nsyncLimit=5\ndataDir=%s\nclientPort=%d\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\n4lw.commands.whitelist=srvr\n",
		filepath.Join(dir, "data"), port)
	if err := os.WriteFile(filepath.Join(dir, "zoo.cfg"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(filepath.Join(dir, "zookeeper.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(java, "-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Dzookeeper.log.dir="+dir,
		"-cp", ZooKeeperJar, "org.apache.zookeeper.server.quorum.QuorumPeerMain", filepath.Join(dir, "zoo.cfg"))
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		out.Close()
		Missing(t, "ZooKeeper", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); out.Close() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	zk := &ZooKeeper{Host: "127.0.0.1", Port: port}
	deadline := time.Now().Add(90 * time.Second)
	for {
		if v, err := zk.srvr(); err == nil && strings.Contains(v, "Zookeeper version") {
			return zk
		}
		select {
		case err := <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "zookeeper.log"))
			t.Fatalf("ZooKeeper exited during start-up: %v\n%s", err, log)
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("ZooKeeper did not answer on %s:%d within 90s", zk.Host, zk.Port)
		}
	}
}

// srvr sends the four-letter command srvr and returns the answer.
func (z *ZooKeeper) srvr() (string, error) {
	c, err := net.DialTimeout("tcp", net.JoinHostPort(z.Host, strconv.Itoa(z.Port)), time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("srvr")); err != nil {
		return "", err
	}
	var b strings.Builder
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		b.WriteString(sc.Text() + "\n")
	}
	return b.String(), nil
}

// Replica is one clickhouse-server of a test cluster. Kill and Start
// stop it hard and bring it back on the same ports and data.
type Replica struct {
	Addr string
	Name string
	Dir  string
	bin  string
	p    *proc
}

// StartCluster starts n clickhouse-servers on 127.0.0.1 as the replicas
// r1..rn of shard 01 of cluster name, coordinated by zk, each with its own
// ports and data directory, and stops them when the test ends.
func StartCluster(t testing.TB, zk *ZooKeeper, name string, n int) []*Replica {
	t.Helper()
	bin, err := ServerBinary()
	if err != nil {
		Missing(t, "clickhouse-server", err)
	}
	type ports struct{ tcp, http, inter int }
	ps := make([]ports, n)
	var remote strings.Builder
	for i := range ps {
		for _, p := range []*int{&ps[i].tcp, &ps[i].http, &ps[i].inter} {
			if *p, err = freePort(); err != nil {
				t.Fatal(err)
			}
		}
		fmt.Fprintf(&remote, "<replica><host>127.0.0.1</host><port>%d</port></replica>", ps[i].tcp)
	}
	reps := make([]*Replica, n)
	for i, p := range ps {
		r := &Replica{Addr: "127.0.0.1:" + strconv.Itoa(p.tcp), Name: fmt.Sprintf("r%d", i+1), Dir: t.TempDir(), bin: bin}
		extra := fmt.Sprintf(`<interserver_http_port>%d</interserver_http_port>
  <interserver_http_host>127.0.0.1</interserver_http_host>
  <zookeeper><node><host>%s</host><port>%d</port></node><session_timeout_ms>10000</session_timeout_ms></zookeeper>
  <macros><shard>01</shard><replica>%s</replica></macros>
  <remote_servers><%s><shard><internal_replication>true</internal_replication>%s</shard></%s></remote_servers>`,
			p.inter, zk.Host, zk.Port, r.Name, name, remote.String(), name)
		if err := writeServerConfig(r.Dir, p.tcp, p.http, extra); err != nil {
			t.Fatal(err)
		}
		reps[i] = r
	}
	for _, r := range reps {
		r.Start(t)
		t.Cleanup(func() {
			if r.p != nil {
				r.p.stop()
			}
		})
	}
	return reps
}

// Start starts the replica's server (again) and waits for its port.
func (r *Replica) Start(t testing.TB) {
	t.Helper()
	p, err := launch(r.bin, r.Dir, r.Addr)
	if err != nil {
		t.Fatal(err)
	}
	r.p = p
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := waitListen(r.Addr, p.exited, ctx); err != nil {
		log, _ := os.ReadFile(filepath.Join(r.Dir, "log", "error.log"))
		t.Fatalf("replica %s: %v\n%s", r.Name, err, log)
	}
}

// Kill stops the replica's server with SIGKILL, as a crash would.
func (r *Replica) Kill(t testing.TB) {
	t.Helper()
	if r.p == nil {
		return
	}
	_ = r.p.cmd.Process.Kill()
	<-r.p.exited
	r.p = nil
}
