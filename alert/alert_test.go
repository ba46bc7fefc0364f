package alert

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"auditwatch/alert/deadletter"
	"auditwatch/alert/notify"
	"auditwatch/alert/notify/notifytest"
	"auditwatch/alert/outbox"
	"auditwatch/alert/slack"
	"auditwatch/alert/slack/slacktest"
	"auditwatch/alert/webhook"
	"auditwatch/config/duration"
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
	dir := t.TempDir()
	cfg.DeadLetter.Path = filepath.Join(dir, "dead.jsonl")
	cfg.OutboxPath = filepath.Join(dir, "outbox.db")
	for _, n := range []string{"a", "b", "c"} {
		cfg.Outputs = append(cfg.Outputs, OutputConfig{Name: n, Type: TypeWebhook, Webhook: &webhook.Config{URL: "http://127.0.0.1:1/"}})
	}
	cfg.Retry.Initial = duration.Duration(time.Millisecond)
	cfg.Retry.Max = duration.Duration(10 * time.Millisecond)
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

// handle writes fs to the router and waits until every output's queue is
// empty (each alert delivered or dead-lettered).
func handle(t *testing.T, r *Router, fs ...schema.Finding) error {
	t.Helper()
	if err := r.WriteFindings(context.Background(), fs); err != nil {
		return err
	}
	waitDrained(t, r)
	return nil
}

func waitDrained(t *testing.T, r *Router) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		busy := false
		for _, s := range r.Status() {
			busy = busy || s.Backlog > 0
		}
		if !busy {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("outputs did not drain their queues: %+v", r.Status())
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
	for _, f := range []schema.Finding{
		finding("priv-high", schema.DetectorPrivilegedUse, schema.SeverityHigh, "u1", "sys/policy/x"),                                         // a, b
		finding("priv-low", schema.DetectorPrivilegedUse, schema.SeverityLow, "u1", "sys/policy/x"),                                           // default b
		finding("prod", schema.DetectorFirstTimeAccess, schema.SeverityMedium, "u2", "secret/data/prod/db"),                                   // a
		finding("bg-low", schema.DetectorFirstTimeAccess, schema.SeverityMedium, "arn:aws:iam::1:role/break-glass-ops", "secret/data/prod/x"), // c (below min) + a
		finding("bg-high", schema.DetectorUnexpectedIP, schema.SeverityCritical, "arn:aws:iam::1:role/break-glass", "other"),                  // c only
	} {
		if err := handle(t, r, f); err != nil {
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
	_ = handle(t, r, finding("s1", schema.DetectorAccessVolumeSpike, schema.SeverityHigh, "role/nightly-backup", "x"))
	_ = handle(t, r, finding("n1", schema.DetectorAccessVolumeSpike, schema.SeverityHigh, "role/app", "x"))
	_ = handle(t, r, finding("n2", schema.DetectorFirstTimeAccess, schema.SeverityHigh, "role/nightly-backup", "x"))
	clock.Advance(time.Hour) // the silence expires
	_ = handle(t, r, finding("s2", schema.DetectorAccessVolumeSpike, schema.SeverityHigh, "role/nightly-backup", "x"))
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
	cfg.GroupWindow = duration.Duration(10 * time.Minute)
	outs := map[string]*recorder{"a": {}}
	r, _ := newTestRouter(t, cfg, clock, outs)
	mk := func(id string, rev, count int) schema.Finding {
		f := finding(id, schema.DetectorAuthFailureSpike, schema.SeverityHigh, "u", "auth/userpass/login/u")
		f.DedupeKey, f.Revision, f.Count = "burst-1", rev, count
		return f
	}
	_ = handle(t, r, mk("f0", 0, 10))
	clock.Advance(time.Minute)
	_ = handle(t, r, mk("f1", 1, 15))
	_ = handle(t, r, mk("f1", 1, 15)) // redelivery: neither posted nor counted again
	clock.Advance(time.Minute)
	_ = handle(t, r, mk("f2", 2, 40))
	clock.Advance(10 * time.Minute) // window over: a new group
	_ = handle(t, r, mk("f3", 3, 5))
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
		_ = handle(t, r, finding(fmt.Sprint("g", i), schema.DetectorUnexpectedIP, schema.SeverityLow, "u", "r"))
	}
	r.groups.mu.Lock()
	n := len(r.groups.groups)
	r.groups.mu.Unlock()
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
	for _, id := range []string{"ok", "reject", "down"} {
		if err := handle(t, r, finding(id, schema.DetectorUnexpectedIP, schema.SeverityHigh, "u", "r")); err != nil {
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
		_ = handle(t, r, finding(id, schema.DetectorUnexpectedIP, schema.SeverityHigh, "u", "r"))
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

// TestSlowOutputDelaysOnlyItself: one output hangs on every attempt
// (accepts, never answers); the other receives every finding at once, and
// the hung one's backlog and state are visible.
func TestSlowOutputDelaysOnlyItself(t *testing.T) {
	cfg := testConfig(t)
	cfg.DefaultOutputs = []string{"a", "b"}
	cfg.Retry.AttemptTimeout = duration.Duration(time.Hour)
	release := make(chan struct{})
	hung := &blocking{release: release}
	fast := &recorder{}
	reg := prometheus.NewRegistry()
	r, err := New(cfg, nil, reg, WithOutput("a", hung), WithOutput("b", fast), WithOutput("c", &recorder{}))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var fs []schema.Finding
	for i := range 50 {
		fs = append(fs, finding(fmt.Sprint("s", i), schema.DetectorUnexpectedIP, schema.SeverityHigh, "u", "r"))
	}
	done := make(chan error, 1)
	go func() { done <- r.WriteFindings(context.Background(), fs) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WriteFindings waited for a hung output")
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(fast.got()) < 50 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := len(fast.got()); n != 50 {
		t.Fatalf("the healthy output got %d of 50 findings while the other hung", n)
	}
	var st OutputStatus
	for _, s := range r.Status() {
		if s.Output == "a" {
			st = s
		}
	}
	if st.Backlog != 50 || st.State != StateDelivering {
		t.Errorf("hung output status = %+v, want backlog 50, delivering", st)
	}
	if v := testutil.ToFloat64(prometheusGauge(t, reg, "auditwatch_alert_outbox_backlog", "a")); v != 50 {
		t.Errorf("backlog metric of the hung output = %v, want 50", v)
	}
	close(release)
	waitDrained(t, r)
	if n := hung.count(); n != 50 {
		t.Errorf("after recovery the hung output got %d of 50", n)
	}
}

// blocking is an output whose attempts hang until release is closed.
type blocking struct {
	release chan struct{}
	mu      sync.Mutex
	n       int
}

func (b *blocking) Notify(ctx context.Context, _ notify.Alert) error {
	select {
	case <-b.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	b.mu.Lock()
	b.n++
	b.mu.Unlock()
	return nil
}

func (b *blocking) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n
}

// prometheusGauge finds the gauge name{output=output} in reg.
func prometheusGauge(t *testing.T, reg *prometheus.Registry, name, output string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "output" && l.GetValue() == output {
					g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "x"})
					g.Set(m.GetGauge().GetValue())
					return g
				}
			}
		}
	}
	t.Fatalf("no %s{output=%q}", name, output)
	return nil
}

// TestOutboxWriteFailureWaitsAndResumes: while the outbox cannot be
// written (a full disk), WriteFindings neither returns success nor loses
// the batch; it returns an error when its context ends (the caller keeps
// its checkpoint) and succeeds by itself once writing works again.
func TestOutboxWriteFailureWaitsAndResumes(t *testing.T) {
	cfg := testConfig(t)
	cfg.DefaultOutputs = []string{"a"}
	var mu sync.Mutex
	full := true
	failed := make(chan struct{}, 1) // a write failed on the full disk
	hook := func() error {
		mu.Lock()
		defer mu.Unlock()
		if full {
			select {
			case failed <- struct{}{}:
			default:
			}
			return syscall.ENOSPC
		}
		return nil
	}
	// attempted waits until a write has failed on the full disk since
	// the last call (a guard of 10 s, not a timing assertion).
	attempted := func() {
		t.Helper()
		select {
		case <-failed:
		case <-time.After(10 * time.Second):
			t.Fatal("no outbox write attempted on the full disk")
		}
	}
	var logs strings.Builder
	var lmu sync.Mutex
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &lmu}, nil))
	a := &recorder{}
	r, err := New(cfg, logger, prometheus.NewRegistry(), WithOutput("a", a), WithOutput("b", &recorder{}), WithOutput("c", &recorder{}),
		WithOutboxOptions(outbox.WithCommitHook(hook)))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	f := finding("full-1", schema.DetectorUnexpectedIP, schema.SeverityHigh, "u", "r")
	// the caller's context ends once a write has failed and is retried
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		attempted()
		attempted()
		cancel()
	}()
	if err := r.WriteFindings(ctx, []schema.Finding{f}); err == nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("WriteFindings on a full disk = %v, want an error once the context ends", err)
	}
	if testutil.ToFloat64(r.m.outboxFull) != 1 {
		t.Error("outbox write failure not visible in metrics")
	}
	lmu.Lock()
	l := logs.String()
	lmu.Unlock()
	if strings.Count(l, "alert outbox cannot be written") != 1 || !strings.Contains(l, "free=") || !strings.Contains(l, cfg.OutboxPath) {
		t.Errorf("want one log line naming the path and the free space, got:\n%s", l)
	}
	done := make(chan error, 1)
	select { // a failure signalled after the cancel
	case <-failed:
	default:
	}
	go func() { done <- r.WriteFindings(context.Background(), []schema.Finding{f}) }()
	attempted() // this call is waiting on the full disk too
	mu.Lock()
	full = false
	mu.Unlock()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WriteFindings did not resume after the disk had room again")
	}
	waitDrained(t, r)
	if ids := a.ids(); len(ids) != 1 || ids[0] != "full-1" {
		t.Errorf("delivered %v, want full-1 once", ids)
	}
}

type lockedWriter struct {
	w  *strings.Builder
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestHandleEvents(t *testing.T) {
	cfg := testConfig(t)
	cfg.EventOutputs = []string{"a", "b"}
	outs := map[string]*recorder{"a": {}, "b": {}}
	r, _ := newTestRouter(t, cfg, notifytest.NewClock(time.Now()), outs)
	h := notifytest.HostileEvent()
	if err := r.WriteEvents(context.Background(), []schema.Event{h}); err != nil {
		t.Fatal(err)
	}
	waitDrained(t, r)
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
	if err := handle(t, r, notifytest.HostileFinding()); err != nil {
		t.Fatal(err)
	}
	f := outs["a"].got()[0].Finding
	if len(f.Resource) > cfg.MaxFieldBytes || len(f.Attributes["path"]) > cfg.MaxFieldBytes || !strings.HasSuffix(f.Resource, "…") {
		t.Errorf("10 KB fields reached the output unbounded: %d bytes", len(f.Resource))
	}
	if err := handle(t, r, schema.Finding{}); err != nil || testutil.ToFloat64(r.m.suppressed.WithLabelValues("invalid")) != 1 {
		t.Errorf("finding without id: %v; want it dropped and counted", err)
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
	if err := handle(t, r, f); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r = open()
	defer r.Close()
	if err := handle(t, r, f); err != nil { // redelivered after restart
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
	_ = handle(t, r, up)
	_ = handle(t, r, up2)
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
				if err := r.WriteFindings(context.Background(), []schema.Finding{f}); err != nil {
					t.Errorf("WriteFindings(%s): %v", f.ID, err)
				}
			}()
		}
		wg.Wait()
		waitDrained(t, r)
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
	waitDrained(t, r)
	if got := strings.Join(outs["a"].ids(), ","); got != "w1,w2" {
		t.Errorf("delivered %s, want w1,w2 once each", got)
	}
	err := r.WriteEvents(context.Background(), []schema.Event{{ID: "e1"}, {ID: "e2"}})
	waitDrained(t, r)
	if err != nil || len(outs["b"].events) != 2 {
		t.Errorf("WriteEvents: %v, %d events", err, len(outs["b"].events))
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteFindings(context.Background(), fs[:1]); !errors.Is(err, ErrClosed) {
		t.Errorf("Handle after Close = %v", err)
	}
}

// TestCloseStopsRetries: a delivery retrying against a dead peer ends
// promptly when the router closes; the alert stays queued in the outbox
// and is delivered after a restart.
func TestCloseStopsRetries(t *testing.T) {
	cfg := testConfig(t)
	cfg.DefaultOutputs = []string{"a"}
	cfg.Retry = notify.Backoff{Initial: duration.Duration(50 * time.Millisecond), Max: duration.Duration(time.Second), Multiplier: 2, MaxElapsed: duration.Duration(time.Hour), AttemptTimeout: duration.Duration(time.Second)}
	started := make(chan struct{}, 1)
	var down atomic.Bool
	down.Store(true)
	outs := map[string]*recorder{"a": {fail: func(notify.Alert) error {
		if !down.Load() {
			return nil
		}
		select {
		case started <- struct{}{}:
		default:
		}
		return &notify.StatusError{Code: 503}
	}}, "b": {}, "c": {}}
	r, _ := newTestRouter(t, cfg, notify.RealClock{}, outs)
	if err := r.WriteFindings(context.Background(), []schema.Finding{finding("x", schema.DetectorUnexpectedIP, schema.SeverityHigh, "u", "r")}); err != nil {
		t.Fatal(err)
	}
	<-started
	closed := make(chan error, 1)
	go func() { closed <- r.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not stop the retrying worker")
	}
	if _, err := os.Stat(cfg.DeadLetter.Path); err == nil && len(readDeadLetters(t, cfg.DeadLetter.Path)) != 0 {
		t.Error("an alert interrupted by Close was dead-lettered")
	}
	down.Store(false)
	r, _ = newTestRouter(t, cfg, notify.RealClock{}, outs)
	waitDrained(t, r)
	if ids := outs["a"].ids(); len(ids) != 1 || ids[0] != "x" {
		t.Errorf("after a restart the queued alert was delivered as %v, want [x]", ids)
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
		if err := handle(t, r, finding(id, schema.DetectorUnexpectedIP, schema.SeverityHigh, "u", "r")); err != nil {
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
	st, err := r.Replay(ctx, moved, "")
	if err != nil {
		t.Fatal(err)
	}
	if st.Findings != 2 || st.Failed != 0 || strings.Join(outs["a"].ids(), ",") != "r1,r2" {
		t.Errorf("replay: %+v, delivered %v", st, outs["a"].ids())
	}
	// Replayed findings are now delivered: a redelivery does not post again.
	_ = handle(t, r, finding("r1", schema.DetectorUnexpectedIP, schema.SeverityHigh, "u", "r"))
	if len(outs["a"].got()) != 2 {
		t.Error("a replayed finding posted again on redelivery")
	}
	bad := filepath.Join(t.TempDir(), "bad.jsonl")
	_ = os.WriteFile(bad, []byte("{\"output\":\"a\"}\nnot json\n"), 0o600)
	if _, err := r.Replay(ctx, bad, ""); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("bad dead-letter file: %v, want an error naming line 2", err)
	}
}

// TestReplayEventsWithoutDeadLetterFile: an event record that fails again
// on a router without a dead-letter file is reported as an error naming
// its line (it used to panic).
func TestReplayEventsWithoutDeadLetterFile(t *testing.T) {
	cfg := testConfig(t)
	cfg.EventOutputs = []string{"a"}
	cfg.Retry.MaxAttempts = 1
	outs := map[string]*recorder{"a": {}}
	r, _ := newTestRouter(t, cfg, notifytest.NewClock(time.Now()), outs)
	r.outputs["a"].ev = failingEvents{}
	path := filepath.Join(t.TempDir(), "dl.jsonl")
	dl, err := deadletter.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := dl.Write(deadletter.Record{Output: "a", Reason: "rejected", Events: []schema.Event{{ID: "e1"}}}); err != nil {
		t.Fatal(err)
	}
	dl.Close()
	r.dlq.Close()
	r.dlq = nil
	st, err := r.Replay(context.Background(), path, "")
	if err == nil || !strings.Contains(err.Error(), "line 1") || !strings.Contains(err.Error(), "no dead-letter file") || st.Failed != 1 {
		t.Errorf("Replay = %+v, %v; want an error naming line 1", st, err)
	}
}

type failingEvents struct{}

func (failingEvents) SendEvents(context.Context, []schema.Event) error {
	return &notify.StatusError{Code: 400}
}

// TestGroupingByIncident: findings of different detectors that the
// correlation stage put in one incident are one group (one thread); without
// an incident id they group by dedupe key.
func TestGroupingByIncident(t *testing.T) {
	clock := notifytest.NewClock(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	cfg := testConfig(t)
	cfg.DefaultOutputs = []string{"a"}
	outs := map[string]*recorder{"a": {}}
	r, _ := newTestRouter(t, cfg, clock, outs)
	f1 := finding("i1", schema.DetectorUnexpectedIP, schema.SeverityHigh, "u", "r")
	f2 := finding("i2", schema.DetectorFirstTimeAccess, schema.SeverityHigh, "u", "r")
	f3 := finding("i3", schema.DetectorAccessVolumeSpike, schema.SeverityHigh, "u", "r")
	f1.IncidentID, f2.IncidentID = "inc-7", "inc-7"
	if err := handle(t, r, f1, f2, f3); err != nil {
		t.Fatal(err)
	}
	// Delivered by finding: a new group's first alert (i3) may go ahead
	// of another group's update (i2).
	byID := map[string]notify.Alert{}
	for _, a := range outs["a"].got() {
		byID[a.Finding.ID] = a
	}
	if len(byID) != 3 {
		t.Fatalf("delivered %d", len(byID))
	}
	got := []notify.Alert{byID["i1"], byID["i2"], byID["i3"]}
	if got[0].ThreadKey() != got[1].ThreadKey() || got[1].Update != true || got[1].Repeat != 2 {
		t.Errorf("findings of one incident: keys %q %q, second update=%v repeat=%d", got[0].ThreadKey(), got[1].ThreadKey(), got[1].Update, got[1].Repeat)
	}
	if got[2].ThreadKey() != f3.DedupeKey || got[2].Update {
		t.Errorf("finding without incident: key %q update %v, want its dedupe key, new", got[2].ThreadKey(), got[2].Update)
	}
}

// TestHungEventOutputDoesNotBlock: raw events for a SIEM whose every
// attempt hangs are queued and WriteEvents returns at once; the findings
// of another output flow meanwhile; the events arrive after recovery.
func TestHungEventOutputDoesNotBlock(t *testing.T) {
	cfg := testConfig(t)
	cfg.DefaultOutputs = []string{"b"}
	cfg.EventOutputs = []string{"a"}
	cfg.Retry.AttemptTimeout = duration.Duration(time.Hour)
	release := make(chan struct{})
	siem := &hungEvents{release: release}
	fast := &recorder{}
	r, err := New(cfg, nil, prometheus.NewRegistry(), WithOutput("a", siem), WithOutput("b", fast), WithOutput("c", &recorder{}))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	done := make(chan error, 1)
	go func() {
		for i := range 20 {
			if err := r.WriteEvents(context.Background(), []schema.Event{{ID: fmt.Sprint("e", i)}}); err != nil {
				done <- err
				return
			}
		}
		done <- r.WriteFindings(context.Background(), []schema.Finding{finding("f", schema.DetectorUnexpectedIP, schema.SeverityHigh, "u", "r")})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WriteEvents waited for a hung SIEM")
	}
	for deadline := time.Now().Add(10 * time.Second); len(fast.got()) == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if len(fast.got()) != 1 {
		t.Fatal("a finding for another output waited for the hung SIEM")
	}
	close(release)
	waitDrained(t, r)
	if n := siem.count(); n != 20 {
		t.Errorf("after recovery the SIEM got %d of 20 events", n)
	}
}

type hungEvents struct {
	recorder
	release chan struct{}
	n       atomic.Int64
}

func (h *hungEvents) SendEvents(ctx context.Context, evs []schema.Event) error {
	select {
	case <-h.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	h.n.Add(int64(len(evs)))
	return nil
}

func (h *hungEvents) count() int { return int(h.n.Load()) }

// incidentFinding is revision rev of finding id in incident key.
func incidentFinding(id, key string, rev int) schema.Finding {
	f := finding(id, schema.DetectorAuthFailureSpike, schema.SeverityHigh, "u", "r")
	f.DedupeKey, f.Revision = key, rev
	return f
}

// queueBehindHeld writes incident A's first alert a-0, waits until the
// output holds it (inFlight closes), queues A's updates a-1…a-4, B's
// first alert and update and a-5 behind it, releases the output (closes
// hold) and waits until every queue is drained. It returns every finding
// written.
func queueBehindHeld(t *testing.T, r *Router, inFlight, hold chan struct{}) []schema.Finding {
	t.Helper()
	ctx := context.Background()
	all := []schema.Finding{incidentFinding("a-0", "A", 0)}
	if err := r.WriteFindings(ctx, all); err != nil {
		t.Fatal(err)
	}
	select {
	case <-inFlight:
	case <-time.After(10 * time.Second): // a guard only
		t.Fatal("a-0 never reached the output")
	}
	var later []schema.Finding
	for i := 1; i <= 4; i++ {
		later = append(later, incidentFinding(fmt.Sprintf("a-%d", i), "A", i))
	}
	later = append(later, incidentFinding("b-0", "B", 0), incidentFinding("b-1", "B", 1), incidentFinding("a-5", "A", 5))
	if err := r.WriteFindings(ctx, later); err != nil {
		t.Fatal(err)
	}
	close(hold)
	waitDrained(t, r)
	return append(all, later...)
}

// TestNewIncidentGoesAheadOfUpdates: while an output is busy, a new
// incident's first alert queued behind another incident's updates is
// delivered before them; each incident's updates keep their order and
// follow their first alert.
func TestNewIncidentGoesAheadOfUpdates(t *testing.T) {
	cfg := testConfig(t)
	cfg.DefaultOutputs = []string{"a"}
	hold := make(chan struct{})
	inFlight := make(chan struct{})
	var once sync.Once
	a := &recorder{fail: func(al notify.Alert) error {
		if al.Finding.ID == "a-0" {
			once.Do(func() {
				close(inFlight)
				<-hold
			})
		}
		return nil
	}}
	r, _ := newTestRouter(t, cfg, notify.RealClock{}, map[string]*recorder{"a": a, "b": {}, "c": {}})
	queueBehindHeld(t, r, inFlight, hold)
	got := strings.Join(a.ids(), " ")
	if want := "a-0 b-0 a-1 a-2 a-3 a-4 b-1 a-5"; got != want {
		t.Errorf("delivery order %q, want %q (B's first alert ahead of A's updates)", got, want)
	}
}

// TestConcurrentWritesQueueFirstAlertFirst: the alert stage writes the
// findings of each findings-topic partition concurrently, and one
// incident's findings (different dedupe keys) come from several
// partitions. Whatever the interleaving, an incident's first alert is
// queued ahead of its updates: queued after one, the update would be
// delivered first as a top-level Slack message and the first alert would
// start a second thread of the incident.
func TestConcurrentWritesQueueFirstAlertFirst(t *testing.T) {
	cfg := testConfig(t)
	cfg.DefaultOutputs = []string{"a"}
	r, err := New(cfg, nil, prometheus.NewRegistry(), WithoutDelivery(),
		WithOutput("a", &recorder{}), WithOutput("b", &recorder{}), WithOutput("c", &recorder{}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	const rounds, writers, perBatch = 30, 4, 40
	for round := range rounds {
		start := make(chan struct{})
		errs := make(chan error, writers)
		for w := range writers {
			fs := make([]schema.Finding, perBatch)
			for i := range fs {
				fs[i] = finding(fmt.Sprintf("r%d-w%d-%d", round, w, i), schema.DetectorFirstTimeAccess, schema.SeverityMedium, "u", "r")
				fs[i].IncidentID = fmt.Sprintf("inc-%d", round)
			}
			go func() {
				<-start
				errs <- r.WriteFindings(context.Background(), fs)
			}()
		}
		close(start)
		for range writers {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
	}
	es, err := r.box.Peek("a", rounds*writers*perBatch+1)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != rounds*writers*perBatch {
		t.Fatalf("queued %d alerts, want %d", len(es), rounds*writers*perBatch)
	}
	seen := map[string]int{}
	for i, e := range es {
		key := e.Alert.ThreadKey()
		seen[key]++
		if first := seen[key] == 1; e.Alert.Update == first {
			t.Fatalf("queue position %d: %s (group %s, repeat %d) update=%v, but it is the group's alert number %d in the queue",
				i, e.Alert.Finding.ID, key, e.Alert.Repeat, e.Alert.Update, seen[key])
		}
		if e.Alert.Repeat != seen[key] {
			t.Fatalf("queue position %d: %s repeat %d, queued as the group's alert number %d", i, e.Alert.Finding.ID, e.Alert.Repeat, seen[key])
		}
	}
}

// batchRecorder is an output that takes several updates of one incident
// in one call (as Slack bot mode does), recording each call.
type batchRecorder struct {
	recorder
	calls [][]string
}

func (b *batchRecorder) MaxBatch() int { return 10 }

func (b *batchRecorder) Notify(ctx context.Context, a notify.Alert) error {
	if err := b.recorder.Notify(ctx, a); err != nil {
		return err
	}
	b.mu.Lock()
	b.calls = append(b.calls, []string{a.Finding.ID})
	b.mu.Unlock()
	return nil
}

func (b *batchRecorder) NotifyBatch(_ context.Context, as []notify.Alert) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var ids []string
	for _, a := range as {
		b.alerts = append(b.alerts, a)
		ids = append(ids, a.Finding.ID)
	}
	b.calls = append(b.calls, ids)
	return nil
}

// batchRouterHeldAtA0 is a router whose output "a" batches and holds the
// delivery of finding a-0 (inFlight closed once it is held) until hold is
// closed.
func batchRouterHeldAtA0(t *testing.T) (*Router, *batchRecorder, chan struct{}, chan struct{}) {
	t.Helper()
	cfg := testConfig(t)
	cfg.DefaultOutputs = []string{"a"}
	hold, inFlight := make(chan struct{}), make(chan struct{})
	var once sync.Once
	a := &batchRecorder{}
	a.fail = func(al notify.Alert) error {
		if al.Finding.ID == "a-0" {
			once.Do(func() {
				close(inFlight)
				<-hold
			})
		}
		return nil
	}
	r, err := New(cfg, nil, prometheus.NewRegistry(), WithOutput("a", a), WithOutput("b", &recorder{}), WithOutput("c", &recorder{}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r, a, inFlight, hold
}

// TestQueuedUpdatesOfOneIncidentShareAMessage: while an output is busy,
// an incident's updates queue up; an output that batches (Slack bot mode)
// gets them in one call — a new incident's first alert still goes first —
// and each revision is delivered once and recorded in the ledger, so a
// replay of the same findings delivers nothing.
func TestQueuedUpdatesOfOneIncidentShareAMessage(t *testing.T) {
	r, a, inFlight, hold := batchRouterHeldAtA0(t)
	all := queueBehindHeld(t, r, inFlight, hold)
	a.mu.Lock()
	calls := fmt.Sprint(a.calls)
	a.mu.Unlock()
	if want := "[[a-0] [b-0] [a-1 a-2 a-3 a-4 a-5] [b-1]]"; calls != want {
		t.Errorf("calls %s, want %s (A's queued updates in one message, B's first alert ahead)", calls, want)
	}
	// A replay of every finding: the ledger has each revision.
	if err := r.WriteFindings(context.Background(), all); err != nil {
		t.Fatal(err)
	}
	waitDrained(t, r)
	if n := len(a.got()); n != 8 {
		t.Errorf("%d deliveries after the replay, want the 8 revisions once each", n)
	}
}

// TestBatchPostsARevisionQueuedTwiceOnce: the outbox is written at least
// once (after a restart, findings not yet checkpointed are written again),
// so one revision can be queued twice behind a busy output; a batch that
// picks both copies delivers the revision once and acknowledges both.
func TestBatchPostsARevisionQueuedTwiceOnce(t *testing.T) {
	r, a, inFlight, hold := batchRouterHeldAtA0(t)
	ctx := context.Background()
	if err := r.WriteFindings(ctx, []schema.Finding{incidentFinding("a-0", "A", 0)}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-inFlight:
	case <-time.After(10 * time.Second): // a guard only
		t.Fatal("a-0 never reached the output")
	}
	later := []schema.Finding{incidentFinding("a-1", "A", 1), incidentFinding("a-2", "A", 2)}
	for range 2 {
		if err := r.WriteFindings(ctx, later); err != nil {
			t.Fatal(err)
		}
	}
	close(hold)
	waitDrained(t, r)
	a.mu.Lock()
	calls := fmt.Sprint(a.calls)
	a.mu.Unlock()
	if want := "[[a-0] [a-1 a-2]]"; calls != want {
		t.Errorf("calls %s, want %s (each queued revision once, in one message)", calls, want)
	}
	if got := testutil.ToFloat64(r.m.suppressed.WithLabelValues("duplicate")); got != 2 {
		t.Errorf("suppressed duplicates %v, want 2 (the second copies)", got)
	}
}
