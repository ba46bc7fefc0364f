// Package syslogtest owns the real syslog receiver the syslog output's
// integration tests (and the delivery fault tests) run against: an
// rsyslogd started in the foreground with its own config on loopback.
package syslogtest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCA writes a CA and a server certificate for 127.0.0.1 into dir and
// returns the paths (ca, cert, key).
func TestCA(t testing.TB, dir string) (string, string, string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "auditwatch test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames: []string{"localhost"}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	write := func(name, typ string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("cert.pem", "CERTIFICATE", der), write("key.pem", "EC PRIVATE KEY", keyDER)
}

// Rsyslog is a running rsyslogd: its plain-TCP and TLS listen addresses
// (octet-counted framing), the CA file its TLS certificate chains to, and
// the file it writes every received message to, one JSON object a line
// (pri, timestamp, hostname, app, procid, msgid, sd, msg, input).
type Rsyslog struct {
	TCPAddr, TLSAddr, CA, Out string
}

// Start runs a real rsyslogd in the foreground with its own config,
// pid file and work dir, listening on loopback (plain TCP and TLS, both
// with octet-counted framing) and writing every message as one JSON line.
func Start(t testing.TB) Rsyslog {
	t.Helper()
	bin := os.Getenv("AUDITWATCH_RSYSLOGD")
	if bin == "" {
		bin = "rsyslogd"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/rsyslogd"); serr == nil {
			path = "/usr/sbin/rsyslogd"
		} else {
			missingPeer(t, "rsyslogd not found (scripts/setup/30-rsyslog.sh installs it): %v", err)
		}
	}
	dir := t.TempDir()
	ca, cert, key := TestCA(t, dir)
	work := filepath.Join(dir, "work")
	if err := os.Mkdir(work, 0o700); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.jsonl")
	conf := fmt.Sprintf(`global(workDirectory=%[1]q maxMessageSize="64k")
module(load="imtcp")
template(name="j" type="list" option.jsonf="on") {
  property(outname="pri" name="pri" format="jsonf")
  property(outname="timestamp" name="timereported" dateFormat="rfc3339" format="jsonf")
  property(outname="hostname" name="hostname" format="jsonf")
  property(outname="app" name="app-name" format="jsonf")
  property(outname="procid" name="procid" format="jsonf")
  property(outname="msgid" name="msgid" format="jsonf")
  property(outname="sd" name="structured-data" format="jsonf")
  property(outname="msg" name="msg" format="jsonf")
  property(outname="input" name="inputname" format="jsonf")
}
ruleset(name="out") { action(type="omfile" file=%[2]q template="j") }
input(type="imtcp" name="tcp" address="127.0.0.1" port="0" listenPortFileName=%[3]q ruleset="out")
input(type="imtcp" name="tls" address="127.0.0.1" port="0" listenPortFileName=%[4]q ruleset="out"
      streamDriver.name="ossl" streamDriver.mode="1" streamDriver.authMode="anon"
      streamDriver.CAFile=%[5]q streamDriver.CertFile=%[6]q streamDriver.KeyFile=%[7]q)
`, work, out, filepath.Join(dir, "tcp.port"), filepath.Join(dir, "tls.port"), ca, cert, key)
	confPath := filepath.Join(dir, "rsyslog.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, path, "-n", "-f", confPath, "-i", filepath.Join(dir, "rsyslogd.pid"))
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		cancel()
		missingPeer(t, "starting rsyslogd: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("rsyslogd did not stop")
		}
	})
	port := func(name string) string {
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			b, err := os.ReadFile(filepath.Join(dir, name))
			if p := strings.TrimSpace(string(b)); err == nil && p != "" && p != "0" {
				return net.JoinHostPort("127.0.0.1", p)
			}
			select {
			case <-done:
				t.Fatalf("rsyslogd exited: %s", stderr.String())
			case <-time.After(50 * time.Millisecond):
			}
		}
		t.Fatalf("rsyslogd wrote no %s: %s", name, stderr.String())
		return ""
	}
	return Rsyslog{TCPAddr: port("tcp.port"), TLSAddr: port("tls.port"), CA: ca, Out: out}
}

// missingPeer fails the test when AUDITWATCH_REQUIRE_INTEGRATION is set
// and skips it with the reason otherwise (notifytest's rule; this package
// does not import notifytest, whose -update flag would clash with the
// importing package's own).
func missingPeer(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("AUDITWATCH_REQUIRE_INTEGRATION") != "" {
		t.Fatalf("integration peer missing (AUDITWATCH_REQUIRE_INTEGRATION is set): "+format, args...)
	}
	t.Skipf("integration peer missing (set AUDITWATCH_REQUIRE_INTEGRATION=1 to make this fail): "+format, args...)
}
