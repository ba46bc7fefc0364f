package watch

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"auditwatch/internal/secret"
)

func decodeCanaryText(t *testing.T, text string) (CanaryConfig, error) {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(text), &n); err != nil {
		t.Fatal(err)
	}
	return DecodeCanary(n.Content[0])
}

// TestHeartbeatFailuresLogged: the heartbeat URL comes from a secret
// source, failed calls are logged at once and then at most once a minute
// with how many failed meanwhile, a recovery is logged, and no log line
// carries the URL.
func TestHeartbeatFailuresLogged(t *testing.T) {
	var fail atomic.Bool
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if fail.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	hook := srv.URL + "/ping/hb-credential-4f1c9e"
	t.Setenv("AW_TEST_HEARTBEAT", hook)
	cfg := CanaryConfig{HeartbeatURL: secret.Secret{Env: "AW_TEST_HEARTBEAT"}}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	url, err := cfg.Heartbeat()
	if err != nil || url != hook {
		t.Fatalf("Heartbeat() = %q, %v", url, err)
	}

	now := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	var logs bytes.Buffer
	r := NewRunner(nil, nil, url, nil, func() time.Time { return now }, nil, slog.New(slog.NewTextHandler(&logs, nil)), nil)
	ctx := context.Background()
	r.beat(ctx)
	if logs.Len() != 0 {
		t.Fatalf("a successful heartbeat logged: %s", logs.String())
	}
	fail.Store(true)
	for i := 0; i < 30; i++ { // 30 failures 5 s apart: 2.5 minutes
		r.beat(ctx)
		now = now.Add(5 * time.Second)
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	// at 0 s (the first), 60 s (12 since) and 120 s (12 since)
	if len(lines) != 3 {
		t.Fatalf("%d log lines for 30 failures in 2.5 minutes, want 3:\n%s", len(lines), logs.String())
	}
	for i, want := range []string{"failed_since_last_line=1", "failed_since_last_line=12", "failed_since_last_line=12"} {
		if !strings.Contains(lines[i], "heartbeat call failed") || !strings.Contains(lines[i], want) || !strings.Contains(lines[i], "status 503") {
			t.Errorf("line %d: %s (want %s)", i, lines[i], want)
		}
	}
	fail.Store(false)
	r.beat(ctx)
	if !strings.Contains(logs.String(), "heartbeat calls succeed again") || !strings.Contains(logs.String(), "failed_since_last_line=5") {
		t.Errorf("no recovery line counting the 5 unlogged failures:\n%s", logs.String())
	}
	if calls.Load() != 32 {
		t.Errorf("%d calls, want 32", calls.Load())
	}

	// A transport error (nothing listening) is logged without the URL.
	srv.Close()
	logs.Reset()
	r.beat(ctx)
	if !strings.Contains(logs.String(), "heartbeat call failed") {
		t.Fatalf("a refused heartbeat not logged:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "hb-credential-4f1c9e") || strings.Contains(logs.String(), strings.TrimPrefix(srv.URL, "http://")+"/ping") {
		t.Errorf("the heartbeat URL in the log:\n%s", logs.String())
	}
}

// TestHeartbeatURLFromSource: a heartbeat_url written as a plain string is
// refused; one whose source holds no http(s) URL fails naming the source,
// never its value.
func TestHeartbeatURLFromSource(t *testing.T) {
	if _, err := decodeCanaryText(t, "heartbeat_url: https://hc.example.com/ping/x\n"); err == nil {
		t.Error("a plain-string heartbeat_url was accepted")
	}
	t.Setenv("AW_TEST_HEARTBEAT", "ftp://hc-credential-77a1")
	c, err := decodeCanaryText(t, "heartbeat_url: {env: AW_TEST_HEARTBEAT}\n")
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Heartbeat()
	if err == nil || !strings.Contains(err.Error(), "env:AW_TEST_HEARTBEAT") || strings.Contains(err.Error(), "hc-credential-77a1") {
		t.Errorf("Heartbeat() error %v: want one naming the env variable, not the value", err)
	}
	t.Setenv("AW_TEST_HEARTBEAT", "")
	if _, err = c.Heartbeat(); err == nil {
		t.Error("an empty heartbeat_url source was accepted")
	}
}
