package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"auditwatch/schema"
)

// canaryToken is the canary's Vault token in the canary tests.
const canaryToken = "canaryVaultTokenSecret8d8d8d8d"

// runVault is a local server speaking Vault's HTTP API for the canary (a
// KV read and sys/audit-hash) whose file audit device writes each read to
// path; the device can be stopped while the server keeps answering.
type runVault struct {
	mu      sync.Mutex
	path    string
	stopped bool
	seq     int
	reads   atomic.Int64
	last    time.Time // when the device last wrote
}

func (v *runVault) hmac(s string) string {
	m := hmac.New(sha256.New, []byte("device-salt"))
	m.Write([]byte(s))
	return "hmac-sha256:" + hex.EncodeToString(m.Sum(nil))
}

// write appends a request and a response entry of a read of p by token.
func (v *runVault) write(token, p, addr string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.stopped {
		return
	}
	v.seq++
	v.last = time.Now()
	now := v.last.UTC().Format(time.RFC3339Nano)
	// a Vault audit device writes no token in the clear: names derive from its HMAC
	id := v.hmac(token)[len("hmac-sha256:"):][:12]
	auth := map[string]any{"client_token": v.hmac(token), "accessor": v.hmac("acc-" + token), "display_name": "token-" + id,
		"policies": []string{"default"}, "token_type": "service", "entity_id": "entity-" + id}
	req := map[string]any{"id": fmt.Sprintf("req-%d", v.seq), "operation": "read", "mount_point": "secret/", "mount_type": "kv",
		"client_token": v.hmac(token), "path": p, "remote_address": addr, "namespace": map[string]string{"id": "root"}}
	f, err := os.OpenFile(v.path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		panic(err)
	}
	defer f.Close()
	var b []byte
	for _, typ := range []string{"request", "response"} {
		e := map[string]any{"time": now, "type": typ, "auth": auth, "request": req}
		if typ == "response" {
			e["response"] = map[string]any{"mount_type": "kv", "data": map[string]any{"data": v.hmac("value")}}
		}
		line, _ := json.Marshal(e)
		b = append(append(b, line...), '\n')
	}
	f.Write(b)
}

func (v *runVault) setStopped(s bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.stopped = s
}

func (v *runVault) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tok := r.Header.Get("X-Vault-Token")
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/v1/secret/data/auditwatch-canary" && tok == canaryToken:
		v.reads.Add(1)
		v.write(tok, "secret/data/auditwatch-canary", "127.0.0.1")
		fmt.Fprint(w, `{"data":{"data":{"canary":"ok"}}}`)
	case r.Method == http.MethodPost && r.URL.Path == "/v1/sys/audit-hash/file" && tok == canaryToken:
		var in struct{ Input string }
		json.NewDecoder(r.Body).Decode(&in)
		json.NewEncoder(w).Encode(map[string]string{"hash": v.hmac(in.Input)})
	default:
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, `{"errors":["permission denied"]}`)
	}
}

// TestRunCanaryVaultWriterStops runs the built binary with a filetail
// source on the file a local Vault API server's audit device writes,
// short silence and canary intervals, a webhook output and a heartbeat:
// while the device writes, the canary's reads come back through the detect
// stage (counted there, kept from detectors) and the heartbeat is called;
// when the device stops writing (Vault keeps serving), pipeline_blind and
// source_silent reach the findings file and the webhook, not before their
// deadlines; the heartbeat stops; both resolve once writing resumes. The
// canary token, the heartbeat URL's credential and the known secrets of
// secretRun (its failing outputs beside the webhook) appear nowhere the
// run writes.
func TestRunCanaryVaultWriterStops(t *testing.T) {
	t.Parallel()
	sec := newSecretRun(t)
	work := t.TempDir()
	logPath := filepath.Join(work, "vault-audit.log")
	fv := &runVault{path: logPath}
	vsrv := httptest.NewServer(fv)
	defer vsrv.Close()
	fv.write("app", "secret/data/app/db", "10.0.0.5") // the file exists before the tail starts
	var beats atomic.Int64
	hb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { beats.Add(1) }))
	defer hb.Close()
	const hbSecret = "hbCanaryHeartbeatSecret5a5a5a5a"
	sec.SetEnv("AW_TEST_HEARTBEAT_URL", hb.URL+"/ping/"+hbSecret)
	sec.Secret(hbSecret)
	sec.SecretEnv("AW_TEST_CANARY_TOKEN", canaryToken)
	var hookMu sync.Mutex
	var hookBodies []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		hookMu.Lock()
		hookBodies = append(hookBodies, string(b))
		hookMu.Unlock()
	}))
	defer hook.Close()
	hookPosts := func(det string) int {
		hookMu.Lock()
		defer hookMu.Unlock()
		n := 0
		for _, b := range hookBodies {
			if strings.Contains(b, `"`+det+`"`) {
				n++
			}
		}
		return n
	}
	findings := filepath.Join(work, "findings.jsonl")
	httpAddr := freeAddr(t)
	cfgPath := filepath.Join(work, "run.yaml")
	// The deadline and min quiet are far above a scheduling stall of the
	// child under CI's parallel race-built tests on 2 cores (a 1.5 s
	// deadline and 2 s min quiet were missed there once: a 3 s stall
	// while the device wrote raised both, which is what they are for).
	const deadline, minQuiet = 5 * time.Second, 8 * time.Second
	cfg := fmt.Sprintf(`sources:
  - name: vault-file
    type: filetail
    format: vault
    filetail: {path: %q, poll_interval: 50ms, start_at: beginning}
silence: {min_quiet: %s, learning_period: 2s, min_samples: 5, check_interval: 100ms}
canary:
  interval: 300ms
  check_interval: 100ms
  heartbeat_url: {env: AW_TEST_HEARTBEAT_URL}
  vault:
    address: %q
    token: {env: AW_TEST_CANARY_TOKEN}
    deadline: %s
state: {dir: %q, checkpoint_interval: 200ms, idle_drain: 500ms}
files: {findings: %q}
http: {listen: %q}
logging: {level: info, format: text}
shutdown_timeout: 10s
%s`, logPath, minQuiet, vsrv.URL, deadline, filepath.Join(work, "state"), findings, httpAddr,
		sec.AlertsYAML(fmt.Sprintf("    - {name: hook, type: webhook, webhook: {url: %q}}\n", hook.URL), "hook"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, stdout, stderr := sec.Run("check-config", cfgPath); code != 0 || !strings.Contains(stdout, "canary.heartbeat_url: set (from env AW_TEST_HEARTBEAT_URL)") {
		t.Fatalf("check-config: exit %d: %s%s", code, stdout, stderr)
	}
	p := sec.Start("run", "--config", cfgPath)

	// application traffic every 100 ms while the device writes
	stopApp := make(chan struct{})
	var appWG sync.WaitGroup
	appWG.Add(1)
	go func() {
		defer appWG.Done()
		tk := time.NewTicker(100 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stopApp:
				return
			case <-tk.C:
				fv.write("app", "secret/data/app/db", "10.0.0.5")
			}
		}
	}()
	defer func() { close(stopApp); appWG.Wait() }()

	find := func(det string, rev int) (schema.Finding, bool) {
		for _, f := range readFindings(t, findings) {
			if f.Detector == det && f.Revision == rev {
				return f, true
			}
		}
		return schema.Finding{}, false
	}
	waitFor := func(what string, limit time.Duration, cond func() bool) time.Time {
		t.Helper()
		end := time.Now().Add(limit)
		for !cond() {
			select {
			case err := <-p.done:
				p.done <- err
				t.Fatalf("auditwatch exited early (%v):\n%s", err, p.stderr)
			default:
			}
			if time.Now().After(end) {
				t.Fatalf("timed out after %v waiting for %s; findings %+v\n%s", limit, what, readFindings(t, findings), p.stderr)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return time.Now()
	}

	// learning: the silence baseline and canaries coming back
	waitFor("heartbeats while canaries come back", 30*time.Second, func() bool { return beats.Load() >= 3 })
	time.Sleep(3 * time.Second)
	if fs := readFindings(t, findings); len(fs) != 0 {
		t.Fatalf("findings while the device writes: %+v", fs)
	}
	arrived := scrapeMetric(t, httpAddr, "auditwatch_canary_events_total")
	if arrived < 3 {
		t.Fatalf("canary events counted after detect: %v", arrived)
	}

	// the device stops writing; Vault keeps serving the canary reads
	fv.setStopped(true)
	stoppedAt := time.Now()
	blindAt := waitFor("pipeline_blind", 60*time.Second, func() bool { _, ok := find(schema.DetectorPipelineBlind, 0); return ok })
	silentAt := waitFor("source_silent", 60*time.Second, func() bool { _, ok := find(schema.DetectorSourceSilent, 0); return ok })
	t.Logf("pipeline_blind %v and source_silent %v after the device stopped (deadline %v, min quiet %v)",
		blindAt.Sub(stoppedAt).Round(time.Millisecond), silentAt.Sub(stoppedAt).Round(time.Millisecond), deadline, minQuiet)
	// not before their deadlines: the first unanswered read was sent after
	// the stop; the source's last arrival came after the last write. On a
	// loaded machine a read sent just before the stop may itself not come
	// back within the deadline (a true miss): then the finding names that
	// read (sent_at, RFC 3339 with fractional seconds), and its own
	// deadline is what counts.
	if blindAt.Sub(stoppedAt) < deadline-50*time.Millisecond {
		b, _ := find(schema.DetectorPipelineBlind, 0)
		sent, err := time.Parse(time.RFC3339Nano, b.Attributes["sent_at"])
		switch {
		case err != nil:
			t.Errorf("pipeline_blind %v after the stop, before the %v deadline (sent_at %q: %v)", blindAt.Sub(stoppedAt), deadline, b.Attributes["sent_at"], err)
		case !sent.Before(stoppedAt) || blindAt.Sub(sent) < deadline-50*time.Millisecond:
			t.Errorf("pipeline_blind %v after the stop, before the %v deadline of the read it names (sent %s)", blindAt.Sub(stoppedAt), deadline, sent.Format(time.RFC3339Nano))
		default:
			t.Logf("pipeline_blind names a read sent before the stop (%s): the loaded pipeline did not bring it back within %v", sent.Format(time.RFC3339Nano), deadline)
		}
	}
	blind, _ := find(schema.DetectorPipelineBlind, 0)
	silent, _ := find(schema.DetectorSourceSilent, 0)
	// not before min quiet after the source's last arrival (the finding's
	// first time): on a loaded machine the tail may read the last writes
	// only after the finding, so the quiet counts from what had arrived
	if last := silent.FirstTime; last.IsZero() || silentAt.Sub(last) < minQuiet {
		t.Errorf("source_silent %v after the source's last arrival (%s), before %v of quiet", silentAt.Sub(last), last.Format(time.RFC3339Nano), minQuiet)
	}
	if blind.Severity != schema.SeverityCritical || blind.Attributes["canary"] != "vault" || silent.Resource != "vault-file" {
		t.Errorf("blind %+v\nsilent %+v", blind, silent)
	}
	waitFor("both on the webhook", 30*time.Second, func() bool {
		return hookPosts(schema.DetectorPipelineBlind) >= 1 && hookPosts(schema.DetectorSourceSilent) >= 1
	})
	b0 := beats.Load()
	time.Sleep(time.Second)
	if b := beats.Load(); b != b0 {
		t.Errorf("heartbeat called %d times while blind", b-b0)
	}
	if fv.reads.Load() == 0 {
		t.Fatal("the canary never read")
	}

	// writing resumes: both resolve, on every output, and the heartbeat
	fv.setStopped(false)
	waitFor("both resolved", 60*time.Second, func() bool {
		_, a := find(schema.DetectorPipelineBlind, 1)
		_, b := find(schema.DetectorSourceSilent, 1)
		return a && b
	})
	for _, det := range []string{schema.DetectorPipelineBlind, schema.DetectorSourceSilent} {
		f, _ := find(det, 1)
		if f.Attributes["status"] != "resolved" {
			t.Errorf("%s revision 1: %+v", det, f)
		}
	}
	waitFor("resolutions on the webhook", 30*time.Second, func() bool {
		return hookPosts(schema.DetectorPipelineBlind) >= 2 && hookPosts(schema.DetectorSourceSilent) >= 2
	})
	waitFor("heartbeat again", 30*time.Second, func() bool { return beats.Load() > b0 })
	sec.WaitDeadLetters(work, 30*time.Second)
	sec.ScrapeMetrics(httpAddr)
	p.stop(t)
	sec.Grep(map[string]string{}, work, cfgPath)
	// canary events reached no detector: the only findings are the watch's
	for _, f := range readFindings(t, findings) {
		if f.Detector != schema.DetectorPipelineBlind && f.Detector != schema.DetectorSourceSilent {
			t.Errorf("finding of %s: %s", f.Detector, f.Summary)
		}
	}
}

// scrapeMetric reads one metric series (its name with labels, as
// /metrics prints it) from the /metrics endpoint.
func scrapeMetric(t *testing.T, addr, name string) float64 {
	t.Helper()
	v, err := scrapeMetricLabelled(addr, name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func scrapeMetricLabelled(addr, series string) (float64, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		return 0, fmt.Errorf("no %s in /metrics", series)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}
