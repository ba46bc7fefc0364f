package main

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// secretRun gives a test that runs the binary known secret values where a
// deployment keeps its own — a Slack webhook URL, a HEC token, a webhook
// bearer token and URL query token (in alert outputs that fail against
// local servers echoing the credentials back), a query endpoint token, and
// Vault and AWS credentials in the environment — and greps everything the
// run produced for them (Grep). The fault tests (faultRun) and the other
// tests that run the binary use it. The secrets reach only the processes
// started with Env (Start does), never the test's own environment, so
// tests using it can run in parallel.
type secretRun struct {
	t       *testing.T
	secrets []string
	env     []string // NAME=value of the secrets' environment variables

	mu       sync.Mutex
	procs    []*process        // started by Start: their logs are grepped
	ran      map[string]string // output of the commands Run ran
	sent     bytes.Buffer      // what the echoing servers received
	requests int
	hecURL   string
	hookURL  string
}

// The environment variable that holds the query endpoint's token
// (storage.query.token: {env: …}).
const faultQueryTokenEnv = "AW_FAULT_QUERY_TOKEN"

func newSecretRun(t *testing.T) *secretRun {
	t.Helper()
	s := &secretRun{t: t, secrets: []string{faultSlackSecret, faultHECToken, faultHookBearer, faultHookQuery,
		faultVaultToken, faultAWSSecret, faultQueryToken}}
	echo := func(code int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			s.mu.Lock()
			s.sent.Write(b)
			s.requests++
			s.mu.Unlock()
			// a hostile or careless server echoes the credentials back
			w.WriteHeader(code)
			fmt.Fprintf(w, `{"text":"%s%s %s auth=%s","code":4}`, faultEchoMarker, r.Method, r.URL.String(), r.Header.Get("Authorization"))
		}
	}
	hec := httptest.NewServer(echo(http.StatusForbidden))
	t.Cleanup(hec.Close)
	hook := httptest.NewServer(echo(http.StatusInternalServerError))
	t.Cleanup(hook.Close)
	s.hecURL, s.hookURL = hec.URL, hook.URL+"/hook?token="+faultHookQuery
	// A port nothing listens on: connection refused, the URL in the error.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	s.SetEnv("AW_FAULT_SLACK_WEBHOOK", "http://"+closed+"/services/T0FAULT/B0FAULT/"+faultSlackSecret)
	s.SetEnv("AW_FAULT_HEC_TOKEN", faultHECToken)
	s.SetEnv("AW_FAULT_WEBHOOK_TOKEN", faultHookBearer)
	s.SetEnv(faultQueryTokenEnv, faultQueryToken)
	s.SetEnv("VAULT_TOKEN", faultVaultToken)
	s.SetEnv("AWS_SECRET_ACCESS_KEY", faultAWSSecret)
	return s
}

// Secret adds a value the grep must not find (a test's own credential).
func (s *secretRun) Secret(v string) { s.secrets = append(s.secrets, v) }

// SetEnv sets an environment variable of the processes the run starts
// (not of the test).
func (s *secretRun) SetEnv(name, value string) { s.env = append(s.env, name+"="+value) }

// SecretEnv sets an environment variable holding a credential: the
// processes get it and the grep must not find it.
func (s *secretRun) SecretEnv(name, value string) {
	s.SetEnv(name, value)
	s.Secret(value)
}

// SetenvInProcess sets the secrets' environment in the test itself, for
// commands it runs in process (stages on goroutines); such a test cannot
// run in parallel.
func (s *secretRun) SetenvInProcess() {
	for _, kv := range s.env {
		k, v, _ := strings.Cut(kv, "=")
		s.t.Setenv(k, v)
	}
}

// Env is the environment of a process the run starts: the test's own
// plus the secrets.
func (s *secretRun) Env() []string { return append(os.Environ(), s.env...) }

// Start starts the built binary with args and the secrets' environment;
// Grep reads its log.
func (s *secretRun) Start(args ...string) *process {
	s.t.Helper()
	p := startAuditwatchEnv(s.t, s.Env(), args...)
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()
	return p
}

// Run runs the built binary with args and the secrets' environment to
// its end; Grep reads what it printed.
func (s *secretRun) Run(args ...string) (code int, stdout, stderr string) {
	s.t.Helper()
	code, stdout, stderr = runToEnd(s.t, s.Command(args...))
	s.mu.Lock()
	if s.ran == nil {
		s.ran = map[string]string{}
	}
	s.ran[fmt.Sprintf("output of command %d (%s)", len(s.ran)+1, args[0])] = stdout + stderr
	s.mu.Unlock()
	return code, stdout, stderr
}

// Command is the built binary with args and the secrets' environment
// (for a command the test runs to its end).
func (s *secretRun) Command(args ...string) *exec.Cmd {
	s.t.Helper()
	cmd := exec.Command(auditwatchBinary(s.t), args...)
	cmd.Env = s.Env()
	return cmd
}

// OutputsYAML is the secret-bearing alert outputs, as list items of
// alerts.outputs (indented by four spaces). They give up fast: their
// failures end in the dead-letter file, which the grep reads.
func (s *secretRun) OutputsYAML() string {
	return fmt.Sprintf(`    - name: fault-slack-webhook
      type: slack
      retry: {initial: 10ms, max: 50ms, max_attempts: 2}
      slack: {mode: webhook, webhook_url: {env: AW_FAULT_SLACK_WEBHOOK}, min_interval: 1ms}
    - name: fault-hec
      type: hec
      retry: {initial: 10ms, max: 50ms, max_attempts: 2}
      hec: {url: %q, token: {env: AW_FAULT_HEC_TOKEN}}
    - name: fault-webhook
      type: webhook
      retry: {initial: 10ms, max: 50ms, max_attempts: 2}
      webhook: {url: %q, token: {env: AW_FAULT_WEBHOOK_TOKEN}}
`, s.hecURL, s.hookURL)
}

// AlertsYAML is a whole alerts: section: the test's own outputs (list
// items indented by four spaces, or "") and OutputsYAML's, with all of
// them as default outputs.
func (s *secretRun) AlertsYAML(outputs string, names ...string) string {
	if outputs != "" && !strings.HasSuffix(outputs, "\n") {
		outputs += "\n"
	}
	names = append(append([]string(nil), names...), s.OutputNames()...)
	return "alerts:\n  outputs:\n" + outputs + s.OutputsYAML() + "  default_outputs: [" + strings.Join(names, ", ") + "]\n"
}

// WaitDeadLetters waits (a guard of limit, not a timing assertion) until
// every secret-bearing output has given up on a finding: its dead letter
// is in a file under work, where Grep looks.
func (s *secretRun) WaitDeadLetters(work string, limit time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		var all strings.Builder
		filepath.WalkDir(work, func(path string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() && strings.Contains(path, "dead-letter") {
				b, _ := os.ReadFile(path)
				all.Write(b)
			}
			return nil
		})
		missing := ""
		for _, o := range s.OutputNames() {
			if !strings.Contains(all.String(), `"`+o+`"`) {
				missing = o
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("the secret-bearing output %s has no dead letter after %v", missing, limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ScrapeMetrics reads /metrics of the process serving http.listen addr;
// Grep reads the scrape.
func (s *secretRun) ScrapeMetrics(addr string) string {
	s.t.Helper()
	m := httpGet(s.t, "http://"+addr+"/metrics")
	s.mu.Lock()
	if s.ran == nil {
		s.ran = map[string]string{}
	}
	s.ran[fmt.Sprintf("metrics scrape %d", len(s.ran)+1)] = m
	s.mu.Unlock()
	return m
}

// OutputNames are the names of OutputsYAML's outputs.
func (s *secretRun) OutputNames() []string {
	return []string{"fault-slack-webhook", "fault-hec", "fault-webhook"}
}

// Grep fails the test when a secret value appears in places (logs,
// scrapes, outputs of the test, by name), in the log of a process Start
// started or the output of a command Run ran, or in any file under work except
// skip (the config, which is input), or in a payload the echoing servers
// received. It first checks that the faults that put credentials into
// error paths did happen: both servers were called, every output has
// dead letters, and a server's echo reached a log or dead letter.
func (s *secretRun) Grep(places map[string]string, work string, skip ...string) {
	s.t.Helper()
	s.mu.Lock()
	places["payloads sent"] = s.sent.String()
	requests := s.requests
	for i, p := range s.procs {
		places[fmt.Sprintf("log of process %d (%s)", i+1, p.cmd.Args[1])] = p.stderr.String()
	}
	for k, v := range s.ran {
		places[k] = v
	}
	s.mu.Unlock()
	var dead []string
	err := filepath.WalkDir(work, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || slices.Contains(skip, path) {
			return err
		}
		if d.Type()&fs.ModeSocket != 0 || !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(work, path)
		places["file "+rel] = string(b)
		if strings.Contains(rel, "dead-letter") {
			dead = append(dead, string(b))
		}
		return nil
	})
	if err != nil {
		s.t.Fatal(err)
	}
	all := strings.Join(dead, "")
	for _, o := range s.OutputNames() {
		if requests == 0 || !strings.Contains(all, `"`+o+`"`) {
			s.t.Errorf("the secret-bearing output %s did not fail as planned: %d requests; dead letters:\n%.2000s", o, requests, all)
		}
	}
	echoed := false
	for _, v := range places {
		echoed = echoed || strings.Contains(v, faultEchoMarker)
	}
	if !echoed {
		s.t.Errorf("no server answer carrying the credentials reached a log or dead letter")
	}
	for where, text := range places {
		for _, v := range s.secrets {
			if strings.Contains(text, v) {
				s.t.Errorf("%s contains the secret %q", where, v)
			}
		}
	}
}
