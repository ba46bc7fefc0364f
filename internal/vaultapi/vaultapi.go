// Package vaultapi owns the few Vault / OpenBao HTTP API calls auditwatch
// makes itself: finding a token's accessor from the HMAC an audit device
// logged (list the accessors, hash each through the audit device's
// sys/audit-hash until one matches). The token comes from the caller
// (VAULT_TOKEN), never from a config file, and never appears in errors.
package vaultapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// ErrNotFound is returned when no live token's accessor hashes to the HMAC.
var ErrNotFound = errors.New("no live token accessor matches the HMAC (the token may have expired or been revoked)")

// Client calls one Vault server.
type Client struct {
	// Addr is the server's base URL (VAULT_ADDR), e.g. https://vault:8200.
	Addr string
	// Token authenticates (X-Vault-Token); listing accessors needs sudo on
	// auth/token/accessors, hashing needs update on sys/audit-hash/<path>.
	Token string
	// Namespace is sent as X-Vault-Namespace when set.
	Namespace string
	HTTP      *http.Client
}

func (c *Client) do(ctx context.Context, method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	u := strings.TrimRight(c.Addr, "/") + "/v1/" + path
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return fmt.Errorf("vault %s: %w", path, err)
	}
	req.Header.Set("X-Vault-Token", c.Token)
	req.Header.Set("X-Vault-Request", "true")
	if c.Namespace != "" {
		req.Header.Set("X-Vault-Namespace", c.Namespace)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("vault %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("vault %s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct{ Errors []string }
		json.Unmarshal(raw, &e)
		msg := strings.Join(e.Errors, "; ")
		if len(msg) > 300 {
			msg = msg[:300]
		}
		return fmt.Errorf("vault %s %s: %s: %s", method, path, resp.Status, msg)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("vault %s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// Accessors lists every live token's accessor (LIST auth/token/accessors).
func (c *Client) Accessors(ctx context.Context) ([]string, error) {
	var out struct {
		Data struct {
			Keys []string `json:"keys"`
		} `json:"data"`
	}
	if err := c.do(ctx, "LIST", "auth/token/accessors", nil, &out); err != nil {
		return nil, err
	}
	return out.Data.Keys, nil
}

// AuditHash returns input hashed as the audit device at path (e.g. "file")
// hashes it (POST sys/audit-hash/<path>).
func (c *Client) AuditHash(ctx context.Context, device, input string) (string, error) {
	var out struct {
		Hash string `json:"hash"`
		Data struct {
			Hash string `json:"hash"`
		} `json:"data"`
	}
	if err := c.do(ctx, http.MethodPost, "sys/audit-hash/"+url.PathEscape(strings.Trim(device, "/")), map[string]string{"input": input}, &out); err != nil {
		return "", err
	}
	if out.Hash == "" {
		out.Hash = out.Data.Hash
	}
	if out.Hash == "" {
		return "", fmt.Errorf("vault sys/audit-hash/%s: answer has no hash", device)
	}
	return out.Hash, nil
}

// FindAccessor returns the live accessor whose HMAC under the audit device
// equals hmac, and how many accessors it hashed.
func (c *Client) FindAccessor(ctx context.Context, device, hmac string) (string, int, error) {
	accs, err := c.Accessors(ctx)
	if err != nil {
		return "", 0, err
	}
	for i, a := range accs {
		h, err := c.AuditHash(ctx, device, a)
		if err != nil {
			return "", i, err
		}
		if h == hmac {
			return a, i + 1, nil
		}
	}
	return "", len(accs), ErrNotFound
}
