package lookup

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/aws/aws-sdk-go-v2/service/cloudtrail"

	"auditwatch/config/duration"
	"auditwatch/ingest"
	"auditwatch/ingest/source"
	"auditwatch/internal/secret"
)

// Targets of LookupEvents: the SDK sends the short form; the service also
// takes the fully qualified one.
var targets = map[string]bool{
	"CloudTrail_20131101.LookupEvents":                                    true,
	"com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.LookupEvents": true,
}

// fakeCloudTrail answers LookupEvents over the AWS JSON 1.1 protocol,
// newest event first, pageSize events per page with NextToken.
type fakeCloudTrail struct {
	mu       sync.Mutex
	events   []ctEvent
	pageSize int
	reqs     []lookupReq
	tokens   map[string]int
}

type ctEvent struct {
	id  string
	t   time.Time
	raw string
}

type lookupReq struct {
	at         time.Time
	start, end time.Time
	token      string
}

func epoch(v float64) time.Time {
	sec, frac := math.Modf(v)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC()
}

func (f *fakeCloudTrail) add(e ...ctEvent) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, e...)
}

func (f *fakeCloudTrail) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	fail := func(code int, typ, msg string) {
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"__type":%q,"message":%q}`, typ, msg)
	}
	if r.Method != http.MethodPost || !targets[r.Header.Get("X-Amz-Target")] ||
		!strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-amz-json-1.1") {
		fail(400, "UnknownOperationException", r.Header.Get("X-Amz-Target"))
		return
	}
	if !strings.Contains(r.Header.Get("Authorization"), "Credential=AKIDTEST/") {
		fail(403, "UnrecognizedClientException", "bad credentials")
		return
	}
	var in struct {
		StartTime, EndTime float64
		MaxResults         int
		NextToken          string
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		fail(400, "SerializationException", err.Error())
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	start, end := epoch(in.StartTime), epoch(in.EndTime)
	f.reqs = append(f.reqs, lookupReq{at: testClock.Now(), start: start, end: end, token: in.NextToken})
	if testClock.Now().Sub(start) > 90*24*time.Hour {
		fail(400, "InvalidTimeRangeException", "start time is more than 90 days ago")
		return
	}
	var match []ctEvent
	for _, e := range f.events {
		if !e.t.Before(start) && !e.t.After(end) {
			match = append(match, e)
		}
	}
	sort.Slice(match, func(i, j int) bool { return match[i].t.After(match[j].t) })
	from := 0
	if in.NextToken != "" {
		n, ok := f.tokens[in.NextToken]
		if !ok {
			fail(400, "InvalidNextTokenException", "unknown token")
			return
		}
		from = n
	}
	size := min(f.pageSize, in.MaxResults)
	to := min(from+size, len(match))
	out := map[string]any{}
	var evs []map[string]any
	for _, e := range match[from:to] {
		evs = append(evs, map[string]any{"EventId": e.id, "EventName": "GetSecretValue", "EventTime": float64(e.t.Unix()),
			"EventSource": "secretsmanager.amazonaws.com", "CloudTrailEvent": e.raw})
	}
	out["Events"] = evs
	if to < len(match) {
		tok := fmt.Sprintf("tok-%d-%d", len(f.reqs), to)
		f.tokens[tok] = to
		out["NextToken"] = tok
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	json.NewEncoder(w).Encode(out)
}

// sample returns n CloudTrail records from the test sample, rewritten to
// the given times and ids.
func sample(t *testing.T, times []time.Time, prefix string) []ctEvent {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "testdata", "cloudtrail-sample.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	var out []ctEvent
	for i := 0; i < len(times) && sc.Scan(); i++ {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatal(err)
		}
		id := fmt.Sprintf("%s-%04d-0000-0000-0000-000000000000", prefix, i)
		rec["eventID"] = id
		rec["eventTime"] = times[i].UTC().Format(time.RFC3339)
		b, _ := json.Marshal(rec)
		out = append(out, ctEvent{id: id, t: times[i].UTC(), raw: string(b)})
	}
	if len(out) != len(times) {
		t.Fatalf("sample has only %d records", len(out))
	}
	return out
}

// collector publishes into memory and saves positions at once.
type collector struct {
	mu sync.Mutex
	// limit, when positive, is how many event batches are taken; later
	// ones are refused.
	limit int
	taken int
	cp    *source.MemCheckpoints
	ids   map[string]int
}

func (c *collector) Publish(_ context.Context, b source.Batch) error {
	c.mu.Lock()
	if len(b.Events) > 0 {
		if c.limit > 0 && c.taken >= c.limit {
			c.mu.Unlock()
			return errors.New("downstream stopped")
		}
		c.taken++
	}
	for _, ev := range b.Events {
		c.ids[ev.ID]++
	}
	c.mu.Unlock()
	if b.Position != nil {
		c.cp.Save(b.Source, b.Position)
	}
	if b.Done != nil {
		b.Done(nil)
	}
	return nil
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.ids)
}

func newPoller(t *testing.T, url string, cp source.Checkpoints, rate float64, account string) (*Poller, *prometheus.Registry) {
	t.Helper()
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("TEST_AWS_KEY", "AKIDTEST")
	t.Setenv("TEST_AWS_SECRET", "not-a-real-secret")
	cfg := Config{Account: account, Rate: rate, PollInterval: duration.Duration(200 * time.Millisecond), Lookback: duration.Duration(2 * time.Hour), Delay: duration.Duration(time.Second), BatchSize: 7}
	cfg.AWS.Region = "eu-west-1"
	cfg.AWS.Endpoint = url
	cfg.AWS.AccessKeyID = secret.Secret{Env: "TEST_AWS_KEY"}
	cfg.AWS.SecretAccessKey = secret.Secret{Env: "TEST_AWS_SECRET"}
	reg := prometheus.NewRegistry()
	awsCfg, err := cfg.AWS.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	api := cloudtrail.NewFromConfig(awsCfg, func(o *cloudtrail.Options) {
		o.HTTPClient = &http.Client{Transport: sent}
		// the SDK's own retries (a reused connection the test server
		// closed) would bypass the bucket; the poller retries through it
		o.RetryMaxAttempts = 1
	})
	p, err := NewWithClient(cfg, "ct-lookup", source.AuditParser(ingest.DefaultOptions()), cp, api, slog.New(slog.NewTextHandler(testWriter{t}, nil)), source.NewMetrics(reg), reg)
	if err != nil {
		t.Fatal(err)
	}
	p.clock = testClock
	return p, reg
}

// stamps records when each request leaves the client.
type stamps struct {
	mu sync.Mutex
	at []time.Time
}

func (s *stamps) RoundTrip(r *http.Request) (*http.Response, error) {
	s.mu.Lock()
	s.at = append(s.at, testClock.Now())
	s.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

var sent = &stamps{}

// fakeClock is virtual time: Sleep moves it forward at once (yielding the
// processor for a moment so a caught-up poller does not spin), so rate
// and window assertions read exact virtual times, never the wall clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
	runtime.Gosched()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Millisecond):
		return nil
	}
}

// testClock starts at a fixed instant; the fake CloudTrail and the events
// are placed relative to it.
var testClock = &fakeClock{now: time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)}

func runUntil(t *testing.T, p *Poller, pub source.Publisher, until func() bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, pub) }()
	deadline := time.Now().Add(30 * time.Second)
	for !until() {
		if time.Now().After(deadline) {
			cancel()
			<-done
			t.Fatal("timed out")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestLookupEvents pages through a window at no more than 2 requests/s
// and publishes each event once. The first run stops after its first
// batch, whose position ends inside a second (three events share each
// second): the resumed run repeats none of that batch's events, including
// the ones at the checkpoint's second, and reads all the others.
func TestLookupEvents(t *testing.T) {
	sent.mu.Lock()
	sent.at = nil
	sent.mu.Unlock()
	fake := &fakeCloudTrail{pageSize: 5, tokens: map[string]int{}}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	base := testClock.Now().Add(-30 * time.Minute).Truncate(time.Second)
	var times []time.Time
	for i := range 23 {
		times = append(times, base.Add(time.Duration(i/3)*time.Minute)) // three events per second
	}
	evs := sample(t, times, "aaaaaaaa")
	fake.add(evs...)

	cp := source.NewMemCheckpoints(nil)
	col := &collector{cp: cp, ids: map[string]int{}, limit: 1}
	p, _ := newPoller(t, srv.URL, cp, 2, "111111111111")
	runUntil(t, p, col, func() bool { return col.count() == 7 })
	var pos Position
	raw, _ := cp.Load("ct-lookup")
	if err := source.DecodePosition(raw, &pos); err != nil {
		t.Fatal(err)
	}
	if !pos.Time.Equal(times[6]) || len(pos.IDs) != 1 {
		t.Fatalf("checkpoint after the first batch = %+v, want %v with one id", pos, times[6])
	}
	fake.mu.Lock()
	reqs := append([]lookupReq(nil), fake.reqs...)
	fake.mu.Unlock()

	col.mu.Lock()
	col.limit = 0
	col.mu.Unlock()
	p2, _ := newPoller(t, srv.URL, cp, 2, "111111111111")
	runUntil(t, p2, col, func() bool { return col.count() == len(evs) })
	col.mu.Lock()
	for _, e := range evs {
		if col.ids[e.id] != 1 {
			t.Errorf("event %s published %d times, want 1", e.id, col.ids[e.id])
		}
	}
	col.mu.Unlock()

	fake.mu.Lock()
	all := append([]lookupReq(nil), fake.reqs...)
	fake.mu.Unlock()
	if !all[len(reqs)].start.Equal(times[6]) {
		t.Errorf("resumed from %v, want the checkpoint's second %v", all[len(reqs)].start, times[6])
	}
	if len(all) < 10 {
		t.Fatalf("%d requests, want at least 10 (5 pages per window)", len(all))
	}
	// At most 2 requests/s as they leave the client, in the poller's
	// (virtual) time: releases exactly 500 ms apart or more.
	sent.mu.Lock()
	at := append([]time.Time(nil), sent.at...)
	sent.mu.Unlock()
	if len(at) < len(all) {
		t.Fatalf("%d requests sent, server saw %d", len(at), len(all))
	}
	for i := 1; i < len(at); i++ {
		if gap := at[i].Sub(at[i-1]); gap < 500*time.Millisecond {
			t.Fatalf("requests %d and %d sent %v apart: faster than 2/s", i-1, i, gap)
		}
	}
	paged := 0
	for _, r := range all {
		if r.token != "" {
			paged++
		}
	}
	if paged < 7 {
		t.Errorf("%d requests with NextToken, want >= 7 (4 + 3 pages followed)", paged)
	}
	// Each run may count one request that its stop cut short before the
	// server saw it.
	if got := testutil.ToFloat64(p.requests) + testutil.ToFloat64(p2.requests); int(got) < len(all) || int(got) > len(all)+2 {
		t.Errorf("requests metric %v, server saw %d", got, len(all))
	}
}

// TestLookupWindow: a checkpoint older than 90 days is moved inside the
// window (counted), never asked for.
func TestLookupWindow(t *testing.T) {
	fake := &fakeCloudTrail{pageSize: 50, tokens: map[string]int{}}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	fake.add(sample(t, []time.Time{testClock.Now().Add(-Window + 20*time.Minute).Truncate(time.Second)}, "cccccccc")...)
	old, _ := json.Marshal(Position{Time: testClock.Now().Add(-120 * 24 * time.Hour).UTC()})
	cp := source.NewMemCheckpoints(map[string][]byte{"ct-lookup": old})
	col := &collector{cp: cp, ids: map[string]int{}}
	p, _ := newPoller(t, srv.URL, cp, 2, "222222222222")
	runUntil(t, p, col, func() bool { return col.count() == 1 })
	fake.mu.Lock()
	defer fake.mu.Unlock()
	for _, r := range fake.reqs {
		if r.at.Sub(r.start) > Window {
			t.Errorf("asked from %v, beyond 90 days", r.start)
		}
	}
	if got := testutil.ToFloat64(p.clamped); got < 1 {
		t.Errorf("clamped = %v, want >= 1", got)
	}
}

// TestBucketShared: pollers of one account and region share one bucket.
func TestBucketShared(t *testing.T) {
	a := sharedBucket("333333333333/eu-west-1", 2)
	b := sharedBucket("333333333333/eu-west-1", 1.5)
	if a != b || a.rate != 1.5 {
		t.Fatalf("buckets not shared or rate %v, want 1.5", a.rate)
	}
	if c := sharedBucket("333333333333/us-east-1", 2); c == a {
		t.Fatal("regions share a bucket")
	}
	clock := &fakeClock{now: time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)}
	start := clock.Now()
	for range 4 {
		if err := a.wait(context.Background(), clock); err != nil {
			t.Fatal(err)
		}
	}
	if d := clock.Now().Sub(start); d < 2*time.Second-time.Millisecond {
		t.Errorf("4 waits at 1.5/s took %v, want >= 2s", d)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}
