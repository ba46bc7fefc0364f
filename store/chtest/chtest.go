// Package chtest owns the storage tests' peers and data: it starts a real
// ClickHouse server on loopback for a test, gives tests the process's
// embedded chDB data path, and generates deterministic events.
//
// Integration tests fail when a peer is missing and
// AUDITWATCH_REQUIRE_INTEGRATION is set, and skip with a message otherwise.
package chtest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"auditwatch/store/chdb"
)

// Required reports whether integration peers must be present.
func Required() bool { return os.Getenv("AUDITWATCH_REQUIRE_INTEGRATION") != "" }

// Missing fails (when required) or skips the test for a missing peer.
func Missing(t testing.TB, what string, err error) {
	t.Helper()
	if Required() {
		t.Fatalf("%s is required (AUDITWATCH_REQUIRE_INTEGRATION is set): %v", what, err)
	}
	t.Skipf("%s not available (set AUDITWATCH_REQUIRE_INTEGRATION=1 to require it; scripts/setup/20-clickhouse.sh installs it): %v", what, err)
}

var (
	chdbOnce sync.Once
	chdbDir  string
	chdbErr  error
)

// CHDBPath loads libchdb and returns this process's embedded data path
// (the engine allows one path per process). Tests isolate themselves by
// database name. Main removes the directory.
func CHDBPath(t testing.TB) string {
	t.Helper()
	chdbOnce.Do(func() {
		if chdbErr = chdb.Load(""); chdbErr != nil {
			return
		}
		chdbDir, chdbErr = os.MkdirTemp("", "auditwatch-chdb-test-")
	})
	if chdbErr != nil {
		Missing(t, "libchdb.so", chdbErr)
	}
	return filepath.Join(chdbDir, "data")
}

// Main runs the tests, removes the embedded data path and, when they
// passed, fails the run if a goroutine started by a test outlives it.
func Main(m interface{ Run() int }) int {
	code := m.Run()
	if chdbDir != "" {
		os.RemoveAll(chdbDir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: errors on successful test run: %v\n", err)
			code = 1
		}
	}
	return code
}

// ServerBinary finds clickhouse-server.
func ServerBinary() (string, error) {
	if p, err := exec.LookPath("clickhouse-server"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server", "/usr/bin/clickhouse"} {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("clickhouse-server not found in PATH or /usr/sbin")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Server is a clickhouse-server started for one test.
type Server struct {
	Addr string
	Dir  string
	// TLSAddr and CAFile are set by StartServerTLS: the native TLS port and
	// the PEM certificate (self-signed for 127.0.0.1) that verifies it.
	TLSAddr string
	CAFile  string
	// PID is the server process (benchmarks read its CPU time).
	PID int
}

// StartServer starts clickhouse-server with its own config on 127.0.0.1
// and random free ports, data in a temp dir, and stops it when the test
// ends. It waits until the native port accepts connections.
func StartServer(t testing.TB) *Server { return startServer(t, false) }

// StartServerTLS is StartServer with a TLS native port as well.
func StartServerTLS(t testing.TB) *Server { return startServer(t, true) }

func startServer(t testing.TB, withTLS bool) *Server {
	t.Helper()
	bin, err := ServerBinary()
	if err != nil {
		Missing(t, "clickhouse-server", err)
	}
	dir := t.TempDir()
	tcp, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	httpPort, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	tlsXML, tlsAddr, caFile := "", "", ""
	if withTLS {
		tlsPort, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		cert, key, err := selfSigned(dir)
		if err != nil {
			t.Fatal(err)
		}
		tlsAddr, caFile = "127.0.0.1:"+strconv.Itoa(tlsPort), cert
		tlsXML = fmt.Sprintf(`<tcp_port_secure>%d</tcp_port_secure>
  <openSSL><server><certificateFile>%s</certificateFile><privateKeyFile>%s</privateKeyFile>
    <verificationMode>none</verificationMode><loadDefaultCAFile>false</loadDefaultCAFile>
    <cacheSessions>true</cacheSessions><disableProtocols>sslv2,sslv3</disableProtocols><preferServerCiphers>true</preferServerCiphers>
  </server></openSSL>`, tlsPort, cert, key)
	}
	if err := writeServerConfig(dir, tcp, httpPort, tlsXML); err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(tcp)
	p, err := launch(bin, dir, addr)
	if err != nil {
		Missing(t, "clickhouse-server", err)
	}
	t.Cleanup(p.stop)
	exited := p.exited
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := waitListen(addr, exited, ctx); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "log", "error.log"))
		so, _ := os.ReadFile(filepath.Join(dir, "log", "stdout.log"))
		t.Fatalf("clickhouse-server: %v\n%s\n%s", err, so, log)
	}
	if tlsAddr != "" {
		if err := waitListen(tlsAddr, exited, ctx); err != nil {
			t.Fatalf("clickhouse-server TLS port: %v", err)
		}
	}
	return &Server{Addr: addr, Dir: dir, TLSAddr: tlsAddr, CAFile: caFile, PID: p.cmd.Process.Pid}
}

// writeServerConfig writes dir/config.xml and dir/users.xml of a server on
// 127.0.0.1 with its files under dir; extra is more XML inside <yandex>.
func writeServerConfig(dir string, tcp, httpPort int, extra string) error {
	for _, d := range []string{"data", "tmp", "user_files", "format_schemas", "log"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	config := fmt.Sprintf(`<?xml version="1.0"?>
<yandex>
  %[4]s
  <logger><level>warning</level><log>%[1]s/log/server.log</log><errorlog>%[1]s/log/error.log</errorlog></logger>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>%[2]d</tcp_port>
  <http_port>%[3]d</http_port>
  <path>%[1]s/data/</path>
  <tmp_path>%[1]s/tmp/</tmp_path>
  <user_files_path>%[1]s/user_files/</user_files_path>
  <format_schema_path>%[1]s/format_schemas/</format_schema_path>
  <users_config>%[1]s/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <max_concurrent_queries>20</max_concurrent_queries>
</yandex>
`, dir, tcp, httpPort, extra)
	users := `<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default></default></quotas>
</yandex>
`
	if err := os.WriteFile(filepath.Join(dir, "config.xml"), []byte(config), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "users.xml"), []byte(users), 0o644)
}

// proc is a started server process.
type proc struct {
	cmd    *exec.Cmd
	exited chan error
}

// launch starts clickhouse-server on dir/config.xml and returns at once.
func launch(bin, dir, addr string) (*proc, error) {
	out, err := os.OpenFile(filepath.Join(dir, "log", "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--config-file="+filepath.Join(dir, "config.xml"))
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("start clickhouse-server: %w", err)
	}
	p := &proc{cmd: cmd, exited: make(chan error, 1)}
	go func() { p.exited <- cmd.Wait(); out.Close() }()
	return p, nil
}

// stop ends the server (SIGTERM, then SIGKILL after 15 s) and waits for it.
func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		p.exited <- err
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		p.exited <- <-p.exited
	}
}

func waitListen(addr string, exited chan error, ctx context.Context) error {
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case err := <-exited:
			exited <- err
			return fmt.Errorf("server exited: %v", err)
		case <-ctx.Done():
			return fmt.Errorf("%s not listening: %w", addr, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// selfSigned writes a self-signed RSA certificate for 127.0.0.1 into dir.
func selfSigned(dir string) (certFile, keyFile string, err error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return "", "", err
	}
	tpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		return "", "", err
	}
	certFile, keyFile = filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return "", "", err
	}
	kb := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	return certFile, keyFile, os.WriteFile(keyFile, kb, 0o600)
}
