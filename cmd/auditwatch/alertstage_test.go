package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"auditwatch/internal/kafkatest"
	"auditwatch/pipeline"
	"auditwatch/schema"
)

// TestAlertStageSlowOutputHoldsOnlyItself: in the Kafka deployment the
// `alert` stage consumes the findings topic with two webhook outputs, one
// hung (accepts, never answers). The healthy output gets every finding
// while the other hangs, and the stage commits its consumer position
// although the hung output has delivered nothing: the hung output's
// progress is its own outbox queue. Restarted while still hung, the stage
// reads nothing again from the topic (auditwatch_alert_stage_findings_total
// stays 0) and the healthy output gets nothing twice; once the hung output
// answers, it gets every finding from its queue.
func TestAlertStageSlowOutputHoldsOnlyItself(t *testing.T) {
	brokers := kafkatest.NewCluster(t, 2, "findings")
	type recv struct {
		mu  sync.Mutex
		got map[string]int
	}
	fast, slow := &recv{got: map[string]int{}}, &recv{got: map[string]int{}}
	record := func(r *recv, req *http.Request) {
		r.mu.Lock()
		r.got[req.Header.Get("Idempotency-Key")]++
		r.mu.Unlock()
	}
	count := func(r *recv) (distinct, total int) {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, n := range r.got {
			distinct++
			total += n
		}
		return distinct, total
	}
	fastSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		record(fast, r)
	}))
	defer fastSrv.Close()
	var hmu sync.Mutex
	release := make(chan struct{})
	hung := true
	slowSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		hmu.Lock()
		h := hung
		hmu.Unlock()
		if h {
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		record(slow, r)
	}))
	defer slowSrv.Close()

	work := t.TempDir()
	httpAddr := freeAddr(t)
	d, cfgPath := configuredDaemon(t, "test", filepath.Join(work, "alert.yaml"), fmt.Sprintf(`%sstate: {dir: %q}
alerts:
  outputs:
    - {name: slow, type: webhook, webhook: {url: %q}}
    - {name: fast, type: webhook, webhook: {url: %q}}
  default_outputs: [slow, fast]
http: {listen: %q}
logging: {level: info, format: text}
shutdown_timeout: 5s
`, kafkaStreamYAML(brokers[0], "200ms"), filepath.Join(work, "state"), slowSrv.URL, fastSrv.URL, httpAddr))
	// Publish the findings as the detect stage does.
	k, err := d.kafkaStream()
	if err != nil {
		t.Fatal(err)
	}
	const n = 40
	now := time.Now().UTC()
	fs := make([]schema.Finding, n)
	for i := range fs {
		fs[i] = schema.Finding{ID: fmt.Sprintf("f-%02d", i), Detector: schema.DetectorPrivilegedUse, Severity: schema.SeverityHigh,
			Summary: "root token use", Time: now, Principal: fmt.Sprintf("p%d", i), DedupeKey: fmt.Sprintf("k%d", i)}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	if err := (pipeline.FindingsPublisher{Stream: k, Topic: "findings"}).WriteFindings(ctx, fs); err != nil {
		t.Fatal(err)
	}
	cancel()
	k.Close()

	start := func() (stop func() string) {
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		logs := &lockedWriter{w: &bytes.Buffer{}}
		go func() {
			defer close(done)
			if code := runAlert(ctx, []string{"--config", cfgPath}, nil, io.Discard, logs); code != 0 {
				t.Errorf("alert stage exit %d:\n%s", code, logs.String())
			}
		}()
		return func() string { cancel(); <-done; return logs.String() }
	}
	stop := start()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if d, _ := count(fast); d == n {
			break
		}
		if time.Now().After(deadline) {
			d, _ := count(fast)
			t.Fatalf("healthy output got %d of %d findings while the other hung", d, n)
		}
	}
	if d, _ := count(slow); d != 0 {
		t.Fatalf("hung output delivered %d", d)
	}
	m := httpGet(t, "http://"+httpAddr+"/metrics")
	if v := scrapedValue(t, m, "auditwatch_alert_stage_findings_total"); v != n {
		t.Errorf("first run took %v findings from the topic, want %d", v, n)
	}
	if !strings.Contains(m, `auditwatch_alert_outbox_backlog{output="slow"} 40`) {
		t.Errorf("/metrics lacks the hung output's backlog of 40")
	}
	time.Sleep(time.Second) // past the commit interval
	logs := stop()

	// Restarted with the output still hung: the consumer position was
	// committed, so nothing comes from the topic again.
	stop = start()
	time.Sleep(3 * time.Second)
	m = httpGet(t, "http://"+httpAddr+"/metrics")
	if v := scrapedValue(t, m, "auditwatch_alert_stage_findings_total"); v != 0 {
		t.Errorf("after a restart the stage read %v findings again from the topic: its position waited for the hung output", v)
	}
	hmu.Lock()
	hung = false
	close(release)
	hmu.Unlock()
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if d, _ := count(slow); d == n {
			break
		}
		if time.Now().After(deadline) {
			d, _ := count(slow)
			t.Fatalf("released output got %d of %d findings from its queue\n%s", d, n, logs)
		}
	}
	time.Sleep(time.Second)
	stop()
	fd, ft := count(fast)
	sd, st := count(slow)
	if fd != n || ft != n {
		t.Errorf("healthy output: %d distinct, %d deliveries, want %d once each", fd, ft, n)
	}
	t.Logf("healthy output %d/%d deliveries, hung-then-released output %d distinct / %d deliveries", fd, ft, sd, st)
}
