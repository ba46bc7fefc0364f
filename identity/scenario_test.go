package identity_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"auditwatch/identity"
	it "auditwatch/identity/identitytest"
	"auditwatch/ingest"
	"auditwatch/internal/secret"
	"auditwatch/schema"
)

func normalize(t *testing.T, name string, b []byte) []schema.Event {
	t.Helper()
	r := ingest.NewReader(bytes.NewReader(b), name, ingest.DefaultOptions())
	var evs []schema.Event
	for {
		ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: record rejected: %v", name, err)
		}
		evs = append(evs, ev)
	}
	return evs
}

func newLinker(t *testing.T, withHash bool) (*identity.Linker, *it.FakeVault) {
	t.Helper()
	cfg := identity.Config{}
	fv := &it.FakeVault{}
	var h identity.AuditHasher
	if withHash {
		srv := httptest.NewServer(fv)
		t.Cleanup(srv.Close)
		t.Setenv("AW_TEST_VAULT_TOKEN", it.VaultToken)
		cfg.AuditHash = identity.AuditHashConfig{Address: srv.URL, Device: "file", Token: secret.Secret{Env: "AW_TEST_VAULT_TOKEN"}}
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if withHash {
		c, err := identity.NewVaultAuditHash(cfg.AuditHash, nil)
		if err != nil {
			t.Fatal(err)
		}
		h = c
	}
	l, err := identity.New(cfg, identity.Options{Dir: t.TempDir(), Hasher: h})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, fv
}

// run feeds the Vault events, then the CloudTrail events (CloudTrail is
// delivered minutes after Vault logs the issue), through l.
func run(t *testing.T, l *identity.Linker, vault, ct []byte) ([]schema.Finding, []schema.Event) {
	t.Helper()
	var fs []schema.Finding
	ctx := context.Background()
	for _, ev := range normalize(t, "vault.log", vault) {
		fs = l.Process(ctx, &ev, fs)
	}
	var linked []schema.Event
	for _, ev := range normalize(t, "cloudtrail.json", ct) {
		fs = l.Process(ctx, &ev, fs)
		linked = append(linked, ev)
	}
	return fs, linked
}

func TestWeekOfVaultIssuedKeys(t *testing.T) {
	for _, tc := range []struct {
		name     string
		clear    func(d int) bool
		withHash bool
	}{
		{"clear (audit_non_hmac_response_keys=access_key)", func(int) bool { return true }, false},
		{"hmac'd, resolved through sys/audit-hash", func(int) bool { return false }, true},
		{"mixed", func(d int) bool { return d%2 == 0 }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, fv := newLinker(t, tc.withHash)
			vault, ct := it.Week(tc.clear)
			fs, evs := run(t, l, vault, ct)
			if len(fs) != 1 {
				for _, f := range fs {
					t.Logf("finding: %s %s: %s", f.Detector, f.Severity, f.Reason)
				}
				t.Fatalf("want exactly one finding (the exfiltration), got %d", len(fs))
			}
			f := fs[0]
			if f.Detector != identity.DetectorExfiltration || f.Severity != schema.SeverityCritical {
				t.Fatalf("finding %s/%s, want %s/critical", f.Detector, f.Severity, identity.DetectorExfiltration)
			}
			if f.SourceIP != it.Elsewhere || f.Principal != it.EntityID || f.PrincipalName != "payments-api" {
				t.Errorf("finding names %q/%q from %q", f.Principal, f.PrincipalName, f.SourceIP)
			}
			for _, want := range []string{"payments-api", it.EntityID, it.DayKey(6), it.Elsewhere, "198.51.100.0/24", "10.0.4.7"} {
				if !strings.Contains(f.Reason, want) {
					t.Errorf("reason %q does not name %q", f.Reason, want)
				}
			}
			if f.Attributes["access_key"] != it.DayKey(6) || f.Attributes["vault_display_name"] != "payments-api" ||
				f.Attributes["vault_principal"] != it.EntityID || !strings.HasPrefix(f.Attributes["aws_principal"], "arn:aws:iam::"+it.Account+":user/vault-") {
				t.Errorf("attributes %v", f.Attributes)
			}
			// every CloudTrail event is linked: it names the Vault identity,
			// and keeps the AWS principal beside it
			for _, ev := range evs {
				if ev.Principal != it.EntityID || ev.PrincipalName != "payments-api" || !strings.Contains(ev.KeyPrincipal, ":user/vault-approle-payments-") ||
					!strings.HasPrefix(ev.KeyIssue, "issued by Vault to payments-api (entity "+it.EntityID+") at ") {
					t.Fatalf("event %s not linked: principal %q key principal %q issue %q", ev.ID, ev.Principal, ev.KeyPrincipal, ev.KeyIssue)
				}
			}
			st := l.Stats()
			if st.Issued != 7 || st.Linked != uint64(len(evs)) || st.Unlinked != 0 {
				t.Errorf("stats %+v", st)
			}
			// one audit-hash call per distinct HMAC'd key, none for keys in clear
			hmacDays := 0
			for d := range 7 {
				if !tc.clear(d) {
					hmacDays++
				}
			}
			if got := fv.Calls.Load(); got != int64(hmacDays) {
				t.Errorf("audit-hash calls %d, want %d (one per HMAC'd key, cached)", got, hmacDays)
			}
		})
	}
}

// A restart keeps links and learned networks: the second half of the
// CloudTrail log, processed by a new Linker over the same directory, links
// and raises the same single finding.
func TestLinksSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := identity.Config{}
	cfg.SetDefaults()
	open := func() *identity.Linker {
		l, err := identity.New(cfg, identity.Options{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	vault, ct := it.Week(func(int) bool { return true })
	ctx := context.Background()
	l := open()
	var fs []schema.Finding
	for _, ev := range normalize(t, "vault.log", vault) {
		fs = l.Process(ctx, &ev, fs)
	}
	cts := normalize(t, "cloudtrail.json", ct)
	half := len(cts) / 2
	for _, ev := range cts[:half] {
		fs = l.Process(ctx, &ev, fs)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = open()
	defer l.Close()
	if l.Links() != 7 {
		t.Fatalf("links after restart: %d, want 7", l.Links())
	}
	for _, ev := range cts[half:] {
		fs = l.Process(ctx, &ev, fs)
		if ev.KeyPrincipal == "" {
			t.Fatalf("event %s unlinked after restart", ev.ID)
		}
	}
	if len(fs) != 1 || fs[0].Detector != identity.DetectorExfiltration {
		t.Fatalf("findings after restart: %+v", fs)
	}
}

// A replay of the same input raises the same finding id (the outputs'
// ledger drops the repeat) and adds no link twice.
func TestReplayIsIdempotent(t *testing.T) {
	dir := t.TempDir()
	cfg := identity.Config{}
	cfg.SetDefaults()
	vault, ct := it.Week(func(int) bool { return true })
	var ids []string
	for range 2 {
		l, err := identity.New(cfg, identity.Options{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		fs, _ := run(t, l, vault, ct)
		if len(fs) != 1 {
			t.Fatalf("findings: %d", len(fs))
		}
		ids = append(ids, fs[0].ID)
		if l.Links() != 7 {
			t.Fatalf("links %d, want 7", l.Links())
		}
		l.Close()
	}
	if ids[0] != ids[1] {
		t.Fatalf("finding id changed across a replay: %s vs %s", ids[0], ids[1])
	}
}
