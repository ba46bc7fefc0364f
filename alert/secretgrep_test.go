package alert

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"auditwatch/alert/hec"
	"auditwatch/alert/slack"
	"auditwatch/alert/webhook"
	"auditwatch/config"
	"auditwatch/config/duration"
	"auditwatch/internal/secret"
	"auditwatch/schema"
)

// TestSecretsNeverLeave runs outputs into faults (connection refused, 4xx
// and 5xx answers that echo the request's credentials back) with known
// secret values, through the process logger the daemons use, and greps
// every log line, the dead-letter file, the metrics and every payload the
// outputs sent for those values.
func TestSecretsNeverLeave(t *testing.T) {
	const (
		slackPath   = "T0GREPSEC/B0GREPSEC/grepSlackWebhookSecret0123456789"
		hecToken    = "11111111-grep-hec-token-222222222222"
		hookBearer  = "grep-webhook-bearer-secret-3333"
		hookQuery   = "grepWebhookQuerySecret4444"
		slackEnv    = "GREP_SLACK_WEBHOOK_URL"
		hecEnv      = "GREP_HEC_TOKEN"
		webhookEnv  = "GREP_WEBHOOK_TOKEN"
		echoingBody = "request was: "
	)
	secrets := []string{"grepSlackWebhookSecret0123456789", hecToken, hookBearer, hookQuery}

	// A port nothing listens on: connection refused, the URL in the error.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	t.Setenv(slackEnv, "http://"+closed+"/services/"+slackPath)

	var mu sync.Mutex
	var sent bytes.Buffer // every payload the outputs sent, headers left out
	echo := func(code int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			mu.Lock()
			sent.Write(b)
			mu.Unlock()
			// a hostile or careless server echoes the credentials back
			w.WriteHeader(code)
			fmt.Fprintf(w, `{"text":"%s%s %s auth=%s","code":4}`, echoingBody, r.Method, r.URL.String(), r.Header.Get("Authorization"))
		}
	}
	hecSrv := httptest.NewServer(echo(http.StatusForbidden))
	defer hecSrv.Close()
	hookSrv := httptest.NewServer(echo(http.StatusInternalServerError))
	defer hookSrv.Close()
	t.Setenv(hecEnv, hecToken)
	t.Setenv(webhookEnv, hookBearer)

	cfg := Defaults()
	dir := t.TempDir()
	cfg.DeadLetter.Path = filepath.Join(dir, "dead.jsonl")
	cfg.OutboxPath = filepath.Join(dir, "outbox.db")
	cfg.Retry.Initial = duration.Duration(time.Millisecond)
	cfg.Retry.Max = duration.Duration(5 * time.Millisecond)
	cfg.Retry.MaxAttempts = 2
	cfg.Outputs = []OutputConfig{
		{Name: "slack", Type: TypeSlack, Slack: &slack.Config{Mode: "webhook", WebhookURL: secret.Secret{Env: slackEnv}}},
		{Name: "hec", Type: TypeHEC, HEC: &hec.Config{URL: hecSrv.URL, Token: secret.Secret{Env: hecEnv}}},
		{Name: "hook", Type: TypeWebhook, Webhook: &webhook.Config{URL: hookSrv.URL + "/hook?token=" + hookQuery, Token: secret.Secret{Env: webhookEnv}}},
	}
	cfg.DefaultOutputs = []string{"slack", "hec", "hook"}
	cfg.EventOutputs = []string{"hec", "hook"}

	var logs strings.Builder
	logger := config.Logging{Level: "debug", Format: "json"}.Logger(&lockedWriter{w: &logs, mu: &mu})
	reg := prometheus.NewRegistry()
	r, err := New(cfg, logger, reg)
	if err != nil {
		t.Fatal(err)
	}
	f := finding("grep-1", schema.DetectorUnexpectedIP, schema.SeverityHigh, "u", "r")
	if err := r.WriteFindings(context.Background(), []schema.Finding{f}); err != nil {
		t.Fatal(err)
	}
	_ = r.WriteEvents(context.Background(), []schema.Event{{ID: "ev-1", Source: "vault", Action: "vault:read"}})
	waitDrained(t, r)
	if err := r.Close(); err != nil {
		t.Logf("close: %v", err)
	}

	dead, err := os.ReadFile(cfg.DeadLetter.Path)
	if err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var metrics strings.Builder
	for _, mf := range mfs {
		fmt.Fprintln(&metrics, mf.String())
	}
	mu.Lock()
	places := map[string]string{"logs": logs.String(), "dead letters": string(dead), "metrics": metrics.String(), "payloads": sent.String()}
	mu.Unlock()
	if !strings.Contains(places["dead letters"], "grep-1") || !strings.Contains(places["logs"], echoingBody) && !strings.Contains(places["dead letters"], echoingBody) {
		t.Fatalf("the faults did not happen as planned:\ndead letters: %s\nlogs: %s", dead, logs.String())
	}
	for where, text := range places {
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("%s contain the secret %q", where, s)
			}
		}
	}
	if t.Failed() {
		t.Logf("dead letters:\n%s\nlogs:\n%s", dead, logs.String())
	}
}
