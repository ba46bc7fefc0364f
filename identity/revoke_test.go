package identity_test

import (
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"auditwatch/identity"
	it "auditwatch/identity/identitytest"
	"auditwatch/internal/secret"
	"auditwatch/schema"
)

// bodyRevokeEvent is a body-form lease revocation (PUT sys/leases/revoke
// with {"lease_id": …}) as Vault's file device writes its request and
// response entries; lease is what the log shows (HMAC'd by default).
func bodyRevokeEvent(t *testing.T, at time.Time, path, lease string) []schema.Event {
	ts := at.Format(time.RFC3339Nano)
	req := `"request":{"id":"rvb-` + at.Format("150405") + `","operation":"update","mount_point":"sys/","mount_type":"system","client_token":"hmac-sha256:aa","namespace":{"id":"root"},"path":"` + path + `","data":{"lease_id":"` + lease + `","sync":true},"remote_address":"10.0.9.9"}`
	auth := `"auth":{"client_token":"hmac-sha256:aa","accessor":"hmac-sha256:bb","display_name":"root","policies":["root"],"token_policies":["root"],"token_type":"service"}`
	lines := `{"time":"` + ts + `","type":"request",` + auth + `,` + req + "}\n" +
		`{"time":"` + ts + `","type":"response",` + auth + `,` + req + `,"response":{"mount_type":"system"}}` + "\n"
	evs := normalize(t, "vault.log", []byte(lines))
	if len(evs) == 0 || evs[len(evs)-1].LeaseID != lease {
		t.Fatalf("the revocation's lease is not in the event: %+v", evs)
	}
	return evs
}

// hashLinker is a linker whose sys/audit-hash client talks to a local
// server speaking Vault's API, with its store in dir.
func hashLinker(t *testing.T, dir, url string) *identity.Linker {
	t.Helper()
	t.Setenv("AW_TEST_VAULT_TOKEN", it.VaultToken)
	cfg := identity.Config{AuditHash: identity.AuditHashConfig{Address: url, Device: "file", Token: secret.Secret{Env: "AW_TEST_VAULT_TOKEN"}}}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	h, err := identity.NewVaultAuditHash(cfg.AuditHash, nil)
	if err != nil {
		t.Fatal(err)
	}
	l, err := identity.New(cfg, identity.Options{Dir: dir, Hasher: h})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestBodyFormRevocation: a revocation with the lease id in the request
// body (HMAC'd, as Vault logs request data by default) is matched to the
// lease it revokes by HMACing the issued lease ids through sys/audit-hash
// (one call per lease, when one of its keys is used), across a restart;
// so a key used after it raises credential_after_lease. The clear form
// (sys mount tuned audit_non_hmac_request_keys=lease_id) needs no call;
// a revocation of another lease raises nothing.
func TestBodyFormRevocation(t *testing.T) {
	t0 := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	key := "AKIAEXAMPLEKEY000042"
	lease := "aws/creds/payments/req-1"
	afterLease := func(fs []schema.Finding) int {
		n := 0
		for _, f := range fs {
			if f.Detector == identity.DetectorAfterLease {
				n++
				if !strings.Contains(f.Reason, "its lease was revoked") || f.Severity != schema.SeverityHigh {
					t.Errorf("finding %+v", f)
				}
			}
		}
		return n
	}
	for _, path := range []string{"sys/leases/revoke", "sys/revoke"} {
		t.Run("hmac "+path, func(t *testing.T) {
			fv := &it.FakeVault{}
			srv := httptest.NewServer(fv)
			defer srv.Close()
			dir := filepath.Join(t.TempDir(), "identity")
			l := hashLinker(t, dir, srv.URL)
			fs := feed(t, l,
				vaultEvents(t, t0, "req-1", key),
				ctEvents(t, t0.Add(5*time.Minute), "u1", key, it.NATIP, nil),
				bodyRevokeEvent(t, t0.Add(10*time.Minute), path, it.VaultHMAC(lease)),
			)
			if len(fs) != 0 || fv.Calls.Load() != 0 {
				t.Fatalf("before the use after revocation: findings %+v, %d audit-hash calls", fs, fv.Calls.Load())
			}
			// restart: the unmatched revocation is in the store
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l = hashLinker(t, dir, srv.URL)
			defer l.Close()
			fs = feed(t, l,
				ctEvents(t, t0.Add(30*time.Minute), "u2", key, it.NATIP, nil),
				ctEvents(t, t0.Add(40*time.Minute), "u3", key, it.NATIP, nil),
			)
			if n := afterLease(fs); n != 1 {
				t.Fatalf("credential_after_lease findings %d, want 1: %+v", n, fs)
			}
			if c := fv.Calls.Load(); c != 1 {
				t.Fatalf("%d audit-hash calls, want 1 (the lease, once)", c)
			}
			if s := l.Stats(); s.Revoked != 1 {
				t.Fatalf("stats %+v", s)
			}
		})
	}
	t.Run("clear lease id", func(t *testing.T) {
		l := defaultLinker(t, nil)
		fs := feed(t, l,
			vaultEvents(t, t0, "req-1", key),
			bodyRevokeEvent(t, t0.Add(10*time.Minute), "sys/leases/revoke", lease),
			ctEvents(t, t0.Add(30*time.Minute), "u2", key, it.NATIP, nil),
		)
		if n := afterLease(fs); n != 1 {
			t.Fatalf("credential_after_lease findings %d: %+v", n, fs)
		}
	})
	t.Run("another lease revoked", func(t *testing.T) {
		fv := &it.FakeVault{}
		srv := httptest.NewServer(fv)
		defer srv.Close()
		l := hashLinker(t, t.TempDir(), srv.URL)
		defer l.Close()
		fs := feed(t, l,
			vaultEvents(t, t0, "req-1", key),
			bodyRevokeEvent(t, t0.Add(10*time.Minute), "sys/leases/revoke", it.VaultHMAC("aws/creds/payments/req-2")),
			ctEvents(t, t0.Add(30*time.Minute), "u2", key, it.NATIP, nil),
			ctEvents(t, t0.Add(31*time.Minute), "u3", key, it.NATIP, nil),
		)
		if len(fs) != 0 || fv.Calls.Load() != 1 {
			t.Fatalf("findings %+v, %d audit-hash calls (want 0 findings, 1 call)", fs, fv.Calls.Load())
		}
	})
}
