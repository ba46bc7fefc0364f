package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"auditwatch/identity"
	it "auditwatch/identity/identitytest"
	"auditwatch/internal/kafkatest"
	"auditwatch/schema"
	"auditwatch/stream"
)

// countHandler counts the records of a topic.
type countHandler struct{ n atomic.Int64 }

func (h *countHandler) Assigned(context.Context, stream.Assignment) (map[int]int64, error) {
	return nil, nil
}
func (h *countHandler) Handle(_ context.Context, _ int, recs []stream.Record) error {
	for _, r := range recs {
		if r.Value != nil {
			h.n.Add(1)
		}
	}
	return nil
}
func (h *countHandler) Revoked(context.Context, []int) error { return nil }

// TestDetectInstancesShareLinks runs `ingest`, two `detect` instances
// (one partition of the events topic each) and `alert` on kfake with a
// links topic. The Vault issues of the week scenario (keys in clear and
// HMAC'd, resolved through a local sys/audit-hash server) are handled by
// the instance owning the Vault identity's partition; the CloudTrail uses
// of the keys are partitioned by their IAM users, several on the other
// instance. With the links shared, every use is linked and the scenario
// yields exactly one credential_exfiltration finding naming the Vault
// identity, none for the NAT uses.
func TestDetectInstancesShareLinks(t *testing.T) {
	brokers := kafkatest.NewCluster(t, 2, "events", "events-by-ip", "findings", "links")
	fv := &it.FakeVault{}
	vsrv := httptest.NewServer(fv)
	defer vsrv.Close()
	t.Setenv("AW_TEST_AUDIT_HASH_TOKEN", it.VaultToken)

	vault, ctLines := it.Week(func(d int) bool { return d%2 == 0 })
	var ct bytes.Buffer
	ct.WriteString(`{"Records":[`)
	for i, line := range bytes.Split(bytes.TrimSpace(ctLines), []byte("\n")) {
		if i > 0 {
			ct.WriteByte(',')
		}
		ct.Write(line)
	}
	ct.WriteString("]}")
	// the issues and the uses land on different partitions
	part := func(key string) int {
		return (&kafka.Hash{}).Balance(kafka.Message{Key: []byte(key)}, 0, 1)
	}
	issuePart, across := part(it.EntityID), 0
	for d := range 7 {
		user := "arn:aws:iam::" + it.Account + ":user/vault-approle-payments-" + strings.TrimPrefix(it.DayKey(d), "AKIAEXAMPLEKEY")
		if part(user) != issuePart {
			across++
		}
	}
	if across == 0 || across == 7 {
		t.Fatalf("test data: %d of 7 days' uses on another partition than the issues", across)
	}

	work := t.TempDir()
	vdrop, cdrop := filepath.Join(work, "vault"), filepath.Join(work, "cloudtrail")
	must(t, os.MkdirAll(vdrop, 0o755))
	must(t, os.MkdirAll(cdrop, 0o755))
	findings := filepath.Join(work, "findings.jsonl")
	config := func(name, httpAddr string) string {
		path := filepath.Join(work, name+".yaml")
		must(t, os.WriteFile(path, []byte(fmt.Sprintf(`sources:
  - name: vault
    type: dir
    format: vault
    dir: {path: %q, poll_interval: 100ms, settle_time: 50ms}
  - name: cloudtrail
    type: dir
    format: cloudtrail
    dir: {path: %q, poll_interval: 100ms, settle_time: 50ms}
%sidentity:
  audit_hash:
    address: %q
    device: file
    token: {env: AW_TEST_AUDIT_HASH_TOKEN}
state: {dir: %q, checkpoint_interval: 100ms, idle_drain: 500ms}
files: {findings: %q}
http: {listen: %q}
logging: {level: info, format: text}
shutdown_timeout: 15s
`, vdrop, cdrop, kafkaStreamYAML(brokers[0], "100ms", "links_topic: links"), vsrv.URL, filepath.Join(work, "state-"+name), findings, httpAddr)), 0o644))
		return path
	}
	addrA, addrB := freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	run := startStages(ctx, cancel,
		stageSpec{"ingest", runIngest, config("ingest", freeAddr(t))},
		stageSpec{"detect-a", runDetect, config("detect-a", addrA)},
		stageSpec{"detect-b", runDetect, config("detect-b", addrB)},
		stageSpec{"alert", runAlert, config("alert", freeAddr(t))})
	defer run.Stop()
	dump := func() {
		for _, r := range run.Stop() {
			t.Logf("%s exit %d:\n%s", r.name, r.code, r.log)
		}
	}
	waitFor := func(what string, limit time.Duration, cond func() bool) {
		t.Helper()
		end := time.Now().Add(limit)
		for !cond() {
			if time.Now().After(end) {
				dump()
				t.Fatalf("timed out after %v waiting for %s", limit, what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	partitions := func(addr string) float64 {
		v, err := scrapeMetricLabelled(addr, `auditwatch_detect_stage_partitions{instance="principal"}`)
		if err != nil {
			return -1
		}
		return v
	}
	waitFor("one events partition per detect instance", 60*time.Second, func() bool { return partitions(addrA) == 1 && partitions(addrB) == 1 })

	// the issues first; their links reach the links topic
	must(t, os.WriteFile(filepath.Join(vdrop, "audit.log"), vault, 0o644))
	sc := stream.Config{Type: "kafka", Kafka: stream.KafkaConfig{Brokers: brokers, ClientID: "test"}}
	sc.SetDefaults()
	k, err := stream.NewKafka(sc.Kafka, nil, nil)
	must(t, err)
	defer k.Close()
	links := &countHandler{}
	lctx, lcancel := context.WithCancel(ctx)
	var lwg sync.WaitGroup
	lwg.Add(1)
	go func() { defer lwg.Done(); k.Consume(lctx, "links", "test-links", links) }()
	waitFor("7 issues on the links topic", 60*time.Second, func() bool { return links.n.Load() >= 7 })
	time.Sleep(time.Second) // the instances merge them
	// then the uses (CloudTrail delivers minutes after Vault logs an issue)
	must(t, os.WriteFile(filepath.Join(cdrop, "trail.json"), ct.Bytes(), 0o644))
	identityFindings := func() []schema.Finding {
		var out []schema.Finding
		for _, f := range readFindings(t, findings) {
			switch f.Detector {
			case identity.DetectorExfiltration, identity.DetectorAfterLease, identity.DetectorMisuse:
				out = append(out, f)
			}
		}
		return out
	}
	waitFor("the exfiltration finding", 60*time.Second, func() bool { return len(identityFindings()) >= 1 })
	time.Sleep(2 * time.Second) // nothing more comes
	lcancel()
	lwg.Wait()
	for _, r := range run.Stop() {
		if r.code != 0 {
			t.Errorf("%s exit %d:\n%s", r.name, r.code, r.log)
		}
	}
	fs := identityFindings()
	if len(fs) != 1 || fs[0].Detector != identity.DetectorExfiltration || fs[0].SourceIP != it.Elsewhere ||
		fs[0].Principal != it.EntityID || fs[0].PrincipalName != "payments-api" {
		t.Fatalf("want one exfiltration finding naming the Vault identity, got %+v", fs)
	}
	for _, f := range readFindings(t, findings) {
		for _, id := range f.EventIDs {
			if strings.HasPrefix(id, "ev-") && !strings.HasPrefix(id, "ev-exfil") {
				t.Errorf("%s finding for a NAT use: %s", f.Detector, f.Summary)
			}
		}
	}
	if fv.Calls.Load() == 0 {
		t.Error("no HMAC'd key was resolved through sys/audit-hash")
	}
}
