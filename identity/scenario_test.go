package identity_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"auditwatch/identity"
	"auditwatch/ingest"
	"auditwatch/internal/secret"
	"auditwatch/schema"
)

// The scenario: Vault's AWS secrets engine issues payments-api a key a day
// for a week (aws/creds/payments); each day's key is used from the
// company's NAT address; on the last day the key is also used from
// elsewhere.
const (
	salt      = "audit-device-salt"
	vaultTok  = "s.audit-hash-only-token"
	entityID  = "0b3c6f1e-7d2a-4c59-9e11-5a8f2b7c9d01"
	natIP     = "198.51.100.7"
	elsewhere = "203.0.113.50"
	account   = "111122223333"
)

func vaultHMAC(v string) string {
	m := hmac.New(sha256.New, []byte(salt))
	m.Write([]byte(v))
	return "hmac-sha256:" + hex.EncodeToString(m.Sum(nil))
}

func dayKey(d int) string { return fmt.Sprintf("AKIAEXAMPLEKEY%06d", d) }

// vaultIssue writes the request and response entries of one aws/creds read
// as Vault's file audit device does (access_key HMAC'd unless clear).
func vaultIssue(w *bytes.Buffer, at time.Time, reqID, key string, clear bool) {
	auth := map[string]any{
		"client_token": vaultHMAC("hvs.token-" + reqID), "accessor": vaultHMAC("accessor-1"),
		"display_name": "approle", "policies": []string{"default", "payments"},
		"token_policies": []string{"default", "payments"}, "metadata": map[string]string{"role_name": "payments-api"},
		"entity_id": entityID, "token_type": "service", "token_ttl": 3600,
	}
	req := map[string]any{
		"id": reqID, "operation": "read", "mount_point": "aws/", "mount_type": "aws",
		"client_token": vaultHMAC("hvs.token-" + reqID), "client_token_accessor": vaultHMAC("accessor-1"),
		"namespace": map[string]string{"id": "root"}, "path": "aws/creds/payments", "remote_address": "10.0.4.7",
	}
	ak := key
	if !clear {
		ak = vaultHMAC(key)
	}
	line := func(v any) {
		b, _ := json.Marshal(v)
		w.Write(b)
		w.WriteByte('\n')
	}
	ts := at.UTC().Format(time.RFC3339Nano)
	line(map[string]any{"time": ts, "type": "request", "auth": auth, "request": req})
	line(map[string]any{"time": ts, "type": "response", "auth": auth, "request": req, "response": map[string]any{
		"mount_point": "aws/", "mount_type": "aws",
		"secret": map[string]string{"lease_id": "aws/creds/payments/" + reqID},
		"data":   map[string]any{"access_key": ak, "secret_key": vaultHMAC("secret-" + key), "security_token": nil},
	}})
}

// ctUse writes one CloudTrail GetSecretValue record made with key.
func ctUse(w *bytes.Buffer, at time.Time, id, key, ip string) {
	user := "vault-approle-payments-" + strings.TrimPrefix(key, "AKIAEXAMPLEKEY")
	rec := map[string]any{
		"eventVersion": "1.09",
		"userIdentity": map[string]any{
			"type": "IAMUser", "principalId": "AIDAEXAMPLE" + key[len(key)-6:],
			"arn": "arn:aws:iam::" + account + ":user/" + user, "accountId": account,
			"accessKeyId": key, "userName": user,
		},
		"eventTime": at.UTC().Format(time.RFC3339), "eventSource": "secretsmanager.amazonaws.com",
		"eventName": "GetSecretValue", "awsRegion": "us-east-1", "sourceIPAddress": ip,
		"userAgent": "aws-sdk-go-v2/1.30.0", "requestParameters": map[string]string{"secretId": "prod-db"},
		"responseElements": nil, "requestID": "req-" + id, "eventID": id, "readOnly": true,
		"resources": []map[string]string{{"accountId": account, "type": "AWS::SecretsManager::Secret",
			"ARN": "arn:aws:secretsmanager:us-east-1:" + account + ":secret:prod-db-AbCdEf"}},
		"eventType": "AwsApiCall", "managementEvent": true, "recipientAccountId": account,
	}
	b, _ := json.Marshal(rec)
	w.Write(b)
	w.WriteByte('\n')
}

// week builds the scenario's Vault log and CloudTrail log. form(d) says
// whether day d's key is logged in clear.
func week(form func(d int) bool) (vault, ct []byte) {
	var v, c bytes.Buffer
	start := time.Date(2026, 11, 20, 10, 2, 0, 0, time.UTC)
	for d := range 7 {
		day := start.Add(time.Duration(d) * 24 * time.Hour)
		vaultIssue(&v, day, fmt.Sprintf("7f1e0c2a-0000-4000-8000-%012d", d), dayKey(d), form(d))
		for u := range 6 {
			ctUse(&c, day.Add(time.Duration(3+u*7)*time.Minute), fmt.Sprintf("ev-%d-%d", d, u), dayKey(d), natIP)
		}
		if d == 6 {
			ctUse(&c, day.Add(40*time.Minute), "ev-exfil-1", dayKey(d), elsewhere)
			ctUse(&c, day.Add(41*time.Minute), "ev-exfil-2", dayKey(d), elsewhere)
		}
	}
	return v.Bytes(), c.Bytes()
}

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

// fakeVault speaks Vault's sys/audit-hash API: POST
// /v1/sys/audit-hash/<device> with X-Vault-Token and {"input": …}.
type fakeVault struct {
	calls atomic.Int64
}

func (f *fakeVault) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/sys/audit-hash/file" {
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"errors":["unsupported path"]}`)
		return
	}
	if r.Header.Get("X-Vault-Token") != vaultTok {
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, `{"errors":["permission denied"]}`)
		return
	}
	var in struct {
		Input string `json:"input"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.Input == "" {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"errors":["missing input"]}`)
		return
	}
	f.calls.Add(1)
	h := vaultHMAC(in.Input)
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"request_id":"x","lease_id":"","renewable":false,"lease_duration":0,"data":{"hash":%q},"hash":%q}`, h, h)
}

func newLinker(t *testing.T, withHash bool) (*identity.Linker, *fakeVault) {
	t.Helper()
	cfg := identity.Config{}
	fv := &fakeVault{}
	var h identity.AuditHasher
	if withHash {
		srv := httptest.NewServer(fv)
		t.Cleanup(srv.Close)
		t.Setenv("AW_TEST_VAULT_TOKEN", vaultTok)
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
			vault, ct := week(tc.clear)
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
			if f.SourceIP != elsewhere || f.Principal != entityID || f.PrincipalName != "payments-api" {
				t.Errorf("finding names %q/%q from %q", f.Principal, f.PrincipalName, f.SourceIP)
			}
			for _, want := range []string{"payments-api", entityID, dayKey(6), elsewhere, "198.51.100.0/24", "10.0.4.7"} {
				if !strings.Contains(f.Reason, want) {
					t.Errorf("reason %q does not name %q", f.Reason, want)
				}
			}
			if f.Attributes["access_key"] != dayKey(6) || f.Attributes["vault_display_name"] != "payments-api" ||
				f.Attributes["vault_principal"] != entityID || !strings.HasPrefix(f.Attributes["aws_principal"], "arn:aws:iam::"+account+":user/vault-") {
				t.Errorf("attributes %v", f.Attributes)
			}
			// every CloudTrail event is linked: it names the Vault identity,
			// and keeps the AWS principal beside it
			for _, ev := range evs {
				if ev.Principal != entityID || ev.PrincipalName != "payments-api" || !strings.Contains(ev.KeyPrincipal, ":user/vault-approle-payments-") ||
					!strings.HasPrefix(ev.KeyIssue, "issued by Vault to payments-api (entity "+entityID+") at ") {
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
			if got := fv.calls.Load(); got != int64(hmacDays) {
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
	vault, ct := week(func(int) bool { return true })
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
	vault, ct := week(func(int) bool { return true })
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
