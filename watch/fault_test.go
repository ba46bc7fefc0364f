package watch_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"auditwatch/config/duration"
	"auditwatch/ingest"
	"auditwatch/ingest/filetail"
	"auditwatch/ingest/source"
	"auditwatch/internal/secret"
	"auditwatch/schema"
	"auditwatch/watch"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"))
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time           { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration)      { c.mu.Lock(); defer c.mu.Unlock(); c.now = c.now.Add(d) }
func newClock(t time.Time) *clock         { return &clock{now: t} }
func (c *clock) Since(t time.Time) string { return c.Now().Sub(t).String() }

// fakeVault is a Vault server whose file audit device writes to path: a
// canary read and sys/audit-hash over the HTTP API; the writer can be
// stopped (a disabled or broken audit device) and its salt changed.
type fakeVault struct {
	mu      sync.Mutex
	path    string
	clk     *clock
	salt    string
	stopped bool
	seq     int
	reads   atomic.Int64
}

func (v *fakeVault) hmac(s string) string {
	m := hmac.New(sha256.New, []byte(v.salt))
	m.Write([]byte(s))
	return "hmac-sha256:" + hex.EncodeToString(m.Sum(nil))
}

// write appends a request and response entry for a read of p by token.
func (v *fakeVault) write(token, p string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.stopped {
		return
	}
	v.seq++
	now := v.clk.Now().UTC().Format(time.RFC3339Nano)
	auth := map[string]any{"client_token": v.hmac(token), "accessor": v.hmac("acc-" + token), "display_name": "token-canary",
		"policies": []string{"default", "canary"}, "token_type": "service", "entity_id": "entity-" + token}
	req := map[string]any{"id": fmt.Sprintf("req-%d", v.seq), "operation": "read", "mount_point": "secret/", "mount_type": "kv",
		"client_token": v.hmac(token), "path": p, "remote_address": "127.0.0.1", "namespace": map[string]string{"id": "root"}}
	f, err := os.OpenFile(v.path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		panic(err)
	}
	defer f.Close()
	for _, typ := range []string{"request", "response"} {
		e := map[string]any{"time": now, "type": typ, "auth": auth, "request": req}
		if typ == "response" {
			e["response"] = map[string]any{"mount_type": "kv", "data": map[string]any{"data": v.hmac("value")}}
		}
		b, _ := json.Marshal(e)
		f.Write(append(b, '\n'))
	}
}

func (v *fakeVault) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tok := r.Header.Get("X-Vault-Token")
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/v1/secret/data/auditwatch-canary" && tok == "canary-token":
		v.reads.Add(1)
		v.write(tok, "secret/data/auditwatch-canary")
		fmt.Fprint(w, `{"data":{"data":{"canary":"ok"}}}`)
	case r.Method == http.MethodPost && r.URL.Path == "/v1/sys/audit-hash/file" && tok == "canary-token":
		var in struct{ Input string }
		json.NewDecoder(r.Body).Decode(&in)
		v.mu.Lock()
		h := v.hmac(in.Input)
		v.mu.Unlock()
		json.NewEncoder(w).Encode(map[string]string{"hash": h})
	default:
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, `{"errors":["permission denied"]}`)
	}
}

type sink struct {
	mu  sync.Mutex
	fs  []schema.Finding
	at  []time.Time // injected-clock time each finding reached the sink
	clk *clock
}

func (s *sink) WriteFindings(_ context.Context, fs []schema.Finding) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range fs {
		s.fs = append(s.fs, f)
		s.at = append(s.at, s.clk.Now())
	}
	return nil
}

func (s *sink) find(det string, rev int) (schema.Finding, time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, f := range s.fs {
		if f.Detector == det && f.Revision == rev {
			return f, s.at[i], true
		}
	}
	return schema.Finding{}, time.Time{}, false
}

// counter counts the events the source published (after the canary filter).
type counter struct {
	n atomic.Int64
	// detected stands for the detect stage's canary hook (Runner.Detected):
	// the events it labels are not counted
	detected func(ev *schema.Event, replayed bool) bool
}

func (c *counter) Publish(_ context.Context, b source.Batch) error {
	for i := range b.Events {
		if c.detected == nil || !c.detected(&b.Events[i], false) {
			c.n.Add(1)
		}
	}
	if b.Done != nil {
		b.Done(nil)
	}
	return nil
}

// TestFaultVaultWriterStops: Vault serves requests (the canary keeps
// reading) but its file audit device stops writing. With an injected
// clock, source_silent reaches the outputs once the source is quiet past
// its learned threshold (10x its usual 10 s gap, at least 5 minutes) and
// pipeline_blind once the canary's deadline (2 minutes) passes; the
// heartbeat is not called meanwhile; both resolve when writing resumes.
func TestFaultVaultWriterStops(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "vault-audit.log")
	clk := newClock(time.Date(2026, 11, 3, 9, 0, 0, 0, time.UTC))
	fv := &fakeVault{path: logPath, clk: clk, salt: "salt-1"}
	vsrv := httptest.NewServer(fv)
	defer vsrv.Close()
	var beats atomic.Int64
	hb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { beats.Add(1) }))
	defer hb.Close()
	t.Setenv("CANARY_VAULT_TOKEN", "canary-token")
	t.Setenv("CANARY_HEARTBEAT_URL", hb.URL)

	fv.write("app-token", "secret/data/app/db") // the file exists before the tail starts
	tail, err := filetail.New(filetail.Config{Path: logPath, PollInterval: duration.Duration(5 * time.Millisecond), IdleFlush: duration.Duration(10 * time.Millisecond), StartAt: "beginning"},
		"vault-file", source.AuditParser(ingest.DefaultOptions()), nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := watch.CanaryConfig{Interval: duration.Duration(time.Minute), HeartbeatURL: secret.Secret{Env: "CANARY_HEARTBEAT_URL"},
		Vault: &watch.VaultCanary{Address: vsrv.URL, Token: secret.Secret{Env: "CANARY_VAULT_TOKEN"}}}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	out := &sink{clk: clk}
	sil := watch.NewSilence(watch.SilenceConfig{})
	can := watch.NewCanary(cfg, nil, nil)
	hbURL, err := cfg.Heartbeat()
	if err != nil {
		t.Fatal(err)
	}
	r := watch.NewRunner(sil, can, hbURL, out, clk.Now, nil, nil, nil)
	pub := &counter{detected: r.Detected}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tail.Run(ctx, r.Publisher(pub)) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	var published int64 = 0
	wait := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s (published %d, canary events %d)", what, pub.n.Load(), can.CanaryEvents())
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	// step advances the clock by 10 s: an application read is written
	// (while the device writes), the tail reads it, then the watch ticks.
	step := func(writing bool) {
		t.Helper()
		clk.Add(10 * time.Second)
		before := fv.reads.Load()
		if writing {
			fv.write("app-token", "secret/data/app/db")
			published++
			wait("application read", func() bool { return pub.n.Load() >= published+1 })
		}
		n := can.CanaryEvents()
		if err := r.Tick(context.Background()); err != nil {
			t.Fatal(err)
		}
		if writing && fv.reads.Load() > before {
			wait("canary event", func() bool { return can.CanaryEvents() > n })
		}
	}
	// Learning: 90 minutes of a read every 10 s, a canary every minute.
	for i := 0; i < 540; i++ {
		step(true)
	}
	if _, _, ok := out.find(schema.DetectorSourceSilent, 0); ok {
		t.Fatal("source_silent while the source was busy")
	}
	if _, _, ok := out.find(schema.DetectorPipelineBlind, 0); ok {
		t.Fatal("pipeline_blind while the canary came back")
	}
	if beats.Load() == 0 {
		t.Fatal("heartbeat never called while canaries came back")
	}
	if th := sil.Threshold("vault-file", clk.Now()); th != 5*time.Minute {
		t.Fatalf("learned threshold %v, want the 5m floor (10 x 10s)", th)
	}

	// The audit device stops writing; Vault keeps serving the canary.
	fv.mu.Lock()
	fv.stopped = true
	fv.mu.Unlock()
	stoppedAt := clk.Now()
	beatsAtStop := beats.Load()
	for i := 0; i < 60; i++ { // 10 minutes
		step(false)
	}
	blind, blindAt, ok := out.find(schema.DetectorPipelineBlind, 0)
	if !ok || blind.Severity != schema.SeverityCritical {
		t.Fatalf("no pipeline_blind after 10 minutes of a silent device: %+v", out.fs)
	}
	// The first canary after the stop is sent within 1 minute; its
	// deadline is 2 minutes; checks run every 10 s.
	if blindAt.Sub(stoppedAt) > time.Minute+2*time.Minute+10*time.Second {
		t.Errorf("pipeline_blind reached the outputs %v after the stop", blindAt.Sub(stoppedAt))
	}
	silent, silentAt, ok := out.find(schema.DetectorSourceSilent, 0)
	if !ok || silent.Resource != "vault-file" {
		t.Fatalf("no source_silent after 10 minutes of a silent device: %+v", out.fs)
	}
	if silentAt.Sub(stoppedAt) > 5*time.Minute+10*time.Second {
		t.Errorf("source_silent reached the outputs %v after the stop, want within 5m10s", silentAt.Sub(stoppedAt))
	}
	if beats.Load() != beatsAtStop {
		t.Errorf("heartbeat called %d times while the canary was missing", beats.Load()-beatsAtStop)
	}

	// Writing resumes: both resolve.
	fv.mu.Lock()
	fv.stopped = false
	fv.mu.Unlock()
	for i := 0; i < 12; i++ {
		step(true)
	}
	if f, _, ok := out.find(schema.DetectorSourceSilent, 1); !ok || f.Attributes["status"] != "resolved" {
		t.Errorf("source_silent not resolved: %+v", out.fs)
	}
	if f, _, ok := out.find(schema.DetectorPipelineBlind, 1); !ok || f.Attributes["status"] != "resolved" {
		t.Errorf("pipeline_blind not resolved: %+v", out.fs)
	}
	if beats.Load() == beatsAtStop {
		t.Error("heartbeat not called again after the canary came back")
	}
	// Canary events never reach the detectors.
	if can.CanaryEvents() == 0 {
		t.Fatal("no canary event seen")
	}
}

// TestSaltChange: the canary token's HMAC in the log no longer equals
// what sys/audit-hash returns (the device was re-created under the same
// path, or the file read is another device's): a critical finding.
func TestSaltChange(t *testing.T) {
	clk := newClock(time.Date(2026, 11, 3, 9, 0, 0, 0, time.UTC))
	fv := &fakeVault{path: filepath.Join(t.TempDir(), "a.log"), clk: clk, salt: "salt-1"}
	vsrv := httptest.NewServer(fv)
	defer vsrv.Close()
	t.Setenv("CANARY_VAULT_TOKEN", "canary-token")
	can := watch.NewCanary(watch.CanaryConfig{Vault: &watch.VaultCanary{Address: vsrv.URL, Token: secret.Secret{Env: "CANARY_VAULT_TOKEN"}}}, nil, nil)
	ev := func(hmac string) *schema.Event {
		return &schema.Event{Source: schema.SourceVault, ID: "e", Time: clk.Now(), Action: "vault:read", Resource: "secret/data/auditwatch-canary", TokenHMAC: hmac}
	}
	if err := can.Probe(context.Background(), clk.Now()); err != nil {
		t.Fatal(err)
	}
	ok, fs := can.Match(ev(fv.hmac("canary-token")), clk.Now())
	if !ok || len(fs) != 0 {
		t.Fatalf("matching salt: %v %+v", ok, fs)
	}
	old := fv.hmac("canary-token")
	fv.mu.Lock()
	fv.salt = "salt-2" // the device was re-created: new salt
	fv.mu.Unlock()
	if err := can.Probe(context.Background(), clk.Now()); err != nil {
		t.Fatal(err)
	}
	_, fs = can.Match(ev(old), clk.Now()) // the file read still carries the old device's HMAC
	if len(fs) != 1 || fs[0].Attributes["kind"] != "audit_salt_changed" || fs[0].Severity != schema.SeverityCritical {
		t.Fatalf("salt change: %+v", fs)
	}
	if ok, _ := can.Match(&schema.Event{Source: schema.SourceVault, Resource: "secret/data/app/db"}, clk.Now()); ok {
		t.Fatal("an ordinary read taken for the canary")
	}
}

// TestSilenceLearnsPerHour: the threshold follows each hour's usual gap,
// with the floor; a one-shot burst never alarms.
func TestSilenceLearnsPerHour(t *testing.T) {
	s := watch.NewSilence(watch.SilenceConfig{})
	t0 := time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC)
	// Night (hour 0-1): a read every 2 minutes; day (hour 9): every 5 s.
	last := t0
	for at := t0; at.Before(t0.Add(2 * time.Hour)); at = at.Add(2 * time.Minute) {
		s.Observe("v", 1, at)
		last = at
	}
	if th := s.Threshold("v", last); th != 20*time.Minute {
		t.Fatalf("night threshold %v, want 20m", th)
	}
	if fs := s.Check(last.Add(19 * time.Minute)); len(fs) != 0 {
		t.Fatalf("silent too early: %+v", fs)
	}
	if fs := s.Check(last.Add(21 * time.Minute)); len(fs) != 1 || fs[0].Detector != schema.DetectorSourceSilent {
		t.Fatalf("no silence after 21m: %+v", fs)
	}
	if fs := s.Observe("v", 3, t0.Add(2*time.Hour+30*time.Minute)); len(fs) != 1 || fs[0].Revision != 1 {
		t.Fatalf("no recovery: %+v", fs)
	}
	b := watch.NewSilence(watch.SilenceConfig{})
	for i := 0; i < 1000; i++ {
		b.Observe("backfill", 512, t0.Add(time.Duration(i)*time.Millisecond))
	}
	if fs := b.Check(t0.Add(24 * time.Hour)); len(fs) != 0 {
		t.Fatalf("a one-shot backfill alarmed: %+v", fs)
	}
}

// fakeSecrets is Secrets Manager's GetSecretValue.
type fakeSecrets struct{ calls atomic.Int64 }

func (f *fakeSecrets) GetSecretValue(_ context.Context, in *secretsmanager.GetSecretValueInput, _ ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error) {
	f.calls.Add(1)
	return &secretsmanager.GetSecretValueOutput{Name: in.SecretId, SecretString: aws.String("canary")}, nil
}

// TestAWSCanary: the GetSecretValue canary's CloudTrail event (by name or
// ARN) comes back within its deadline; when it does not, pipeline_blind
// goes to the sink and the blind gauge is 1 until the event arrives.
func TestAWSCanary(t *testing.T) {
	clk := newClock(time.Date(2026, 11, 3, 9, 0, 0, 0, time.UTC))
	sm := &fakeSecrets{}
	cfg := watch.CanaryConfig{AWS: &watch.AWSCanary{SecretID: "auditwatch-canary"}}
	cfg.AWS.AWS.Region = "eu-west-1"
	can := watch.NewCanary(cfg, nil, sm)
	out := &sink{clk: clk}
	reg := prometheus.NewRegistry()
	r := watch.NewRunner(nil, can, "", out, clk.Now, nil, nil, reg)
	ctx := context.Background()
	ctEv := func(resource string) schema.Event {
		return schema.Event{Source: schema.SourceCloudTrail, ID: "ct-" + clk.Now().Format("150405"), Time: clk.Now(),
			Action: "secretsmanager:GetSecretValue", Resource: resource, Principal: "arn:aws:iam::111122223333:role/auditwatch-canary"}
	}
	pub := &counter{detected: r.Detected}
	p := r.Publisher(pub)
	if err := r.Tick(ctx); err != nil { // first round
		t.Fatal(err)
	}
	clk.Add(10 * time.Minute)
	ev := ctEv("arn:aws:secretsmanager:eu-west-1:111122223333:secret:auditwatch-canary-AbCdEf")
	if err := p.Publish(ctx, source.Batch{Source: "ct", Events: []schema.Event{ev, ctEv("prod/db")}}); err != nil {
		t.Fatal(err)
	}
	if pub.n.Load() != 1 || can.CanaryEvents() != 1 {
		t.Fatalf("published %d (want the ordinary event only), canary events %d", pub.n.Load(), can.CanaryEvents())
	}
	for i := 0; i < 30; i++ { // 30 minutes with no canary event back
		clk.Add(time.Minute)
		if err := r.Tick(ctx); err != nil {
			t.Fatal(err)
		}
	}
	f, at, ok := out.find(schema.DetectorPipelineBlind, 0)
	if !ok || f.Attributes["canary"] != "aws" || f.Severity != schema.SeverityCritical {
		t.Fatalf("no pipeline_blind: %+v", out.fs)
	}
	if lag := at.Sub(time.Date(2026, 11, 3, 9, 11, 0, 0, time.UTC)); lag > 26*time.Minute {
		t.Errorf("pipeline_blind %v after the missed read, deadline 25m", lag)
	}
	if v := testutil.ToFloat64(r.BlindGauge().WithLabelValues("aws")); v != 1 {
		t.Errorf("auditwatch_canary_blind = %v while blind", v)
	}
	if err := p.Publish(ctx, source.Batch{Source: "ct", Events: []schema.Event{ctEv("auditwatch-canary")}}); err != nil {
		t.Fatal(err)
	}
	if err := r.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := out.find(schema.DetectorPipelineBlind, 1); !ok {
		t.Fatalf("not resolved: %+v", out.fs)
	}
	if v := testutil.ToFloat64(r.BlindGauge().WithLabelValues("aws")); v != 0 {
		t.Errorf("auditwatch_canary_blind = %v after recovery", v)
	}
	if sm.calls.Load() < 30 {
		t.Errorf("%d GetSecretValue calls in 40 minutes at a 1m interval", sm.calls.Load())
	}
}

// TestSilenceRestart: baselines saved before a restart are restored, so
// a source that goes quiet right after the restart is reported at its
// learned threshold (no new learning hour); the downtime is neither a
// gap nor a silence; a silence open at the restart resolves after it.
func TestSilenceRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "watch", "silence.json")
	t0 := time.Date(2026, 11, 3, 9, 0, 0, 0, time.UTC)
	s := watch.NewSilence(watch.SilenceConfig{})
	last := t0
	for at := t0; at.Before(t0.Add(90 * time.Minute)); at = at.Add(time.Minute) {
		s.Observe("vault", 1, at)
		s.Observe("cloudtrail", 1, at)
		last = at
	}
	if th := s.Threshold("vault", last); th != 10*time.Minute {
		t.Fatalf("learned threshold %v", th)
	}
	// cloudtrail goes quiet before the restart: an open silence
	for _, at := range []time.Duration{5 * time.Minute, 10 * time.Minute} {
		s.Observe("vault", 1, last.Add(at))
	}
	if fs := s.Check(last.Add(11 * time.Minute)); len(fs) != 1 || fs[0].Resource != "cloudtrail" {
		t.Fatalf("before restart: %+v", fs)
	}
	restart := last.Add(3 * time.Hour) // down for hours
	learned := s.Threshold("vault", restart)
	if learned < 10*time.Minute || learned > 20*time.Minute {
		t.Fatalf("learned %v", learned)
	}
	if err := s.Save(path); err != nil {
		t.Fatal(err)
	}

	r := watch.NewSilence(watch.SilenceConfig{})
	if err := r.Load(path, restart); err != nil {
		t.Fatal(err)
	}
	if th := r.Threshold("vault", restart); th != learned {
		t.Fatalf("threshold after restart %v, want the learned %v", th, learned)
	}
	if fs := r.Check(restart.Add(learned - time.Minute)); len(fs) != 0 {
		t.Fatalf("the downtime raised a silence: %+v", fs)
	}
	fs := r.Check(restart.Add(learned + time.Minute))
	if len(fs) != 1 || fs[0].Resource != "vault" || fs[0].Detector != schema.DetectorSourceSilent {
		t.Fatalf("vault quiet after the restart: %+v", fs)
	}
	// cloudtrail's silence from before the restart resolves
	rec := r.Observe("cloudtrail", 1, restart.Add(learned+2*time.Minute))
	if len(rec) != 1 || rec[0].Revision != 1 || rec[0].Attributes["status"] != "resolved" {
		t.Fatalf("open silence not resolved after restart: %+v", rec)
	}
	// the runner saves the baselines on its ticks
	tickPath := filepath.Join(t.TempDir(), "silence.json")
	run := watch.NewRunner(r, nil, "", nil, func() time.Time { return restart.Add(13 * time.Minute) }, nil, nil, nil)
	run.SilenceState = tickPath
	if err := run.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	again := watch.NewSilence(watch.SilenceConfig{})
	if err := again.Load(tickPath, restart.Add(14*time.Minute)); err != nil || again.Threshold("vault", restart) != learned {
		t.Fatalf("runner's saved state: %v, threshold %v", err, again.Threshold("vault", restart))
	}
	// and a fresh one with nothing saved is blind for its learning hour
	fresh := watch.NewSilence(watch.SilenceConfig{})
	if err := fresh.Load(filepath.Join(t.TempDir(), "none.json"), restart); err != nil {
		t.Fatal(err)
	}
	fresh.Observe("vault", 1, restart)
	if fs := fresh.Check(restart.Add(time.Hour)); len(fs) != 0 {
		t.Fatalf("unlearned source alarmed: %+v", fs)
	}
	// a corrupt file is an error naming it, and restores nothing
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"vault":{"gaps":[-1]}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c := watch.NewSilence(watch.SilenceConfig{})
	if err := c.Load(bad, restart); err == nil || !strings.Contains(err.Error(), "bad.json") || c.Threshold("vault", restart) != 0 {
		t.Fatalf("corrupt state: %v", err)
	}
}

// TestPassiveCanary: the Kafka detect stage's canary makes no reads; the
// first canary event it sees arms it, then each expects the next within
// interval + deadline, else pipeline_blind (resolved by the next event);
// replayed events are labelled but are not arrivals; Disarm (partitions
// given up) stops expecting.
func TestPassiveCanary(t *testing.T) {
	clk := newClock(time.Date(2026, 11, 3, 9, 0, 0, 0, time.UTC))
	cfg := watch.CanaryConfig{Interval: duration.Duration(time.Minute),
		Vault: &watch.VaultCanary{Address: "http://127.0.0.1:1", Token: secret.Secret{Env: "CANARY_VAULT_TOKEN"}}}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	can := watch.NewPassiveCanary(cfg)
	out := &sink{clk: clk}
	r := watch.NewRunner(nil, can, "", out, clk.Now, nil, nil, nil)
	ctx := context.Background()
	tick := func(d time.Duration) {
		t.Helper()
		clk.Add(d)
		if err := r.Tick(ctx); err != nil {
			t.Fatal(err)
		}
	}
	canaryEv := func(at time.Time) *schema.Event {
		return &schema.Event{Source: schema.SourceVault, ID: "c-" + at.Format("150405"), Time: at, Action: "read", Resource: cfg.Vault.Path}
	}
	for range 60 { // unarmed: nothing expected
		tick(time.Minute)
	}
	if len(out.fs) != 0 {
		t.Fatalf("unarmed passive canary raised %+v", out.fs)
	}
	if !r.Detected(canaryEv(clk.Now()), false) || can.CanaryEvents() != 1 {
		t.Fatal("canary event not labelled or not counted")
	}
	if r.Detected(&schema.Event{Source: schema.SourceVault, Time: clk.Now(), Resource: "secret/data/app/db"}, false) {
		t.Fatal("an ordinary read labelled as canary")
	}
	for range 3 { // one more each minute: healthy
		tick(time.Minute)
		r.Detected(canaryEv(clk.Now()), false)
	}
	if len(out.fs) != 0 {
		t.Fatalf("canary events every interval raised %+v", out.fs)
	}
	armedAt := clk.Now()
	// a replayed old canary event is labelled, not an arrival
	if !r.Detected(canaryEv(armedAt.Add(-time.Hour)), true) || can.CanaryEvents() != 4 {
		t.Fatalf("replayed event: canary events %d", can.CanaryEvents())
	}
	// no event: blind after interval + deadline (1m + 2m)
	tick(2*time.Minute + 50*time.Second)
	if len(out.fs) != 0 {
		t.Fatalf("blind before interval + deadline: %+v", out.fs)
	}
	tick(20 * time.Second)
	f, _, ok := out.find(schema.DetectorPipelineBlind, 0)
	if !ok || f.Severity != schema.SeverityCritical {
		t.Fatalf("no pipeline_blind: %+v", out.fs)
	}
	r.Detected(canaryEv(clk.Now()), false)
	tick(5 * time.Second)
	if _, _, ok := out.find(schema.DetectorPipelineBlind, 1); !ok {
		t.Fatalf("pipeline_blind not resolved: %+v", out.fs)
	}
	n := len(out.fs)
	r.Disarm()
	for range 30 {
		tick(time.Minute)
	}
	if len(out.fs) != n {
		t.Fatalf("disarmed canary raised %+v", out.fs[n:])
	}
}
