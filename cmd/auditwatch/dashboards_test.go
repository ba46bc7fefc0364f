package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"auditwatch/internal/testenv"
)

// TestDashboardsAgainstBinary starts the pipeline (deploy/run.example.yaml
// plus what makes every stage the pipeline-health board shows do work: a
// socket source, a webhook output that fails once, a small principal
// table, a malformed CloudTrail line), scrapes its /metrics and fails on any
// dashboard expression naming a metric the binary does not export.
func TestDashboardsAgainstBinary(t *testing.T) {
	var posts atomic.Int64
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if posts.Add(1) == 1 {
			http.Error(w, "try again", http.StatusInternalServerError)
		}
	}))
	defer hook.Close()
	m := startMonitorWith(t, func(cfg string) string {
		cfg = strings.Replace(cfg, "sources:\n", "sources:\n  - {name: sock, type: socket, format: vault, socket: {listen: \"127.0.0.1:0\", spool_dir: auditwatch-state/spool}}\n", 1)
		cfg = strings.Replace(cfg, "  learn_until:", "  max_principals: 16\n  learn_until:", 1)
		return cfg + `alerts:
  state_path: auditwatch-state/alerts.db
  dead_letter: {path: auditwatch-state/dead-letter.jsonl}
  retry: {initial: 10ms, max: 50ms, max_attempts: 3}
  outputs:
    - {name: hook, type: webhook, webhook: {url: "` + hook.URL + `"}}
  default_outputs: [hook]
`
	})
	f, err := os.OpenFile(filepath.Join(m.work, "auditwatch-state", "cloudtrail", "cloudtrail.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("{\"eventVersion\": broken\n")
	f.Close()

	var used []string
	re := regexp.MustCompile(`auditwatch_[a-z_]+`)
	files, _ := filepath.Glob(filepath.Join(testenv.RepoRoot(t), "dashboards", "*.json"))
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Panels []struct {
				Title   string `json:"title"`
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			} `json:"panels"`
		}
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		for _, p := range d.Panels {
			for _, tg := range p.Targets {
				for _, name := range re.FindAllString(tg.Expr, -1) {
					used = append(used, filepath.Base(file)+": "+p.Title+": "+name)
				}
			}
		}
	}
	if len(used) < 10 {
		t.Fatalf("dashboards name %d metrics, want the pipeline-health board's", len(used))
	}

	exported := map[string]bool{}
	missing := func() []string {
		var out []string
		for _, u := range used {
			name := u[strings.LastIndex(u, " ")+1:]
			if !exported[name] && !exported[name+"_bucket"] && !exported[name+"_count"] {
				out = append(out, u)
			}
		}
		return out
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		m.alive(t)
		resp, err := http.Get("http://" + m.metrics + "/metrics")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			for _, line := range strings.Split(string(body), "\n") {
				if strings.HasPrefix(line, "auditwatch_") {
					exported[strings.FieldsFunc(line, func(r rune) bool { return r == '{' || r == ' ' })[0]] = true
				}
			}
		}
		if len(missing()) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	for _, u := range missing() {
		t.Errorf("%s is not exported by the running binary", u)
	}
	if posts.Load() < 2 {
		t.Errorf("the webhook got %d posts; the alert stage did not run", posts.Load())
	}
	m.stop(t)
}
