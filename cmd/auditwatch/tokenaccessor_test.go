package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestTokenAccessor: `query token-accessor` asks a server speaking Vault's
// API (LIST auth/token/accessors, POST sys/audit-hash/file) and prints the
// matching accessor and its revoke command.
func TestTokenAccessor(t *testing.T) {
	sum := func(s string) string {
		m := hmac.New(sha256.New, []byte("device-salt"))
		m.Write([]byte(s))
		return "hmac-sha256:" + hex.EncodeToString(m.Sum(nil))
	}
	var listed, hashed int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Vault-Token") != "s.incident" {
			http.Error(w, `{"errors":["permission denied"]}`, http.StatusForbidden)
			return
		}
		switch {
		case r.Method == "LIST" && r.URL.Path == "/v1/auth/token/accessors":
			listed++
			json.NewEncoder(w).Encode(map[string]any{"data": map[string]any{"keys": []string{"a1", "a2", "Tkn3"}}})
		case r.Method == http.MethodPost && r.URL.Path == "/v1/sys/audit-hash/file":
			hashed++
			var in struct{ Input string }
			json.NewDecoder(r.Body).Decode(&in)
			json.NewEncoder(w).Encode(map[string]string{"hash": sum(in.Input)})
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	t.Setenv("VAULT_ADDR", srv.URL)
	t.Setenv("VAULT_TOKEN", "s.incident")
	var out, errb bytes.Buffer
	if code := runQuery(context.Background(), []string{"token-accessor", "--hmac", sum("a2")}, nil, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if out.String() != "accessor: a2\nnext: vault token revoke -accessor 'a2'\n" || listed != 1 || hashed != 2 {
		t.Errorf("output %q after %d lists and %d hashes", out.String(), listed, hashed)
	}
	out.Reset()
	errb.Reset()
	if code := runQuery(context.Background(), []string{"token-accessor", "--hmac", sum("gone")}, nil, &out, &errb); code != 1 || !strings.Contains(errb.String(), "no live token accessor") {
		t.Errorf("unknown HMAC: exit %d, %s", code, errb.String())
	}
	t.Setenv("VAULT_TOKEN", "s.nosudo")
	errb.Reset()
	if code := runQuery(context.Background(), []string{"token-accessor", "--hmac", sum("a1")}, nil, &out, &errb); code != 1 || !strings.Contains(errb.String(), "403") || strings.Contains(errb.String(), "s.nosudo") {
		t.Errorf("token without sudo: exit %d, %s", code, errb.String())
	}
}
