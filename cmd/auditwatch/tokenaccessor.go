package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"auditwatch/internal/vaultapi"
)

// runTokenAccessor is `auditwatch query token-accessor`: with an audit
// device that HMACs accessors (Vault's default), find the live accessor
// whose HMAC the events carry by listing accessors (auth/token/accessors,
// needs sudo) and hashing each through sys/audit-hash/<device>.
func runTokenAccessor(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("query token-accessor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	hmac := fs.String("hmac", "", "the token_accessor HMAC from `auditwatch query credentials` (hmac-sha256:…)")
	device := fs.String("audit-path", "file", "path of the audit device that wrote the HMAC (vault audit list)")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after this long")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: auditwatch query token-accessor --hmac HMAC [--audit-path file]")
		fmt.Fprintln(stderr, "\nVault from the environment: VAULT_ADDR, VAULT_TOKEN (else ~/.vault-token), VAULT_NAMESPACE, VAULT_CACERT.")
		fmt.Fprintln(stderr, "The token needs sudo on auth/token/accessors (list) and update on sys/audit-hash/<audit-path>.")
		fmt.Fprintln(stderr, "\nflags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *hmac == "" || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	c := &vaultapi.Client{Addr: os.Getenv("VAULT_ADDR"), Token: os.Getenv("VAULT_TOKEN"), Namespace: os.Getenv("VAULT_NAMESPACE")}
	if c.Addr == "" {
		fmt.Fprintln(stderr, "auditwatch query token-accessor: VAULT_ADDR is not set")
		return 2
	}
	if c.Token == "" {
		if home, err := os.UserHomeDir(); err == nil {
			if b, err := os.ReadFile(filepath.Join(home, ".vault-token")); err == nil {
				c.Token = strings.TrimSpace(string(b))
			}
		}
	}
	if c.Token == "" {
		fmt.Fprintln(stderr, "auditwatch query token-accessor: no Vault token: set VAULT_TOKEN or `vault login`")
		return 2
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if ca := os.Getenv("VAULT_CACERT"); ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			fmt.Fprintln(stderr, "auditwatch query token-accessor: VAULT_CACERT:", err)
			return 2
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			fmt.Fprintf(stderr, "auditwatch query token-accessor: VAULT_CACERT %s holds no PEM certificate\n", ca)
			return 2
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	c.HTTP = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	acc, n, err := c.FindAccessor(ctx, *device, strings.TrimSpace(*hmac))
	if err != nil {
		fmt.Fprintf(stderr, "auditwatch query token-accessor: %v (%d accessors hashed)\n", err, n)
		return 1
	}
	fmt.Fprintf(stdout, "accessor: %s\n", acc)
	fmt.Fprintf(stdout, "next: vault token revoke -accessor '%s'\n", acc)
	return 0
}
