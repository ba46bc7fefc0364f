// Package identitytest builds the credential-linking scenario shared by
// the identity package's tests and the replay test: Vault's AWS secrets
// engine issues payments-api a key a day for a week (aws/creds/payments,
// logged in clear or HMAC'd), each day's key is used from the company's
// NAT address, and on the last day also from elsewhere; and a local server
// speaking Vault's sys/audit-hash API with the audit device's salt.
package identitytest

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// Scenario constants.
const (
	Salt       = "audit-device-salt"
	VaultToken = "s.audit-hash-only-token"
	EntityID   = "0b3c6f1e-7d2a-4c59-9e11-5a8f2b7c9d01"
	NATIP      = "198.51.100.7"
	Elsewhere  = "203.0.113.50"
	Account    = "111122223333"
)

// VaultHMAC is what Vault's audit device writes for v.
func VaultHMAC(v string) string {
	m := hmac.New(sha256.New, []byte(Salt))
	m.Write([]byte(v))
	return "hmac-sha256:" + hex.EncodeToString(m.Sum(nil))
}

// DayKey is the access key Vault issues on day d.
func DayKey(d int) string { return fmt.Sprintf("AKIAEXAMPLEKEY%06d", d) }

// VaultIssue writes the request and response entries of one aws/creds read
// as Vault's file audit device does (access_key HMAC'd unless clear).
func VaultIssue(w *bytes.Buffer, at time.Time, reqID, key string, clear bool) {
	auth := map[string]any{
		"client_token": VaultHMAC("hvs.token-" + reqID), "accessor": VaultHMAC("accessor-1"),
		"display_name": "approle", "policies": []string{"default", "payments"},
		"token_policies": []string{"default", "payments"}, "metadata": map[string]string{"role_name": "payments-api"},
		"entity_id": EntityID, "token_type": "service", "token_ttl": 3600,
	}
	req := map[string]any{
		"id": reqID, "operation": "read", "mount_point": "aws/", "mount_type": "aws",
		"client_token": VaultHMAC("hvs.token-" + reqID), "client_token_accessor": VaultHMAC("accessor-1"),
		"namespace": map[string]string{"id": "root"}, "path": "aws/creds/payments", "remote_address": "10.0.4.7",
	}
	ak := key
	if !clear {
		ak = VaultHMAC(key)
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
		"data":   map[string]any{"access_key": ak, "secret_key": VaultHMAC("secret-" + key), "security_token": nil},
	}})
}

// CTUse writes one CloudTrail GetSecretValue record made with key.
func CTUse(w *bytes.Buffer, at time.Time, id, key, ip string) {
	user := "vault-approle-payments-" + strings.TrimPrefix(key, "AKIAEXAMPLEKEY")
	rec := map[string]any{
		"eventVersion": "1.09",
		"userIdentity": map[string]any{
			"type": "IAMUser", "principalId": "AIDAEXAMPLE" + key[len(key)-6:],
			"arn": "arn:aws:iam::" + Account + ":user/" + user, "accountId": Account,
			"accessKeyId": key, "userName": user,
		},
		"eventTime": at.UTC().Format(time.RFC3339), "eventSource": "secretsmanager.amazonaws.com",
		"eventName": "GetSecretValue", "awsRegion": "us-east-1", "sourceIPAddress": ip,
		"userAgent": "aws-sdk-go-v2/1.30.0", "requestParameters": map[string]string{"secretId": "prod-db"},
		"responseElements": nil, "requestID": "req-" + id, "eventID": id, "readOnly": true,
		"resources": []map[string]string{{"accountId": Account, "type": "AWS::SecretsManager::Secret",
			"ARN": "arn:aws:secretsmanager:us-east-1:" + Account + ":secret:prod-db-AbCdEf"}},
		"eventType": "AwsApiCall", "managementEvent": true, "recipientAccountId": Account,
	}
	b, _ := json.Marshal(rec)
	w.Write(b)
	w.WriteByte('\n')
}

// Week builds the scenario's Vault log and CloudTrail log. form(d) says
// whether day d's key is logged in clear.
func Week(form func(d int) bool) (vault, ct []byte) {
	var v, c bytes.Buffer
	start := time.Date(2026, 11, 20, 10, 2, 0, 0, time.UTC)
	for d := range 7 {
		day := start.Add(time.Duration(d) * 24 * time.Hour)
		VaultIssue(&v, day, fmt.Sprintf("7f1e0c2a-0000-4000-8000-%012d", d), DayKey(d), form(d))
		for u := range 6 {
			CTUse(&c, day.Add(time.Duration(3+u*7)*time.Minute), fmt.Sprintf("ev-%d-%d", d, u), DayKey(d), NATIP)
		}
		if d == 6 {
			CTUse(&c, day.Add(40*time.Minute), "ev-exfil-1", DayKey(d), Elsewhere)
			CTUse(&c, day.Add(41*time.Minute), "ev-exfil-2", DayKey(d), Elsewhere)
		}
	}
	return v.Bytes(), c.Bytes()
}

// FakeVault speaks Vault's sys/audit-hash API: POST
// /v1/sys/audit-hash/<device> with X-Vault-Token and {"input": …}.
type FakeVault struct {
	Calls atomic.Int64
}

func (f *FakeVault) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/sys/audit-hash/file" {
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"errors":["unsupported path"]}`)
		return
	}
	if r.Header.Get("X-Vault-Token") != VaultToken {
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
	f.Calls.Add(1)
	h := VaultHMAC(in.Input)
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"request_id":"x","lease_id":"","renewable":false,"lease_duration":0,"data":{"hash":%q},"hash":%q}`, h, h)
}
