package identity_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"auditwatch/config/duration"
	"auditwatch/identity"
	it "auditwatch/identity/identitytest"
	"auditwatch/internal/secret"
	"auditwatch/schema"
)

// events normalizes a Vault issue of key at at (clear form).
func vaultEvents(t *testing.T, at time.Time, reqID, key string) []schema.Event {
	var b bytes.Buffer
	it.VaultIssue(&b, at, reqID, key, true)
	return normalize(t, "vault.log", b.Bytes())
}

func ctEvents(t *testing.T, at time.Time, id, key, ip string, edit func(string) string) []schema.Event {
	var b bytes.Buffer
	it.CTUse(&b, at, id, key, ip)
	s := b.String()
	if edit != nil {
		s = edit(s)
	}
	return normalize(t, "ct.json", []byte(s))
}

func feed(t *testing.T, l *identity.Linker, evs ...[]schema.Event) []schema.Finding {
	var fs []schema.Finding
	for _, batch := range evs {
		for i := range batch {
			fs = l.Process(context.Background(), &batch[i], fs)
		}
	}
	return fs
}

func defaultLinker(t *testing.T, mod func(*identity.Config)) *identity.Linker {
	cfg := identity.Config{}
	if mod != nil {
		mod(&cfg)
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	l, err := identity.New(cfg, identity.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func revokeEvent(t *testing.T, at time.Time, path string) []schema.Event {
	line := `{"time":"` + at.Format(time.RFC3339Nano) + `","type":"response","auth":{"client_token":"hmac-sha256:aa","accessor":"hmac-sha256:bb","display_name":"root","policies":["root"],"token_policies":["root"],"token_type":"service"},"request":{"id":"rv-` + at.Format("150405") + `","operation":"update","mount_point":"sys/","mount_type":"system","client_token":"hmac-sha256:aa","namespace":{"id":"root"},"path":"` + path + `","remote_address":"10.0.9.9"},"response":{"mount_type":"system"}}` + "\n"
	return normalize(t, "vault.log", []byte(line))
}

func TestAfterLease(t *testing.T) {
	t0 := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	key := "AKIAEXAMPLEKEY000042"
	t.Run("use after a logged revocation", func(t *testing.T) {
		l := defaultLinker(t, nil)
		fs := feed(t, l,
			vaultEvents(t, t0, "req-1", key),
			ctEvents(t, t0.Add(5*time.Minute), "u1", key, it.NATIP, nil),
			revokeEvent(t, t0.Add(10*time.Minute), "sys/leases/revoke/aws/creds/payments/req-1"),
			ctEvents(t, t0.Add(12*time.Minute), "u2", key, it.NATIP, nil), // within grace
			ctEvents(t, t0.Add(30*time.Minute), "u3", key, it.NATIP, nil),
		)
		if len(fs) != 1 || fs[0].Detector != identity.DetectorAfterLease || fs[0].Severity != schema.SeverityHigh {
			t.Fatalf("findings %+v", fs)
		}
		if !strings.Contains(fs[0].Reason, "revoked") || !strings.Contains(fs[0].Reason, "revocation of the IAM user failed") {
			t.Errorf("reason %q", fs[0].Reason)
		}
	})
	t.Run("revoke-prefix", func(t *testing.T) {
		l := defaultLinker(t, nil)
		fs := feed(t, l,
			vaultEvents(t, t0, "req-1", key),
			revokeEvent(t, t0.Add(10*time.Minute), "sys/leases/revoke-prefix/aws/creds/payments"),
			ctEvents(t, t0.Add(30*time.Minute), "u3", key, it.NATIP, nil),
		)
		if len(fs) != 1 || fs[0].Detector != identity.DetectorAfterLease {
			t.Fatalf("findings %+v", fs)
		}
	})
	t.Run("use after the configured lease ttl", func(t *testing.T) {
		l := defaultLinker(t, func(c *identity.Config) {
			c.RoleLeaseTTL = map[string]duration.Duration{"payments": duration.Duration(15 * time.Minute)}
		})
		fs := feed(t, l,
			vaultEvents(t, t0, "req-1", key),
			ctEvents(t, t0.Add(10*time.Minute), "u1", key, it.NATIP, nil),
			ctEvents(t, t0.Add(25*time.Minute), "u2", key, it.NATIP, nil),
		)
		if len(fs) != 1 || fs[0].Detector != identity.DetectorAfterLease || !strings.Contains(fs[0].Reason, "expected end") {
			t.Fatalf("findings %+v", fs)
		}
	})
	t.Run("STS key past its expiry is medium", func(t *testing.T) {
		sts := "ASIAEXAMPLEKEY000042"
		l := defaultLinker(t, nil)
		fs := feed(t, l,
			vaultEvents(t, t0, "req-1", sts),
			ctEvents(t, t0.Add(2*time.Hour), "u1", sts, it.NATIP, nil),
		)
		if len(fs) != 1 || fs[0].Severity != schema.SeverityMedium {
			t.Fatalf("findings %+v", fs)
		}
	})
	t.Run("failed calls after the lease are not uses", func(t *testing.T) {
		l := defaultLinker(t, nil)
		fs := feed(t, l,
			vaultEvents(t, t0, "req-1", key),
			ctEvents(t, t0.Add(3*time.Hour), "u1", key, it.NATIP, func(s string) string {
				return strings.Replace(s, `"eventType"`, `"errorCode":"InvalidClientTokenId","errorMessage":"The security token included in the request is invalid.","eventType"`, 1)
			}),
		)
		if len(fs) != 0 {
			t.Fatalf("findings %+v", fs)
		}
	})
}

func TestMisuse(t *testing.T) {
	t0 := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	l := defaultLinker(t, nil)
	k1, k2 := "ASIAEXAMPLEKEY000001", "ASIAEXAMPLEKEY000002"
	asRole := func(role string) func(string) string {
		return func(s string) string {
			s = strings.Replace(s, `"type":"IAMUser"`, `"type":"AssumedRole"`, 1)
			i := strings.Index(s, `"arn":"`)
			j := strings.Index(s[i+7:], `"`)
			return s[:i+7] + "arn:aws:sts::" + it.Account + ":assumed-role/" + role + "/vault-approle-payments-1" + s[i+7+j:]
		}
	}
	fs := feed(t, l,
		vaultEvents(t, t0, "req-1", k1),
		ctEvents(t, t0.Add(time.Minute), "u1", k1, it.NATIP, asRole("payments-app")),
		vaultEvents(t, t0.Add(time.Hour), "req-2", k2),
		ctEvents(t, t0.Add(61*time.Minute), "u2", k2, it.NATIP, asRole("admin")),
	)
	if len(fs) != 1 || fs[0].Detector != identity.DetectorMisuse {
		t.Fatalf("findings %+v", fs)
	}
	if !strings.Contains(fs[0].Reason, "role/payments-app") || !strings.Contains(fs[0].Reason, "role/admin") {
		t.Errorf("reason %q", fs[0].Reason)
	}
}

func TestTrustedNetworksAndServiceAddresses(t *testing.T) {
	t0 := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	key := "AKIAEXAMPLEKEY000042"
	l := defaultLinker(t, func(c *identity.Config) {
		c.TrustedNetworks = []string{"192.0.2.0/24"}
		c.Learn = duration.Duration(time.Minute)
		c.LeaseTTL = duration.Duration(48 * time.Hour)
	})
	fs := feed(t, l,
		vaultEvents(t, t0, "req-1", key),
		ctEvents(t, t0.Add(time.Minute), "u1", key, it.NATIP, nil),
		ctEvents(t, t0.Add(3*time.Hour), "u2", key, "192.0.2.77", nil),
		ctEvents(t, t0.Add(3*time.Hour), "u3", key, "secretsmanager.amazonaws.com", nil),
		ctEvents(t, t0.Add(4*time.Hour), "u4", key, it.Elsewhere, nil),
		ctEvents(t, t0.Add(5*time.Hour), "u5", key, it.Elsewhere, nil), // the same network again: one finding
	)
	if len(fs) != 1 || fs[0].SourceIP != it.Elsewhere {
		t.Fatalf("findings %+v", fs)
	}
}

func TestUnlinkedKeysAreLeftAlone(t *testing.T) {
	l := defaultLinker(t, nil)
	evs := ctEvents(t, time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC), "u1", "AKIAEXAMPLEKEY999999", it.NATIP, nil)
	before := evs[0]
	fs := feed(t, l, evs)
	if len(fs) != 0 || evs[0].Principal != before.Principal || evs[0].KeyPrincipal != "" || evs[0].KeyIssue != "" {
		t.Fatalf("unlinked event changed: %+v, findings %v", evs[0], fs)
	}
	if st := l.Stats(); st.Unlinked != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestAuditHashErrorsNameNoSecret(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		w.Write([]byte(`{"errors":["permission denied"]}`))
	}))
	defer srv.Close()
	t.Setenv("AW_TEST_TOKEN", "s.very-secret-token")
	c, err := identity.NewVaultAuditHash(identity.AuditHashConfig{Address: srv.URL, Device: "file", Token: secret.Secret{Env: "AW_TEST_TOKEN"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Hash(context.Background(), "AKIAEXAMPLEKEY000042")
	if !errors.Is(err, identity.ErrAuditHash) || !strings.Contains(err.Error(), "HTTP 403") {
		t.Fatalf("err %v", err)
	}
	if strings.Contains(err.Error(), "very-secret") || strings.Contains(err.Error(), "AKIAEXAMPLEKEY000042") {
		t.Fatalf("error leaks the token or the hashed value: %v", err)
	}
	// a hasher that fails leaves keys unlinked and counts the error
	cfg := identity.Config{}
	cfg.SetDefaults()
	l, err := identity.New(cfg, identity.Options{Hasher: c})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	t0 := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	it.VaultIssue(&b, t0, "req-1", "AKIAEXAMPLEKEY000042", false)
	fs := feed(t, l, normalize(t, "vault.log", b.Bytes()), ctEvents(t, t0.Add(time.Minute), "u1", "AKIAEXAMPLEKEY000042", it.NATIP, nil))
	if st := l.Stats(); len(fs) != 0 || st.HashErrors != 1 || st.Unlinked != 1 {
		t.Fatalf("stats %+v findings %v", st, fs)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  identity.Config
		want []string
	}{
		{"defaults", identity.Config{}, nil},
		{"bad network", identity.Config{TrustedNetworks: []string{"10.0.0.0/33", "nope"}}, []string{"trusted_networks[0]", "trusted_networks[1]"}},
		{"bad prefix", identity.Config{IPv4Prefix: 40}, []string{"ipv4_prefix"}},
		{"audit hash without device and token", identity.Config{AuditHash: identity.AuditHashConfig{Address: "https://vault:8200"}}, []string{"audit_hash.device", "audit_hash.token"}},
		{"audit hash bad address", identity.Config{AuditHash: identity.AuditHashConfig{Address: "vault:8200", Device: "file", Token: secret.Secret{Env: "X"}}}, []string{"audit_hash.address"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.cfg
			c.SetDefaults()
			err := c.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %v", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %s", err, w)
				}
			}
		})
	}
}
