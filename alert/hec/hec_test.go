package hec

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"auditwatch/alert/notify"
	"auditwatch/alert/notify/notifytest"
	"auditwatch/config/duration"
	"auditwatch/internal/secret"
	"auditwatch/schema"
)

const token = "11111111-2222-3333-4444-555555555555"

// collector is a local HTTP Event Collector: it checks the token the way
// Splunk does ("Authorization: Splunk <token>", 401/403 with HEC's JSON
// error bodies), splits the concatenated JSON events of a request, and
// with ack on hands out ackIds that become true after ackAfter polls.
type collector struct {
	*httptest.Server
	ack      bool
	ackAfter int

	mu       sync.Mutex
	requests []([]map[string]any)
	channels []string
	nextAck  int64
	polls    map[int64]int
	fail     func(n int) (int, string)
	n        int
	raw      [][]byte // bodies of accepted event requests
	hang     bool     // hold every request without an answer
}

func newCollector(ack bool, ackAfter int) *collector {
	c := &collector{ack: ack, ackAfter: ackAfter, polls: map[int64]int{}}
	c.Server = httptest.NewServer(http.HandlerFunc(c.serve))
	return c
}

func (c *collector) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	auth := r.Header.Get("Authorization")
	if auth == "" {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"text":"Token is required","code":2}`)
		return
	}
	if auth != "Splunk "+token {
		w.WriteHeader(http.StatusForbidden)
		_, _ = io.WriteString(w, `{"text":"Invalid token","code":4}`)
		return
	}
	body, _ := io.ReadAll(r.Body)
	c.mu.Lock()
	hang := c.hang
	c.mu.Unlock()
	if hang {
		<-r.Context().Done()
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	if c.fail != nil {
		if code, body := c.fail(c.n); code != 0 {
			w.WriteHeader(code)
			_, _ = io.WriteString(w, body)
			return
		}
	}
	channel := r.Header.Get("X-Splunk-Request-Channel")
	switch r.URL.Path {
	case "/services/collector/event":
		if c.ack && channel == "" {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"text":"Data channel is missing","code":10}`)
			return
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		var evs []map[string]any
		for {
			var ev map[string]any
			if err := dec.Decode(&ev); err == io.EOF {
				break
			} else if err != nil {
				w.WriteHeader(http.StatusBadRequest)
				_, _ = io.WriteString(w, `{"text":"Invalid data format","code":6,"invalid-event-number":0}`)
				return
			}
			if _, ok := ev["event"]; !ok {
				w.WriteHeader(http.StatusBadRequest)
				_, _ = io.WriteString(w, `{"text":"Event field is required","code":12}`)
				return
			}
			evs = append(evs, ev)
		}
		c.requests = append(c.requests, evs)
		c.raw = append(c.raw, body)
		c.channels = append(c.channels, channel)
		if c.ack {
			id := c.nextAck
			c.nextAck++
			fmt.Fprintf(w, `{"text":"Success","code":0,"ackId":%d}`, id)
			return
		}
		_, _ = io.WriteString(w, `{"text":"Success","code":0}`)
	case "/services/collector/ack":
		if r.URL.Query().Get("channel") != channel || channel == "" {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"text":"Data channel is missing","code":10}`)
			return
		}
		var req struct {
			Acks []int64 `json:"acks"`
		}
		_ = json.Unmarshal(body, &req)
		res := map[string]bool{}
		for _, id := range req.Acks {
			c.polls[id]++
			res[fmt.Sprint(id)] = id < c.nextAck && c.polls[id] > c.ackAfter
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"acks": res})
	default:
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"text":"The requested URL was not found on this server.","code":404}`)
	}
}

func (c *collector) events() [][]map[string]any {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]map[string]any(nil), c.requests...)
}

func newHEC(t *testing.T, url string, mod func(*Config)) *Notifier {
	t.Helper()
	t.Setenv("AW_TEST_HEC_TOKEN", token)
	cfg := Config{URL: url, Token: secret.Secret{Env: "AW_TEST_HEC_TOKEN"}, Index: "security", Host: "aw-host"}
	if mod != nil {
		mod(&cfg)
	}
	n, err := New(cfg, nil, WithClock(notifytest.NewClock(time.Unix(0, 0))))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestFindingAndBatching(t *testing.T) {
	c := newCollector(false, 0)
	defer c.Close()
	n := newHEC(t, c.URL, func(cfg *Config) { cfg.BatchSize = 3 })
	ctx := context.Background()
	if err := n.Notify(ctx, notifytest.Alert()); err != nil {
		t.Fatal(err)
	}
	var evs []schema.Event
	for i := range 7 {
		evs = append(evs, schema.Event{ID: fmt.Sprintf("ev-%d", i), Time: time.Unix(1_700_000_000+int64(i), 0), Source: schema.SourceVault, Action: "vault:read"})
	}
	if err := n.SendEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	reqs := c.events()
	if len(reqs) != 4 || len(reqs[0]) != 1 || len(reqs[1]) != 3 || len(reqs[2]) != 3 || len(reqs[3]) != 1 {
		t.Fatalf("requests carried %v events, want 1 finding then batches of 3,3,1", lens(reqs))
	}
	f := reqs[0][0]
	if f["sourcetype"] != "auditwatch:finding" || f["index"] != "security" || f["host"] != "aw-host" || f["time"] != 1773480413.0 {
		t.Errorf("finding envelope = %v", f)
	}
	body := f["event"].(map[string]any)
	if body["kind"] != "finding" || body["finding"].(map[string]any)["id"] != "4f1c2a9e8b7d6c5f4e3d2c1b0a998877" {
		t.Errorf("finding body = %v", body)
	}
	if reqs[1][0]["sourcetype"] != "auditwatch:event" || reqs[3][0]["event"].(map[string]any)["id"] != "ev-6" {
		t.Errorf("event envelope = %v", reqs[1][0])
	}
}

func lens(r [][]map[string]any) []int {
	var out []int
	for _, x := range r {
		out = append(out, len(x))
	}
	return out
}

func TestIndexerAck(t *testing.T) {
	c := newCollector(true, 2)
	defer c.Close()
	n := newHEC(t, c.URL, func(cfg *Config) { cfg.Ack = true })
	if err := n.Notify(context.Background(), notifytest.Alert()); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	polls := c.polls[0]
	ch := c.channels[0]
	c.mu.Unlock()
	if polls != 3 {
		t.Errorf("ack polled %d times, want 3 (acknowledged on the third)", polls)
	}
	if len(ch) != 36 {
		t.Errorf("request channel %q is not a GUID", ch)
	}
	// An ack that never comes is a retryable timeout.
	c2 := newCollector(true, 1<<30)
	defer c2.Close()
	n2 := newHEC(t, c2.URL, func(cfg *Config) { cfg.Ack = true; cfg.AckTimeout = duration.Duration(5 * time.Second) })
	err := n2.Notify(context.Background(), notifytest.Alert())
	if d := notify.Classify(err); err == nil || !d.Retry || d.Reason != notify.ReasonTimeout {
		t.Errorf("missing ack: %v, %+v", err, d)
	}
	// Ack on, but the token has no ack: the collector returns no ackId.
	c3 := newCollector(false, 0)
	defer c3.Close()
	n3 := newHEC(t, c3.URL, func(cfg *Config) { cfg.Ack = true })
	if d := notify.Classify(n3.Notify(context.Background(), notifytest.Alert())); d.Retry {
		t.Errorf("no ackId classified %+v, want permanent", d)
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name       string
		code       int
		body       string
		wantRetry  bool
		wantReason notify.Reason
	}{
		{"busy", 503, `{"text":"Server is busy","code":9}`, true, notify.ReasonServer},
		{"internal", 500, `{"text":"Internal server error","code":8}`, true, notify.ReasonServer},
		{"throttled", 429, `{"text":"Too many requests"}`, true, notify.ReasonThrottled},
		{"bad format", 400, `{"text":"Invalid data format","code":6}`, false, notify.ReasonRejected},
		{"disabled token", 403, `{"text":"Token disabled","code":1}`, false, notify.ReasonAuth},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCollector(false, 0)
			defer c.Close()
			c.fail = func(int) (int, string) { return tt.code, tt.body }
			err := newHEC(t, c.URL, nil).Notify(context.Background(), notifytest.Alert())
			if d := notify.Classify(err); err == nil || d.Retry != tt.wantRetry || d.Reason != tt.wantReason {
				t.Errorf("%d %s: %v classified %+v", tt.code, tt.body, err, d)
			}
		})
	}
	c := newCollector(false, 0)
	defer c.Close()
	t.Setenv("AW_TEST_HEC_TOKEN_BAD", "wrong")
	n, err := New(Config{URL: c.URL, Token: secret.Secret{Env: "AW_TEST_HEC_TOKEN_BAD"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = n.Notify(context.Background(), notifytest.Alert())
	if d := notify.Classify(err); d.Retry || d.Reason != notify.ReasonAuth || !strings.Contains(err.Error(), "Invalid token") {
		t.Errorf("wrong token: %v %+v", err, d)
	}
}

func TestGoldenAndInjection(t *testing.T) {
	n := newHEC(t, "http://127.0.0.1:1", nil)
	b, err := n.EncodeFinding(notifytest.Alert())
	if err != nil {
		t.Fatal(err)
	}
	var pretty bytes.Buffer
	_ = json.Indent(&pretty, b, "", "  ")
	notifytest.Golden(t, "finding", append(pretty.Bytes(), '\n'))

	hf := notify.BoundFinding(notifytest.HostileFinding(), 2048, 20, 32)
	b, err = n.EncodeFinding(notify.Alert{Finding: hf})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.ContainsAny(b, "<>&\r\n\x00") {
		t.Errorf("HEC body holds a raw <, >, &, CR, LF or NUL")
	}
	var back Event
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	got := back.Event.(map[string]any)["finding"].(map[string]any)
	if got["principal"] != hf.Principal || got["summary"] != hf.Summary || len(got["resource"].(string)) > 2048 {
		t.Errorf("hostile values did not survive JSON: %.100q", got["principal"])
	}
	if !bytes.Contains(b, []byte(`\u003c!channel\u003e`)) || !bytes.Contains(b, []byte(`\r\n`)) || !bytes.Contains(b, []byte(`\u0000`)) {
		t.Errorf("escaped forms missing from %.300s", b)
	}
}
