package vaultapi

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// vaultServer speaks the two Vault API calls: LIST auth/token/accessors
// (sudo) and POST sys/audit-hash/<device>, hashing as an audit device does
// (hmac-sha256 with the device's salt).
func vaultServer(t *testing.T, token string, accessors []string, salt string) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Vault-Token") != token {
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, `{"errors":["permission denied"]}`)
			return
		}
		switch {
		case r.Method == "LIST" && r.URL.Path == "/v1/auth/token/accessors":
			json.NewEncoder(w).Encode(map[string]any{"data": map[string]any{"keys": accessors}})
		case r.Method == http.MethodPost && r.URL.Path == "/v1/sys/audit-hash/file":
			var in struct{ Input string }
			json.NewDecoder(r.Body).Decode(&in)
			json.NewEncoder(w).Encode(map[string]string{"hash": hash(salt, in.Input)})
		default:
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"errors":[]}`)
		}
	}))
}

func hash(salt, s string) string {
	m := hmac.New(sha256.New, []byte(salt))
	m.Write([]byte(s))
	return "hmac-sha256:" + hex.EncodeToString(m.Sum(nil))
}

func TestFindAccessor(t *testing.T) {
	accs := []string{"acc-one", "acc-two", "acc-three"}
	srv := vaultServer(t, "s.root", accs, "salt")
	defer srv.Close()
	c := &Client{Addr: srv.URL, Token: "s.root"}
	ctx := context.Background()
	got, n, err := c.FindAccessor(ctx, "file/", hash("salt", "acc-two"))
	if err != nil || got != "acc-two" || n != 2 {
		t.Fatalf("FindAccessor = %q after %d, %v; want acc-two after 2", got, n, err)
	}
	if _, n, err := c.FindAccessor(ctx, "file", hash("salt", "revoked")); !errors.Is(err, ErrNotFound) || n != 3 {
		t.Errorf("unknown HMAC: %d hashed, %v", n, err)
	}
	bad := &Client{Addr: srv.URL, Token: "s.nope"}
	_, _, err = bad.FindAccessor(ctx, "file", hash("salt", "acc-one"))
	if err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "permission denied") || strings.Contains(err.Error(), "s.nope") {
		t.Errorf("without sudo: %v", err)
	}
}
