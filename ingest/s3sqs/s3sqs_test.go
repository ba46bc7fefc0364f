package s3sqs

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"auditwatch/config/duration"
	"auditwatch/ingest"
	"auditwatch/ingest/source"
	"auditwatch/internal/secret"
)

// fakeSQS is one SQS queue speaking the AWS JSON 1.0 protocol the SDK
// uses (X-Amz-Target: AmazonSQS.<Operation>), with visibility timeouts and
// receipt handles that change on every receive. Its clock stands still
// until the test moves it (advance): a received message becomes visible
// again only then, and a long poll returns when a message is there, the
// clock passes its wait time or the request ends.
type fakeSQS struct {
	t        *testing.T
	mu       sync.Mutex
	at       time.Time     // the queue's clock
	wake     chan struct{} // closed when messages or the clock change
	msgs     []*fakeMsg
	seq      int
	deleted  int
	polling  int // long polls in progress
	extended int
	badAuth  int
	ops      map[string]int
}

// changed wakes the long polls (q.mu held).
func (q *fakeSQS) changed() {
	if q.wake != nil {
		close(q.wake)
	}
	q.wake = make(chan struct{})
}

// waker is the channel closed at the next change.
func (q *fakeSQS) waker() <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.wake == nil {
		q.wake = make(chan struct{})
	}
	return q.wake
}

func (q *fakeSQS) now() time.Time {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.at
}

// advance moves the queue's clock on.
func (q *fakeSQS) advance(d time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.at = q.at.Add(d)
	q.changed()
}

type fakeMsg struct {
	id, body, receipt string
	visibleAt         time.Time
	receives          int
}

func (q *fakeSQS) add(body string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.seq++
	q.msgs = append(q.msgs, &fakeMsg{id: fmt.Sprintf("m-%d", q.seq), body: body})
	q.changed()
}

func (q *fakeSQS) left() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.msgs)
}

func sqsError(w http.ResponseWriter, code int, typ, msg string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	w.WriteHeader(code)
	fmt.Fprintf(w, `{"__type":"com.amazonaws.sqs#%s","message":%q}`, typ, msg)
}

func (q *fakeSQS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.Contains(r.Header.Get("Authorization"), "Credential=AKIDTEST/") {
		q.mu.Lock()
		q.badAuth++
		q.mu.Unlock()
		sqsError(w, 403, "InvalidClientTokenId", "bad credentials")
		return
	}
	target := r.Header.Get("X-Amz-Target")
	op, ok := strings.CutPrefix(target, "AmazonSQS.")
	if r.Method != http.MethodPost || !ok || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-amz-json-1.0") {
		sqsError(w, 400, "InvalidAction", "want an AWS JSON 1.0 request, got target "+target)
		return
	}
	var in struct {
		QueueUrl            string
		MaxNumberOfMessages int
		WaitTimeSeconds     int
		VisibilityTimeout   *int
		ReceiptHandle       string
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		sqsError(w, 400, "MalformedInput", err.Error())
		return
	}
	if !strings.HasSuffix(in.QueueUrl, "/123456789012/cloudtrail") {
		sqsError(w, 400, "QueueDoesNotExist", in.QueueUrl)
		return
	}
	q.mu.Lock()
	if q.ops == nil {
		q.ops = map[string]int{}
	}
	q.ops[op]++
	q.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	switch op {
	case "ReceiveMessage":
		q.mu.Lock()
		q.polling++
		q.mu.Unlock()
		defer func() {
			q.mu.Lock()
			q.polling--
			q.mu.Unlock()
		}()
		deadline := q.now().Add(time.Duration(in.WaitTimeSeconds) * time.Second)
		for {
			wake := q.waker()
			out := q.receive(in.MaxNumberOfMessages, in.VisibilityTimeout)
			if len(out) > 0 || !q.now().Before(deadline) {
				json.NewEncoder(w).Encode(map[string]any{"Messages": out})
				return
			}
			select {
			case <-r.Context().Done():
				return
			case <-wake:
			}
		}
	case "DeleteMessage":
		q.mu.Lock()
		defer q.mu.Unlock()
		for i, m := range q.msgs {
			if m.receipt == in.ReceiptHandle {
				q.msgs = append(q.msgs[:i], q.msgs[i+1:]...)
				q.deleted++
				io.WriteString(w, "{}")
				return
			}
		}
		sqsError(w, 400, "ReceiptHandleIsInvalid", "stale receipt handle")
	case "ChangeMessageVisibility":
		q.mu.Lock()
		defer q.mu.Unlock()
		for _, m := range q.msgs {
			if m.receipt == in.ReceiptHandle && in.VisibilityTimeout != nil {
				m.visibleAt = q.at.Add(time.Duration(*in.VisibilityTimeout) * time.Second)
				q.extended++
				io.WriteString(w, "{}")
				return
			}
		}
		sqsError(w, 400, "ReceiptHandleIsInvalid", "stale receipt handle")
	default:
		sqsError(w, 400, "InvalidAction", op)
	}
}

func (q *fakeSQS) receive(max int, vis *int) []map[string]any {
	q.mu.Lock()
	defer q.mu.Unlock()
	timeout := 30 * time.Second
	if vis != nil {
		timeout = time.Duration(*vis) * time.Second
	}
	var out []map[string]any
	now := q.at
	for _, m := range q.msgs {
		if len(out) >= max || m.visibleAt.After(now) {
			continue
		}
		q.seq++
		m.receives++
		m.receipt = fmt.Sprintf("rh-%s-%d", m.id, q.seq)
		m.visibleAt = now.Add(timeout)
		sum := md5.Sum([]byte(m.body))
		out = append(out, map[string]any{"MessageId": m.id, "ReceiptHandle": m.receipt, "Body": m.body,
			"MD5OfBody": hex.EncodeToString(sum[:]), "Attributes": map[string]string{"ApproximateReceiveCount": fmt.Sprint(m.receives)}})
	}
	return out
}

// fakeS3 serves GetObject with path-style addressing (GET /bucket/key).
type fakeS3 struct {
	mu      sync.Mutex
	objects map[string][]byte
	gets    map[string]int
	// streams are objects generated while they are served (never held
	// in memory), with their size.
	streams map[string]stream
}

type stream struct {
	size int64
	open func() io.Reader
}

func (s *fakeS3) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || !strings.Contains(r.Header.Get("Authorization"), "Credential=AKIDTEST/") {
		w.WriteHeader(403)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	path := strings.TrimPrefix(r.URL.Path, "/")
	s.gets[path]++
	if st, ok := s.streams[path]; ok {
		s.mu.Unlock()
		defer s.mu.Lock()
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", fmt.Sprint(st.size))
		w.Header().Set("ETag", `"etag"`)
		io.Copy(w, st.open())
		return
	}
	b, ok := s.objects[path]
	if !ok {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(404)
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message><Key>%s</Key></Error>`, path)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", fmt.Sprint(len(b)))
	w.Header().Set("ETag", `"etag"`)
	w.Write(b)
}

// ackPublisher records batches and acknowledges each at once, or once
// hold is closed (or fails the first failN batches).
type ackPublisher struct {
	mu    sync.Mutex
	hold  chan struct{}
	failN int
	ids   map[string]int
	acks  int
	wg    sync.WaitGroup
}

func (p *ackPublisher) Publish(_ context.Context, b source.Batch) error {
	p.mu.Lock()
	fail := p.failN > 0
	if fail {
		p.failN--
	}
	for _, ev := range b.Events {
		p.ids[ev.ID]++
	}
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		if p.hold != nil {
			<-p.hold
		}
		p.mu.Lock()
		p.acks++
		p.mu.Unlock()
		if fail {
			b.Done(errors.New("downstream refused the batch"))
			return
		}
		b.Done(nil)
	}()
	return nil
}

func (p *ackPublisher) published() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.ids)
}

// timers is the source's visibility-extension clock driven by hand:
// fire lets every extension that waits go on.
type timers struct {
	mu      sync.Mutex
	waiting []chan time.Time
}

func (c *timers) after(time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	c.mu.Lock()
	c.waiting = append(c.waiting, ch)
	c.mu.Unlock()
	return ch
}

func (c *timers) fire() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ch := range c.waiting {
		ch <- time.Time{}
	}
	n := len(c.waiting)
	c.waiting = nil
	return n
}

// waitUntil polls cond until it holds (a guard of 20 s, not a timing
// assertion).
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func testdataRecords(t *testing.T) [][]byte {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "testdata", "cloudtrail-sample.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out [][]byte
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		out = append(out, append([]byte(nil), sc.Bytes()...))
	}
	return out
}

func logFile(recs [][]byte, gz bool) []byte {
	b := []byte(`{"Records":[` + string(bytes.Join(recs, []byte(","))) + `]}`)
	if !gz {
		return b
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// wantIDs parses objects with the real parser: the event ids the source
// must publish.
func wantIDs(t *testing.T, objs ...[]byte) map[string]bool {
	t.Helper()
	want := map[string]bool{}
	for _, o := range objs {
		r := ingest.NewReader(bytes.NewReader(o), "want", ingest.DefaultOptions())
		for {
			ev, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				continue
			}
			want[ev.ID] = true
		}
	}
	return want
}

func s3event(bucket, key, etag string) string {
	return fmt.Sprintf(`{"eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":%q},"object":{"key":%q,"eTag":%q}}}`, bucket, key, etag)
}

type harness struct {
	// guard bounds run (default 20 s); it is a guard, not a figure.
	guard time.Duration
	cfg   Config
	q     *fakeSQS
	s3    *fakeS3
	src   *Source
	reg   *prometheus.Registry
}

func newHarness(t *testing.T, vis time.Duration) *harness {
	t.Helper()
	q := &fakeSQS{t: t}
	st := &fakeS3{objects: map[string][]byte{}, gets: map[string]int{}}
	sqsSrv := httptest.NewServer(q)
	t.Cleanup(sqsSrv.Close)
	s3Srv := httptest.NewServer(st)
	t.Cleanup(s3Srv.Close)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("TEST_AWS_KEY", "AKIDTEST")
	t.Setenv("TEST_AWS_SECRET", "not-a-real-secret")
	cfg := Config{QueueURL: sqsSrv.URL + "/123456789012/cloudtrail", S3Endpoint: s3Srv.URL, PathStyle: true,
		WaitTime: duration.Duration(time.Second), VisibilityTimeout: duration.Duration(vis), BatchSize: 16}
	cfg.AWS.Region = "eu-west-1"
	cfg.AWS.Endpoint = sqsSrv.URL
	cfg.AWS.AccessKeyID = secret.Secret{Env: "TEST_AWS_KEY"}
	cfg.AWS.SecretAccessKey = secret.Secret{Env: "TEST_AWS_SECRET"}
	reg := prometheus.NewRegistry()
	src, err := New(cfg, "ct", source.AuditParser(ingest.DefaultOptions()), nil, source.NewMetrics(reg), reg)
	if err != nil {
		t.Fatal(err)
	}
	return &harness{cfg: cfg, q: q, s3: st, src: src, reg: reg}
}

// start runs the source until the returned stop is called.
func (h *harness) start(t *testing.T, pub source.Publisher) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.src.Run(ctx, pub) }()
	return func() {
		t.Helper()
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		// the cancelled long poll ends on the server too: it must not
		// take a message the next run should receive
		waitUntil(t, "the cancelled long poll to end", func() bool {
			h.q.mu.Lock()
			defer h.q.mu.Unlock()
			return h.q.polling == 0
		})
	}
}

// run runs the source until until holds (polled; the harness's guard
// bounds the wait).
func (h *harness) run(t *testing.T, pub source.Publisher, until func() bool) {
	t.Helper()
	stop := h.start(t, pub)
	guard := h.guard
	if guard == 0 {
		guard = 20 * time.Second
	}
	deadline := time.Now().Add(guard)
	for !until() {
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("timed out; %d messages left, ops %v", h.q.left(), h.q.ops)
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
}

// TestS3SQS reads gzip and plain objects announced by direct, SNS-wrapped
// and CloudTrail-style notifications; skips digests and test events;
// deletes each message only after every batch of it is acknowledged,
// extending its visibility meanwhile; skips an object already handled.
func TestS3SQS(t *testing.T) {
	h := newHarness(t, time.Second)
	recs := testdataRecords(t)
	objA := logFile(recs[:70], true)
	objB := logFile(recs[70:], false)
	h.s3.objects["trail/AWSLogs/123456789012/CloudTrail/eu-west-1/2023/07/10/a.json.gz"] = objA
	h.s3.objects["trail/AWSLogs/123456789012/CloudTrail/eu-west-1/2023/07/10/b b.json"] = objB
	h.s3.objects["trail/AWSLogs/123456789012/CloudTrail-Digest/eu-west-1/2023/07/10/d.json.gz"] = logFile(recs[:1], true)

	h.q.add(`{"Records":[` + s3event("trail", "AWSLogs/123456789012/CloudTrail/eu-west-1/2023/07/10/a.json.gz", "e1") + `,` +
		s3event("trail", "AWSLogs/123456789012/CloudTrail-Digest/eu-west-1/2023/07/10/d.json.gz", "e3") + `]}`)
	inner, _ := json.Marshal(`{"Records":[` + s3event("trail", "AWSLogs/123456789012/CloudTrail/eu-west-1/2023/07/10/b+b.json", "e2") + `]}`)
	h.q.add(`{"Type":"Notification","MessageId":"sns-1","Message":` + string(inner) + `}`)
	h.q.add(`{"Event":"s3:TestEvent","Bucket":"trail"}`)
	h.q.add(`not json at all`)
	clock := &timers{}
	h.src.SetClock(clock.after)
	pub := &ackPublisher{hold: make(chan struct{}), ids: map[string]int{}}
	stop := h.start(t, pub)
	want := wantIDs(t, objA, objB)
	if len(want) < 100 {
		t.Fatalf("only %d events in the sample", len(want))
	}
	// Every event is published, none acknowledged: the two messages
	// without objects are deleted, the two with objects stay.
	waitUntil(t, "every event published and the other messages deleted", func() bool {
		h.q.mu.Lock()
		defer h.q.mu.Unlock()
		return pub.published() == len(want) && h.q.deleted == 2
	})
	if n := h.q.left(); n != 2 {
		t.Fatalf("%d messages left before the acknowledgements, want the 2 with objects", n)
	}
	// Half a visibility timeout on: the waiting messages' visibility is
	// extended (the queue's clock has not moved: none came back).
	if clock.fire() == 0 {
		t.Fatal("no visibility extension waiting while batches were pending")
	}
	waitUntil(t, "visibility extended", func() bool {
		h.q.mu.Lock()
		defer h.q.mu.Unlock()
		return h.q.extended >= 2
	})
	close(pub.hold)
	waitUntil(t, "the acknowledged messages deleted", func() bool { return h.q.left() == 0 })
	stop()
	pub.wg.Wait()

	for id := range want {
		if pub.ids[id] != 1 {
			t.Errorf("event %s published %d times, want 1", id, pub.ids[id])
		}
	}
	if len(pub.ids) != len(want) {
		t.Errorf("%d events published, want %d", len(pub.ids), len(want))
	}
	if n := h.s3.gets["trail/AWSLogs/123456789012/CloudTrail-Digest/eu-west-1/2023/07/10/d.json.gz"]; n != 0 {
		t.Errorf("digest fetched %d times", n)
	}
	h.q.mu.Lock()
	deletes := h.q.deleted
	h.q.mu.Unlock()
	if deletes != 4 {
		t.Errorf("%d deletions, want 4", deletes)
	}
	if got := testutil.ToFloat64(h.src.extensions); got < 2 {
		t.Errorf("visibility extensions metric = %v, want >= 2", got)
	}
	if got := testutil.ToFloat64(h.src.objects.WithLabelValues("ct", "digest")); got != 1 {
		t.Errorf("digest objects = %v, want 1", got)
	}
	if got := testutil.ToFloat64(h.src.messages.WithLabelValues("ct", "malformed")); got != 1 {
		t.Errorf("malformed messages = %v, want 1", got)
	}

	// A duplicate notification of a handled object: deleted, not re-read.
	before := h.s3.gets["trail/AWSLogs/123456789012/CloudTrail/eu-west-1/2023/07/10/a.json.gz"]
	h.q.add(`{"Records":[` + s3event("trail", "AWSLogs/123456789012/CloudTrail/eu-west-1/2023/07/10/a.json.gz", "e1") + `]}`)
	h.run(t, pub, func() bool { return h.q.left() == 0 })
	if after := h.s3.gets["trail/AWSLogs/123456789012/CloudTrail/eu-west-1/2023/07/10/a.json.gz"]; after != before {
		t.Errorf("duplicate notification re-read the object (%d gets, was %d)", after, before)
	}
	if h.q.badAuth != 0 {
		t.Errorf("%d requests without the static credentials", h.q.badAuth)
	}
}

// TestS3SQSRedelivery: a batch the next stage refuses leaves the message
// in the queue; it is redelivered after its visibility timeout and read
// again, so every event arrives (at least once, same ids).
func TestS3SQSRedelivery(t *testing.T) {
	h := newHarness(t, time.Second)
	recs := testdataRecords(t)
	obj := logFile(recs[:40], true)
	h.s3.objects["trail/k.json.gz"] = obj
	h.q.add(`{"s3Bucket":"trail","s3ObjectKey":["k.json.gz","gone-before.json.gz"]}`)
	pub := &ackPublisher{failN: 1, ids: map[string]int{}}
	stop := h.start(t, pub)
	waitUntil(t, "the refused message left for redelivery", func() bool {
		return testutil.ToFloat64(h.src.messages.WithLabelValues("ct", "retried")) == 1
	})
	h.s3.mu.Lock()
	reads := h.s3.gets["trail/k.json.gz"]
	h.s3.mu.Unlock()
	if h.q.left() != 1 || reads != 1 {
		t.Fatalf("before its visibility timeout: %d messages, object read %d times", h.q.left(), reads)
	}
	// Its visibility timeout passes: it comes back and is read again.
	h.q.advance(2 * time.Second)
	waitUntil(t, "the redelivered message deleted", func() bool { return h.q.left() == 0 })
	stop()
	pub.wg.Wait()
	want := wantIDs(t, obj)
	for id := range want {
		if pub.ids[id] < 1 {
			t.Errorf("event %s never published", id)
		}
	}
	h.q.mu.Lock()
	defer h.q.mu.Unlock()
	if h.s3.gets["trail/k.json.gz"] != 2 {
		t.Errorf("object read %d times, want 2 (refused, then redelivered)", h.s3.gets["trail/k.json.gz"])
	}
	if got := testutil.ToFloat64(h.src.messages.WithLabelValues("ct", "retried")); got != 1 {
		t.Errorf("retried messages = %v, want 1", got)
	}
	if got := testutil.ToFloat64(h.src.objects.WithLabelValues("ct", "missing")); got < 1 {
		t.Errorf("missing objects = %v, want >= 1", got)
	}
}

func TestParseNotification(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       []Object
		err        bool
	}{
		{"s3", `{"Records":[` + s3event("b", "a/x+y%2Bz.json.gz", "t") + `]}`, []Object{{"b", "a/x y+z.json.gz", "t"}}, false},
		{"cloudtrail sns", `{"s3Bucket":"b","s3ObjectKey":["k1","k2"]}`, []Object{{"b", "k1", ""}, {"b", "k2", ""}}, false},
		{"test event", `{"Event":"s3:TestEvent"}`, nil, false},
		{"not created", `{"Records":[{"eventSource":"aws:s3","eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}]}`, nil, false},
		{"no key", `{"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{}}}]}`, nil, true},
		{"garbage", `[1,2]`, nil, true},
		{"other json", `{"hello":"world"}`, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseNotification(tc.body)
			if (err != nil) != tc.err {
				t.Fatalf("err = %v, want error %v", err, tc.err)
			}
			if err != nil && !errors.Is(err, ErrNotification) {
				t.Errorf("error %v does not wrap ErrNotification", err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func FuzzParseNotification(f *testing.F) {
	f.Add(`{"Records":[` + s3event("b", "k", "t") + `]}`)
	f.Add(`{"Type":"Notification","Message":"{\"s3Bucket\":\"b\",\"s3ObjectKey\":[\"k\"]}"}`)
	f.Fuzz(func(t *testing.T, body string) {
		objs, err := ParseNotification(body)
		if err != nil && !errors.Is(err, ErrNotification) {
			t.Fatalf("error %v does not wrap ErrNotification", err)
		}
		for _, o := range objs {
			if o.Bucket == "" || o.Key == "" {
				t.Fatalf("object without bucket or key: %+v", o)
			}
		}
	})
}

// parallel defaults to 4 and is bounded.
func TestConfigParallel(t *testing.T) {
	c := Config{QueueURL: "https://sqs.eu-west-1.amazonaws.com/123456789012/cloudtrail"}
	c.SetDefaults()
	if c.Parallel != 4 {
		t.Errorf("default parallel %d, want 4", c.Parallel)
	}
	if err := c.Validate(); err != nil && strings.Contains(err.Error(), "parallel") {
		t.Errorf("default parallel refused: %v", err)
	}
	for _, p := range []int{-1, 65} {
		c.Parallel = p
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "parallel: must be within 1..64") {
			t.Errorf("parallel %d: %v", p, err)
		}
	}
}
