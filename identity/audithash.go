package identity

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
)

// ErrAuditHash marks a failed sys/audit-hash call. Its messages name the
// endpoint and the HTTP status, never the token or the hashed value.
var ErrAuditHash = errors.New("vault audit-hash")

// VaultAuditHash asks Vault's sys/audit-hash/<device> endpoint for the
// HMAC an audit device writes for a value. The token needs only `update`
// on that path (deploy/vault/audit-hash-policy.hcl).
type VaultAuditHash struct {
	endpoint  string
	token     string
	namespace string
	client    *http.Client
}

// NewVaultAuditHash builds the client for cfg (Address, Device, Namespace,
// Token). client may be nil (http.DefaultClient's transport, no timeout:
// the Linker bounds each call).
func NewVaultAuditHash(cfg AuditHashConfig, client *http.Client) (*VaultAuditHash, error) {
	tok, err := cfg.Token.Value()
	if err != nil {
		return nil, fmt.Errorf("identity: audit_hash.token: %w", err)
	}
	if client == nil {
		client = &http.Client{}
	}
	return &VaultAuditHash{
		endpoint:  strings.TrimSuffix(cfg.Address, "/") + "/v1/sys/audit-hash/" + url.PathEscape(strings.Trim(cfg.Device, "/")),
		token:     tok,
		namespace: cfg.Namespace,
		client:    client,
	}, nil
}

// Hash returns Vault's "hmac-sha256:…" of input.
func (v *VaultAuditHash) Hash(ctx context.Context, input string) (string, error) {
	body, _ := json.Marshal(map[string]string{"input": input})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, v.endpoint, bytes.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrAuditHash, err)
	}
	req.Header.Set("X-Vault-Token", v.token)
	req.Header.Set("Content-Type", "application/json")
	if v.namespace != "" {
		req.Header.Set("X-Vault-Namespace", v.namespace)
	}
	resp, err := v.client.Do(req)
	if err != nil {
		// the url.Error names the endpoint only (no token in it)
		return "", fmt.Errorf("%w: %s: %v", ErrAuditHash, v.endpoint, errors.Unwrap(err))
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%w: %s: HTTP %d", ErrAuditHash, v.endpoint, resp.StatusCode)
	}
	var out struct {
		Hash string `json:"hash"`
		Data struct {
			Hash string `json:"hash"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return "", fmt.Errorf("%w: %s: response: %v", ErrAuditHash, v.endpoint, err)
	}
	h := out.Hash
	if h == "" {
		h = out.Data.Hash
	}
	if !strings.HasPrefix(h, "hmac-sha256:") {
		return "", fmt.Errorf("%w: %s: response has no hmac-sha256 hash", ErrAuditHash, v.endpoint)
	}
	return h, nil
}
