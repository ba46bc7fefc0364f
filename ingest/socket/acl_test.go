package socket

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"auditwatch/config/duration"
	"auditwatch/ingest"
	"auditwatch/ingest/source"
)

// startAt runs a socket source on cfg as given (Listen included).
func startAt(t *testing.T, cfg Config, c *collector, reg prometheus.Registerer) (*Socket, net.Addr, func()) {
	t.Helper()
	if cfg.SpoolDir == "" {
		cfg.SpoolDir = t.TempDir()
	}
	s, err := New(cfg, "vault-socket", source.AuditParser(ingest.DefaultOptions()), source.NewMemCheckpoints(nil), nil, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, c) }()
	actx, acancel := context.WithTimeout(ctx, 5*time.Second)
	defer acancel()
	addr, err := s.Addr(actx)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	return s, addr, func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		})
	}
}

// send writes raw on a fresh connection made by dial and closes it.
func send(t *testing.T, dial func() (net.Conn, error), raw []byte) error {
	t.Helper()
	conn, err := dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = conn.Write(raw)
	if err == nil {
		// a refused connection is closed by the server: reading sees it
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		var b [1]byte
		_, err = conn.Read(b[:])
	}
	return err
}

func waitCount(t *testing.T, c *collector, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second) // a guard only
	for c.count() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d events, want %d", c.count(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestConfigDefaultsAndAllowlistRules(t *testing.T) {
	var c Config
	c.SpoolDir = "/x"
	c.SetDefaults()
	if c.Listen != "127.0.0.1:9090" {
		t.Errorf("default listen %q, want loopback", c.Listen)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("defaults invalid: %v", err)
	}
	for _, tt := range []struct {
		listen string
		allow  []string
		want   string
	}{
		{"0.0.0.0:9090", nil, "allow: required when listening beyond loopback"},
		{":9090", nil, "allow: required"},
		{"0.0.0.0:9090", []string{"0.0.0.0/0"}, "lets anyone in"},
		{"0.0.0.0:9090", []string{"10.0.0.0/33"}, "want a CIDR"},
		{"unix:", nil, "needs a path"},
		{"unix:/run/a.sock", []string{"10.0.0.0/8"}, "not used with a unix socket"},
		{"0.0.0.0:9090", []string{"10.20.0.0/16", "192.0.2.7"}, ""},
		{"[::1]:9090", nil, ""},
	} {
		c := Config{Listen: tt.listen, Allow: tt.allow, SpoolDir: "/x"}
		c.SetDefaults()
		err := c.Validate()
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("listen %q allow %v: err %v, want %q", tt.listen, tt.allow, err, tt.want)
		}
	}
}

// A connection from outside the allowlist is closed unread and counted;
// one from inside is read.
func TestAllowlistRefusesAndCounts(t *testing.T) {
	raw, want := scenario(t)
	reg := prometheus.NewRegistry()
	c := &collector{}
	// Listening on loopback but allowing only a network the test is not in.
	s, addr, stop := startAt(t, Config{Listen: "127.0.0.1:0", Allow: []string{"192.0.2.0/24"}, IdleFlush: duration.Duration(100 * time.Millisecond)}, c, reg)
	defer stop()
	dial := func() (net.Conn, error) { return net.Dial("tcp", addr.String()) }
	for range 3 {
		_ = send(t, dial, raw)
	}
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(s.refused.WithLabelValues("vault-socket", "not_allowed")) < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := testutil.ToFloat64(s.refused.WithLabelValues("vault-socket", "not_allowed")); got != 3 {
		t.Fatalf("refused{not_allowed} = %v, want 3", got)
	}
	// Stopped, the source publishes nothing more.
	stop()
	if c.count() != 0 {
		t.Fatalf("%d events read from refused connections", c.count())
	}

	// The same listener with the default allowlist (loopback) reads them.
	c2 := &collector{}
	_, addr2, stop2 := startAt(t, Config{Listen: "127.0.0.1:0", IdleFlush: duration.Duration(100 * time.Millisecond)}, c2, prometheus.NewRegistry())
	defer stop2()
	conn, err := net.Dial("tcp", addr2.String())
	if err != nil {
		t.Fatal(err)
	}
	conn.Write(raw)
	conn.Close()
	waitCount(t, c2, len(want))
}

func TestUnixSocket(t *testing.T) {
	raw, want := scenario(t)
	c := &collector{}
	path := filepath.Join(t.TempDir(), "audit.sock")
	_, _, stop := startAt(t, Config{Listen: "unix:" + path, IdleFlush: duration.Duration(100 * time.Millisecond)}, c, prometheus.NewRegistry())
	defer stop()
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o660 {
		t.Fatalf("socket file %v mode %v, want 0660", err, st.Mode())
	}
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	conn.Write(raw)
	conn.Close()
	waitCount(t, c, len(want))
}

// TLS with client certificates: a client with a certificate from the CA
// is read; one without is refused and counted.
func TestTLSClientCertificates(t *testing.T) {
	raw, want := scenario(t)
	dir := t.TempDir()
	ca, caKey := newCert(t, nil, nil, "test CA", true)
	srv, srvKey := newCert(t, ca, caKey, "127.0.0.1", false)
	cli, cliKey := newCert(t, ca, caKey, "vault", false)
	write := func(name string, blocks ...*pem.Block) string {
		p := filepath.Join(dir, name)
		var b []byte
		for _, bl := range blocks {
			b = append(b, pem.EncodeToMemory(bl)...)
		}
		os.WriteFile(p, b, 0o600)
		return p
	}
	tlsCfg := &TLSConfig{
		CertFile:     write("srv.pem", &pem.Block{Type: "CERTIFICATE", Bytes: srv.Raw}),
		KeyFile:      write("srv.key", keyBlock(t, srvKey)),
		ClientCAFile: write("ca.pem", &pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}),
	}
	reg := prometheus.NewRegistry()
	c := &collector{}
	s, addr, stop := startAt(t, Config{Listen: "127.0.0.1:0", TLS: tlsCfg, IdleFlush: duration.Duration(100 * time.Millisecond)}, c, reg)
	defer stop()
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	// without a client certificate: refused during the handshake
	_ = send(t, func() (net.Conn, error) {
		return tls.Dial("tcp", addr.String(), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	}, raw)
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(s.refused.WithLabelValues("vault-socket", "tls")) < 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := testutil.ToFloat64(s.refused.WithLabelValues("vault-socket", "tls")); got != 1 {
		t.Fatalf("refused{tls} = %v, want 1", got)
	}
	// with one: read
	conn, err := tls.Dial("tcp", addr.String(), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1",
		Certificates: []tls.Certificate{{Certificate: [][]byte{cli.Raw}, PrivateKey: cliKey}}})
	if err != nil {
		t.Fatal(err)
	}
	conn.Write(raw)
	conn.Close()
	waitCount(t, c, len(want))
}

func newCert(t *testing.T, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, cn string, isCA bool) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, IsCA: isCA, BasicConstraintsValid: true}
	if ip := net.ParseIP(cn); ip != nil {
		tpl.IPAddresses = []net.IP{ip}
	}
	if parent == nil {
		parent, parentKey = tpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func keyBlock(t *testing.T, k *ecdsa.PrivateKey) *pem.Block {
	b, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return &pem.Block{Type: "EC PRIVATE KEY", Bytes: b}
}
