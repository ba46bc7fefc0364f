package alert

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"auditwatch/alert/deadletter"
	"auditwatch/alert/notify"
	"auditwatch/alert/notify/notifytest"
	"auditwatch/alert/slack"
	"auditwatch/alert/slack/slacktest"
	"auditwatch/alert/webhook"
	"auditwatch/internal/secret"
	"auditwatch/schema"
)

// recorder is an output that records what it is asked to deliver.
type recorder struct {
	mu     sync.Mutex
	alerts []notify.Alert
	events []schema.Event
	fail   func(a notify.Alert) error
}

func (r *recorder) Notify(_ context.Context, a notify.Alert) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		if err := r.fail(a); err != nil {
			return err
		}
	}
	r.alerts = append(r.alerts, a)
	return nil
}

func (r *recorder) SendEvents(_ context.Context, evs []schema.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, evs...)
	return nil
}

func (r *recorder) got() []notify.Alert {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]notify.Alert(nil), r.alerts...)
}

func (r *recorder) ids() []string {
	var ids []string
	for _, a := range r.got() {
		ids = append(ids, a.Finding.ID)
	}
	return ids
}

// testConfig has outputs named a, b and c (webhook type: built, then
// replaced by recorders) and whatever routes the test adds.
func testConfig(t *testing.T) Config {
	cfg := Defaults()
	cfg.DeadLetter.Path = filepath.Join(t.TempDir(), "dead.jsonl")
	for _, n := range []string{"a", "b", "c"} {
		cfg.Outputs = append(cfg.Outputs, OutputConfig{Name: n, Type: TypeWebhook, Webhook: &webhook.Config{URL: "http://127.0.0.1:1/"}})
	}
	cfg.Retry.Initial = time.Millisecond
	cfg.Retry.Max = 10 * time.Millisecond
	return cfg
}

func newTestRouter(t *testing.T, cfg Config, clock notify.Clock, outs map[string]*recorder) (*Router, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts := []Option{WithClock(clock)}
	for name, r := range outs {
		opts = append(opts, WithOutput(name, r))
	}
	r, err := New(cfg, nil, reg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r, reg
}

func finding(id, detector string, sev schema.Severity, principal, resource string) schema.Finding {
	return schema.Finding{ID: id, Detector: detector, Severity: sev, Principal: principal, Resource: resource,
		SourceIP: "198.51.100.7", DedupeKey: "k-" + id, Count: 1, Time: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}
}

func TestRouting(t *testing.T) {
	cfg := testConfig(t)
	cfg.Outputs[2].MinSeverity = "high"
	cfg.Routes = []RouteConfig{
		{Name: "break-glass", Match: Match{Principals: []string{"arn:aws:iam::*:role/break-glass*"}}, Outputs: []string{"c"}, Continue: true},
		{Name: "priv", Match: Match{Detectors: []string{schema.DetectorPrivilegedUse}, MinSeverity: "high"}, Outputs: []string{"a", "b"}},
		{Name: "prod", Match: Match{Resources: []string{"secret/data/prod/*"}}, Outputs: []string{"a"}},
	}
	cfg.DefaultOutputs = []string{"b"}
	outs := map[string]*recorder{"a": {}, "b": {}, "c": {}}
	r, reg := newTestRouter(t, cfg, notifytest.NewClock(time.Now()), outs)
	ctx := context.Background()
	for _, f := range []schema.Finding{
		finding("priv-high", schema.DetectorPrivilegedUse, schema.SeverityHigh, "u1", "sys/policy/x"),                                         // a, b
		finding("priv-low", schema.DetectorPrivilegedUse, schema.SeverityLow, "u1", "sys/policy/x"),                                           // default b
		finding("prod", schema.DetectorFirstTimeAccess, schema.SeverityMedium, "u2", "secret/data/prod/db"),                                   // a
		finding("bg-low", schema.DetectorFirstTimeAccess, schema.SeverityMedium, "arn:aws:iam::1:role/break-glass-ops", "secret/data/prod/x"), // c (below min) + a
		finding("bg-high", schema.DetectorUnexpectedIP, schema.SeverityCritical, "arn:aws:iam::1:role/break-glass", "other"),                  // c only
	} {
		if err := r.Handle(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string][]string{"a": {"priv-high", "prod", "bg-low"}, "b": {"priv-high", "priv-low"}, "c": {"bg-high"}}
	for name, ids := range want {
		if got := outs[name].ids(); strings.Join(got, ",") != strings.Join(ids, ",") {
			t.Errorf("output %s got %v, want %v", name, got, ids)
		}
	}
	if v := testutil.ToFloat64(r.m.suppressed.WithLabelValues("min_severity")); v != 1 {
		t.Errorf("min_severity suppressions = %v, want 1", v)
	}
	if v := testutil.ToFloat64(r.m.sent.WithLabelValues("a")); v != 3 {
		t.Errorf("sent{a} = %v, want 3", v)
	}
	if n, err := testutil.GatherAndCount(reg, "auditwatch_alert_sent_total"); err != nil || n != 3 {
		t.Errorf("sent series = %d (%v)", n, err)
	}
}

func TestSilences(t *testing.T) {
	clock := notifytest.NewClock(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	cfg := testConfig(t)
	cfg.DefaultOutputs = []string{"a"}
	cfg.Silences = []SilenceConfig{{Match: Match{Detectors: []string{schema.DetectorAccessVolumeSpike}, Principals: []string{"*backup*"}},
		Until: clock.Now().Add(time.Hour), Reason: "backup migration"}}
	outs := map[string]*recorder{"a": {}}
	r, _ := newTestRouter(t, cfg, clock, outs)
	ctx := context.Background()
	_ = r.Handle(ctx, finding("s1", schema.DetectorAccessVolumeSpike, schema.SeverityHigh, "role/nightly-backup", "x"))
	_ = r.Handle(ctx, finding("n1", schema.DetectorAccessVolumeSpike, schema.SeverityHigh, "role/app", "x"))
	_ = r.Handle(ctx, finding("n2", schema.DetectorFirstTimeAccess, schema.SeverityHigh, "role/nightly-backup", "x"))
	clock.Advance(time.Hour) // the silence expires
	_ = r.Handle(ctx, finding("s2", schema.DetectorAccessVolumeSpike, schema.SeverityHigh, "role/nightly-backup", "x"))
	if got := strings.Join(outs["a"].ids(), ","); got != "n1,n2,s2" {
		t.Errorf("delivered %s, want n1,n2,s2 (s1 silenced, s2 after expiry)", got)
	}
	if v := testutil.ToFloat64(r.m.suppressed.WithLabelValues("silence")); v != 1 {
		t.Errorf("silenced = %v, want 1", v)
	}
}

func TestGrouping(t *testing.T) {
	clock := notifytest.NewClock(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	cfg := testConfig(t)
	cfg.DefaultOutputs = []string{"a"}
	cfg.GroupWindow = 10 * time.Minute
	outs := map[string]*recorder{"a": {}}
	r, _ := newTestRouter(t, cfg, clock, outs)
	ctx := context.Background()
	mk := func(id string, rev, count int) schema.Finding {
		f := finding(id, schema.DetectorAuthFailureSpike, schema.SeverityHigh, "u", "auth/userpass/login/u")
		f.DedupeKey, f.Revision, f.Count = "burst-1", rev, count
		return f
	}
	_ = r.Handle(ctx, mk("f0", 0, 10))
	clock.Advance(time.Minute)
	_ = r.Handle(ctx, mk("f1", 1, 15))
	_ = r.Handle(ctx, mk("f1", 1, 15)) // redelivery: neither posted nor counted again
	clock.Advance(time.Minute)
	_ = r.Handle(ctx, mk("f2", 2, 40))
	clock.Advance(10 * time.Minute) // window over: a new group
	_ = r.Handle(ctx, mk("f3", 3, 5))
	got := outs["a"].got()
	if len(got) != 4 {
		t.Fatalf("delivered %d alerts, want 4: %v", len(got), outs["a"].ids())
	}
	want := []struct {
		update        bool
		repeat, count int
	}{{false, 1, 10}, {true, 2, 25}, {true, 3, 65}, {false, 1, 5}}
	for i, w := range want {
		a := got[i]
		if a.Update != w.update || a.Repeat != w.repeat || a.GroupCount != w.count {
			t.Errorf("alert %d (%s): update=%v repeat=%d count=%d, want %+v", i, a.Finding.ID, a.Update, a.Repeat, a.GroupCount, w)
		}
	}
	if v := testutil.ToFloat64(r.m.suppressed.WithLabelValues("duplicate")); v != 1 {
		t.Errorf("duplicates = %v, want 1", v)
	}
}

func TestGroupTableBounded(t *testing.T) {
	cfg := testConfig(t)
	cfg.DefaultOutputs = []string{"a"}
	cfg.MaxGroups = 10
	r, _ := newTestRouter(t, cfg, notifytest.NewClock(time.Now()), map[string]*recorder{"a": {}})
	for i := range 100 {
		_ = r.Handle(context.Background(), finding(fmt.Sprint("g", i), schema.DetectorUnexpectedIP, schema.SeverityLow, "u", "r"))
	}
	r.gmu.Lock()
	n := len(r.groups)
	r.gmu.Unlock()
	if n > 10 {
		t.Errorf("group table holds %d groups, bound is 10", n)
	}
	if v := testutil.ToFloat64(r.m.evictions); v < 89 {
		t.Errorf("evictions = %v, want about 90", v)
	}
}

func readDeadLetters(t *testing.T, path string) []deadletter.Record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []deadletter.Record
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<22)
	for sc.Scan() {
		var r deadletter.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("dead-letter line %q: %v", sc.Text(), err)
		}
		out = append(out, r)
	}
	return out
}

func TestPermanentAndExhaustedGoToDeadLetter(t *testing.T) {
	cfg := testConfig(t)
	cfg.DefaultOutputs = []string{"a"}
	cfg.Retry.MaxAttempts = 3
	calls := map[string]int{}
	outs := map[string]*recorder{"a": {fail: func(a notify.Alert) error {
		calls[a.Finding.ID]++
		switch a.Finding.ID {
		case "reject":
			return &notify.StatusError{Code: 400, Msg: "bad request"}
		case "down":
			return &notify.StatusError{Code: 503}
		}
		return nil
	}}}
	r, _ := newTestRouter(t, cfg, notifytest.NewClock(time.Now()), outs)
	ctx := context.Background()
	for _, id := range []string{"ok", "reject", "down"} {
		if err := r.Handle(ctx, finding(id, schema.DetectorUnexpectedIP, schema.SeverityHigh, "u", "r")); err != nil {
			t.Fatalf("%s: %v (a dead-lettered alert is handed off)", id, err)
		}
	}
	if calls["reject"] != 1 || calls["down"] != 3 {
		t.Errorf("attempts: reject %d (want 1, permanent), down %d (want 3, max_attempts)", calls["reject"], calls["down"])
	}
	recs := readDeadLetters(t, cfg.DeadLetter.Path)
	if len(recs) != 2 || recs[0].Finding.ID != "reject" || recs[0].Reason != "rejected" || recs[1].Finding.ID != "down" ||
		recs[1].Reason != "server" || recs[1].Attempts != 3 || !strings.Contains(recs[1].Error, "retries exhausted") {
		t.Errorf("dead letters = %+v", recs)
	}
	// Redelivery: dead-lettered findings are not retried or written again.
	for _, id := range []string{"reject", "down"} {
		_ = r.Handle(ctx, finding(id, schema.DetectorUnexpectedIP, schema.SeverityHigh, "u", "r"))
	}
	if len(readDeadLetters(t, cfg.DeadLetter.Path)) != 2 || calls["reject"] != 1 {
		t.Error("a redelivered dead-lettered finding was tried again")
	}
	if v := testutil.ToFloat64(r.m.failed.WithLabelValues("a", "server")); v != 3 {
		t.Errorf("failed{server} = %v, want 3", v)
	}
	if v := testutil.ToFloat64(r.m.retries.WithLabelValues("a")); v != 2 {
		t.Errorf("retries = %v, want 2", v)
	}
}

func TestCanceledIsNotHandedOff(t *testing.T) {
	cfg := testConfig(t)
	cfg.DefaultOutputs = []string{"a"}
	ctx, cancel := context.WithCancel(context.Background())
	outs := map[string]*recorder{"a": {fail: func(notify.Alert) error { cancel(); return &notify.StatusError{Code: 503} }}}
	r, _ := newTestRouter(t, cfg, notifytest.NewClock(time.Now()), outs)
	err := r.Handle(ctx, finding("x", schema.DetectorUnexpectedIP, schema.SeverityHigh, "u", "r"))
	if !errors.Is(err, ErrNotHandedOff) {
		t.Fatalf("Handle = %v, want ErrNotHandedOff", err)
	}
	if _, err := os.Stat(cfg.DeadLetter.Path); err == nil && len(readDeadLetters(t, cfg.DeadLetter.Path)) != 0 {
		t.Error("a cancelled delivery was dead-lettered")
	}
	outs["a"].fail = nil
	if err := r.Handle(context.Background(), finding("x", schema.DetectorUnexpectedIP, schema.SeverityHigh, "u", "r")); err != nil || len(outs["a"].got()) != 1 {
		t.Errorf("redelivery after cancel: %v, %d delivered", err, len(outs["a"].got()))
	}
}

func TestHandleEvents(t *testing.T) {
	cfg := testConfig(t)
	cfg.EventOutputs = []string{"a", "b"}
	outs := map[string]*recorder{"a": {}, "b": {}}
	r, _ := newTestRouter(t, cfg, notifytest.NewClock(time.Now()), outs)
	h := notifytest.HostileEvent()
	if err := r.HandleEvent(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a", "b"} {
		evs := outs[n].events
		if len(evs) != 1 || len(evs[0].Resource) > cfg.MaxFieldBytes || evs[0].UserAgent != h.UserAgent {
			t.Errorf("output %s got %d events (resource %d bytes)", n, len(evs), len(evs[0].Resource))
		}
	}
	if v := testutil.ToFloat64(r.m.eventsSent.WithLabelValues("a")); v != 1 {
		t.Errorf("events sent = %v", v)
	}
}

func TestBoundsHostileFields(t *testing.T) {
	cfg := testConfig(t)
	cfg.DefaultOutputs = []string{"a"}
	outs := map[string]*recorder{"a": {}}
	r, _ := newTestRouter(t, cfg, notifytest.NewClock(time.Now()), outs)
	if err := r.Handle(context.Background(), notifytest.HostileFinding()); err != nil {
		t.Fatal(err)
	}
	f := outs["a"].got()[0].Finding
	if len(f.Resource) > cfg.MaxFieldBytes || len(f.Attributes["path"]) > cfg.MaxFieldBytes || !strings.HasSuffix(f.Resource, "…") {
		t.Errorf("10 KB fields reached the output unbounded: %d bytes", len(f.Resource))
	}
	if err := r.Handle(context.Background(), schema.Finding{}); !errors.Is(err, ErrInvalidFinding) {
		t.Errorf("finding without id: %v", err)
	}
}

// TestRestartKeepsIdempotencyAndThreads runs a real Slack output (against
// the local Slack API) with a bbolt state file, restarts the router, and
// checks that a redelivered finding is not posted again and that a repeat
// after the restart lands in the thread started before it.
func TestRestartKeepsIdempotencyAndThreads(t *testing.T) {
	srv := slacktest.New("xoxb-restart")
	defer srv.Close()
	t.Setenv("AW_TEST_SLACK_TOKEN", "xoxb-restart")
	dir := t.TempDir()
	cfg := Defaults()
	cfg.StatePath = filepath.Join(dir, "alerts.db")
	cfg.DeadLetter.Path = filepath.Join(dir, "dead.jsonl")
	cfg.Outputs = []OutputConfig{{Name: "slack", Type: TypeSlack, Slack: &slack.Config{Token: secret.Secret{Env: "AW_TEST_SLACK_TOKEN"},
		Channel: "#sec", APIURL: srv.APIURL()}}}
	cfg.DefaultOutputs = []string{"slack"}
	clock := notifytest.NewClock(time.Now())
	open := func() *Router {
		r, err := New(cfg, nil, prometheus.NewRegistry(), WithClock(clock))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	f := notifytest.Finding()
	r := open()
	if err := r.Handle(context.Background(), f); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r = open()
	defer r.Close()
	if err := r.Handle(context.Background(), f); err != nil { // redelivered after restart
		t.Fatal(err)
	}
	if n := len(srv.Messages()); n != 1 {
		t.Fatalf("after a restart the redelivered finding posted again: %d messages", n)
	}
	// Updates of the incident after the restart (revisions 1 and 2 of the
	// same dedupe key) go into the thread started before it.
	up := f
	up.ID, up.Revision = "later-1", 1
	up2 := f
	up2.ID, up2.Revision = "later-2", 2
	_ = r.Handle(context.Background(), up)
	_ = r.Handle(context.Background(), up2)
	msgs := srv.Messages()
	parent := msgs[0].TS
	var replies int
	for _, m := range msgs {
		if m.ThreadTS == parent {
			replies++
		}
	}
	if replies != 2 {
		t.Errorf("after the restart, updates replied %d times in the thread started before it, want 2: %+v", replies, msgs)
	}
}

// TestSlackOutageThenExactlyOnce is the failure test: for one (virtual)
// minute the local Slack answers every request with a 500 or a 429 with
// Retry-After; findings keep arriving concurrently. Afterwards every
// finding Slack accepts must have been posted exactly once, and the ones it
// rejects with a 4xx must be in the dead-letter file, each once.
func TestSlackOutageThenExactlyOnce(t *testing.T) {
	srv := slacktest.New("xoxb-outage")
	defer srv.Close()
	t.Setenv("AW_TEST_SLACK_TOKEN", "xoxb-outage")
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clock := notifytest.NewClock(start)
	outageEnd := start.Add(time.Minute)
	var mu sync.Mutex
	failures := map[int]int{}
	srv.Fail = func(method string, n int, text string) *slacktest.Failure {
		if strings.Contains(text, "REJECT-HTTP") {
			return &slacktest.Failure{Status: 404, Body: "not found"}
		}
		if strings.Contains(text, "REJECT-API") {
			return &slacktest.Failure{Status: 200, Body: slacktest.SlackError("channel_not_found")}
		}
		if clock.Now().Before(outageEnd) {
			mu.Lock()
			defer mu.Unlock()
			if n%2 == 0 {
				failures[429]++
				return &slacktest.Failure{Status: 429, Body: slacktest.SlackError("ratelimited"), Headers: map[string]string{"Retry-After": "3"}}
			}
			failures[500]++
			return &slacktest.Failure{Status: 500, Body: "<html>Internal Server Error</html>"}
		}
		return nil
	}
	dir := t.TempDir()
	cfg := Defaults()
	cfg.StatePath = filepath.Join(dir, "alerts.db")
	cfg.DeadLetter.Path = filepath.Join(dir, "dead.jsonl")
	cfg.Outputs = []OutputConfig{{Name: "slack", Type: TypeSlack, Slack: &slack.Config{Token: secret.Secret{Env: "AW_TEST_SLACK_TOKEN"},
		Channel: "#sec", APIURL: srv.APIURL()}}}
	cfg.DefaultOutputs = []string{"slack"}
	reg := prometheus.NewRegistry()
	r, err := New(cfg, nil, reg, WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	const n = 24
	var findings []schema.Finding
	rejected := map[string]bool{}
	for i := range n {
		f := notifytest.Finding()
		f.ID = fmt.Sprintf("finding-%02d", i)
		f.DedupeKey = "incident-" + f.ID
		switch i % 6 {
		case 4:
			f.Summary = "REJECT-HTTP " + f.ID
			rejected[f.ID] = true
		case 5:
			f.Summary = "REJECT-API " + f.ID
			rejected[f.ID] = true
		}
		findings = append(findings, f)
	}
	handleAll := func() {
		var wg sync.WaitGroup
		for _, f := range findings {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := r.Handle(context.Background(), f); err != nil {
					t.Errorf("Handle(%s): %v", f.ID, err)
				}
			}()
		}
		wg.Wait()
	}
	handleAll()
	if !clock.Now().After(outageEnd) {
		t.Fatalf("virtual clock at %s: the outage never ended", clock.Now())
	}
	if failures[500] == 0 || failures[429] == 0 {
		t.Fatalf("the outage served %v: want both 500s and 429s", failures)
	}
	// Redeliver everything (a replay after a restart would): nothing new.
	handleAll()

	posted := map[string]int{}
	for _, m := range srv.Messages() {
		for _, f := range findings {
			if strings.Contains(m.Blocks, "finding `"+f.ID+"`") {
				posted[f.ID]++
			}
		}
	}
	for _, f := range findings {
		want := 1
		if rejected[f.ID] {
			want = 0
		}
		if posted[f.ID] != want {
			t.Errorf("%s posted %d times, want %d", f.ID, posted[f.ID], want)
		}
	}
	recs := readDeadLetters(t, cfg.DeadLetter.Path)
	dl := map[string]int{}
	for _, rec := range recs {
		dl[rec.Finding.ID]++
		if rec.Reason != string(notify.ReasonRejected) || rec.Output != "slack" {
			t.Errorf("dead letter %s: reason %q output %q", rec.Finding.ID, rec.Reason, rec.Output)
		}
	}
	for id := range rejected {
		if dl[id] != 1 {
			t.Errorf("rejected %s is in the dead-letter file %d times, want 1", id, dl[id])
		}
	}
	if len(recs) != len(rejected) {
		t.Errorf("dead-letter file has %d records, want %d", len(recs), len(rejected))
	}
	if v := testutil.ToFloat64(r.m.sent.WithLabelValues("slack")); int(v) != n-len(rejected) {
		t.Errorf("sent = %v, want %d", v, n-len(rejected))
	}
	if testutil.ToFloat64(r.m.failed.WithLabelValues("slack", "throttled")) == 0 || testutil.ToFloat64(r.m.failed.WithLabelValues("slack", "server")) == 0 ||
		testutil.ToFloat64(r.m.retries.WithLabelValues("slack")) == 0 {
		t.Error("failure and retry metrics were not counted")
	}
	t.Logf("outage: %v failures over %s of virtual time", failures, clock.Now().Sub(start))
}

func TestSinkShapes(t *testing.T) {
	cfg := testConfig(t)
	cfg.DefaultOutputs = []string{"a"}
	cfg.EventOutputs = []string{"b"}
	outs := map[string]*recorder{"a": {}, "b": {}}
	r, _ := newTestRouter(t, cfg, notifytest.NewClock(time.Now()), outs)
	fs := []schema.Finding{finding("w1", schema.DetectorUnexpectedIP, schema.SeverityHigh, "u", "r"), finding("w2", schema.DetectorUnexpectedIP, schema.SeverityHigh, "u", "r")}
	if err := r.WriteFindings(context.Background(), fs); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteFindings(context.Background(), fs); err != nil { // a retried batch
		t.Fatal(err)
	}
	if got := strings.Join(outs["a"].ids(), ","); got != "w1,w2" {
		t.Errorf("delivered %s, want w1,w2 once each", got)
	}
	if err := r.WriteEvents(context.Background(), []schema.Event{{ID: "e1"}, {ID: "e2"}}); err != nil || len(outs["b"].events) != 2 {
		t.Errorf("WriteEvents: %v, %d events", err, len(outs["b"].events))
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Handle(context.Background(), fs[0]); !errors.Is(err, ErrClosed) {
		t.Errorf("Handle after Close = %v", err)
	}
}

// TestCloseStopsRetries: a delivery retrying against a dead peer ends
// promptly when the router closes, and is reported as not handed off.
func TestCloseStopsRetries(t *testing.T) {
	cfg := testConfig(t)
	cfg.DefaultOutputs = []string{"a"}
	cfg.Retry = notify.Backoff{Initial: 50 * time.Millisecond, Max: time.Second, Multiplier: 2, MaxElapsed: time.Hour, AttemptTimeout: time.Second}
	started := make(chan struct{}, 1)
	outs := map[string]*recorder{"a": {fail: func(notify.Alert) error {
		select {
		case started <- struct{}{}:
		default:
		}
		return &notify.StatusError{Code: 503}
	}}}
	r, _ := newTestRouter(t, cfg, notify.RealClock{}, outs)
	done := make(chan error, 1)
	go func() {
		done <- r.Handle(context.Background(), finding("x", schema.DetectorUnexpectedIP, schema.SeverityHigh, "u", "r"))
	}()
	<-started
	closed := make(chan error, 1)
	go func() { closed <- r.Close() }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrNotHandedOff) {
			t.Errorf("Handle during Close = %v, want ErrNotHandedOff", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Handle kept retrying after Close")
	}
	select {
	case err := <-closed:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
}

func TestReplayDeadLetters(t *testing.T) {
	cfg := testConfig(t)
	cfg.DefaultOutputs = []string{"a"}
	cfg.EventOutputs = []string{"a"}
	cfg.Retry.MaxAttempts = 2
	down := true
	outs := map[string]*recorder{"a": {fail: func(a notify.Alert) error {
		if down {
			return &notify.StatusError{Code: 400}
		}
		return nil
	}}}
	r, _ := newTestRouter(t, cfg, notifytest.NewClock(time.Now()), outs)
	ctx := context.Background()
	for _, id := range []string{"r1", "r2"} {
		if err := r.Handle(ctx, finding(id, schema.DetectorUnexpectedIP, schema.SeverityHigh, "u", "r")); err != nil {
			t.Fatal(err)
		}
	}
	moved := filepath.Join(t.TempDir(), "replay.jsonl")
	if err := os.Rename(cfg.DeadLetter.Path, moved); err != nil {
		t.Fatal(err)
	}
	// The live file was moved away while open; reopen it as an operator would (restart).
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r, _ = newTestRouter(t, cfg, notifytest.NewClock(time.Now()), outs)
	down = false
	st, err := r.Replay(ctx, moved)
	if err != nil {
		t.Fatal(err)
	}
	if st.Findings != 2 || st.Failed != 0 || strings.Join(outs["a"].ids(), ",") != "r1,r2" {
		t.Errorf("replay: %+v, delivered %v", st, outs["a"].ids())
	}
	// Replayed findings are now delivered: a redelivery does not post again.
	_ = r.Handle(ctx, finding("r1", schema.DetectorUnexpectedIP, schema.SeverityHigh, "u", "r"))
	if len(outs["a"].got()) != 2 {
		t.Error("a replayed finding posted again on redelivery")
	}
	bad := filepath.Join(t.TempDir(), "bad.jsonl")
	_ = os.WriteFile(bad, []byte("{\"output\":\"a\"}\nnot json\n"), 0o600)
	if _, err := r.Replay(ctx, bad); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("bad dead-letter file: %v, want an error naming line 2", err)
	}
}
