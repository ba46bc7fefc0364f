package webhook

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"auditwatch/alert/outputtest"
	"auditwatch/internal/secret"
)

// httpPeer is a webhook receiver whose behaviour the suite switches.
type httpPeer struct {
	mu       sync.Mutex
	mode     outputtest.Mode
	payloads [][]byte
	keys     []string
	events   int
	requests int
}

func (p *httpPeer) serve(w http.ResponseWriter, r *http.Request) {
	// Read the body first: only then does the server notice a client
	// that gives up (the request context ends).
	b, _ := io.ReadAll(r.Body)
	p.mu.Lock()
	mode := p.mode
	p.mu.Unlock()
	switch mode {
	case outputtest.Hang:
		<-r.Context().Done()
		return
	case outputtest.FailRetryable:
		w.Header().Set("Retry-After", "2")
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	case outputtest.FailPermanent:
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if strings.HasPrefix(string(b), "[") {
		var arr []any
		_ = json.Unmarshal(b, &arr)
		p.events += len(arr)
		p.requests++
		return
	}
	p.payloads = append(p.payloads, b)
	p.keys = append(p.keys, r.Header.Get("Idempotency-Key"))
}

func TestConformance(t *testing.T) {
	outputtest.Run(t, func(t *testing.T) outputtest.Target {
		p := &httpPeer{}
		srv := httptest.NewServer(http.HandlerFunc(p.serve))
		t.Cleanup(srv.Close)
		t.Setenv("AW_TEST_WEBHOOK_TOKEN", "whk-secret-token-123")
		url := srv.URL + "/hooks/path-secret-abc123?key=query-secret-xyz"
		n, err := New(Config{URL: url, Token: secret.Secret{Env: "AW_TEST_WEBHOOK_TOKEN"}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		return outputtest.Target{
			Output: n,
			Payloads: func() [][]byte {
				p.mu.Lock()
				defer p.mu.Unlock()
				return append([][]byte(nil), p.payloads...)
			},
			Decode: func(b []byte) (string, int, error) {
				var v struct {
					Metadata struct {
						UID string `json:"uid"`
					} `json:"metadata"`
					Unmapped struct {
						Revision int `json:"revision"`
					} `json:"unmapped"`
				}
				err := json.Unmarshal(b, &v)
				p.mu.Lock()
				key := p.keys[len(p.keys)-1]
				p.mu.Unlock()
				if want := v.Metadata.UID + ":" + strconv.Itoa(v.Unmapped.Revision); key != want {
					t.Errorf("Idempotency-Key %q, want %q", key, want)
				}
				return v.Metadata.UID, v.Unmapped.Revision, err
			},
			SetMode:    func(m outputtest.Mode) { p.mu.Lock(); p.mode = m; p.mu.Unlock() },
			Secrets:    []string{"whk-secret-token-123", "path-secret-abc123", "query-secret-xyz"},
			SendEvents: n.SendEvents,
			Events: func() (int, int) {
				p.mu.Lock()
				defer p.mu.Unlock()
				return p.events, p.requests
			},
			Batch: 25, // one request per call
		}
	})
}
