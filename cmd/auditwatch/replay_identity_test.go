package main

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"auditwatch/identity"
	it "auditwatch/identity/identitytest"
	"auditwatch/netinfo/netinfotest"
)

// TestReplayLinksVaultIssuedKeys replays a week of Vault-issued keys (the
// Vault log HMACs them; the config points identity.audit_hash at a local
// server speaking Vault's sys/audit-hash API) with the CloudTrail uses of
// each day's key from the company NAT, and on the last day from elsewhere:
// exactly one credential_exfiltration finding, naming the Vault identity,
// and no finding of any detector for the NAT uses; with the geo: section
// the finding says where the address is.
func TestReplayLinksVaultIssuedKeys(t *testing.T) {
	fv := &it.FakeVault{}
	srv := httptest.NewServer(fv)
	defer srv.Close()
	t.Setenv("AW_TEST_AUDIT_HASH_TOKEN", it.VaultToken)
	dir := t.TempDir()
	vault, ct := it.Week(func(d int) bool { return d%2 == 0 })
	vp, cp := filepath.Join(dir, "vault-audit.log"), filepath.Join(dir, "cloudtrail.json")
	must(t, os.WriteFile(vp, vault, 0o600))
	must(t, os.WriteFile(cp, ct, 0o600))
	geo := filepath.Join(dir, "geo")
	must(t, os.MkdirAll(geo, 0o755))
	must(t, netinfotest.Files(geo, netinfotest.Default))
	cfg := filepath.Join(dir, "auditwatch.yaml")
	must(t, os.WriteFile(cfg, []byte(`geo:
  dir: `+geo+`
identity:
  audit_hash:
    address: `+srv.URL+`
    device: file
    token: {env: AW_TEST_AUDIT_HASH_TOKEN}
`), 0o600))

	fs, stderr, code := replay(t, context.Background(), "--config", cfg, vp, cp)
	if code != 0 {
		t.Fatalf("replay exit %d: %s", code, stderr)
	}
	var exfil int
	for _, f := range fs {
		for _, id := range f.EventIDs {
			if strings.HasPrefix(id, "ev-") && !strings.HasPrefix(id, "ev-exfil") {
				t.Errorf("%s finding for a NAT use of a day's key: %s", f.Detector, f.Reason)
			}
		}
		if f.Detector == identity.DetectorExfiltration {
			exfil++
			if f.Principal != it.EntityID || f.PrincipalName != "payments-api" || !strings.Contains(f.Reason, it.EntityID) ||
				!strings.Contains(f.Summary, "203.0.113.50 (BR, AS64511 Hosting Example Ltda)") {
				t.Errorf("exfiltration finding does not name the Vault identity: %+v", f)
			}
		}
	}
	if exfil != 1 {
		t.Fatalf("credential_exfiltration findings: %d, want 1 (all: %d)", exfil, len(fs))
	}
	if fv.Calls.Load() == 0 {
		t.Fatal("the HMAC'd keys were never resolved through sys/audit-hash")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
