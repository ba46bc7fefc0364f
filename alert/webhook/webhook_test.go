package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"auditwatch/alert/notify"
	"auditwatch/alert/notify/notifytest"
	"auditwatch/internal/secret"
	"auditwatch/schema"
)

func TestPostAndErrors(t *testing.T) {
	var bodies [][]byte
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer hook-token" || r.Header.Get("X-Team") != "secops" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		b, _ := io.ReadAll(r.Body)
		if status != http.StatusOK {
			w.Header().Set("Retry-After", "3")
			w.WriteHeader(status)
			return
		}
		bodies = append(bodies, b)
	}))
	defer srv.Close()
	t.Setenv("AW_TEST_HOOK_TOKEN", "hook-token")
	cfg := Config{URL: srv.URL, Token: secret.Secret{Env: "AW_TEST_HOOK_TOKEN"}, Headers: map[string]string{"X-Team": "secops"}}
	n, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := n.Notify(ctx, notifytest.Alert()); err != nil {
		t.Fatal(err)
	}
	if err := n.SendEvents(ctx, []schema.Event{{ID: "e1", Time: time.Unix(1, 0), Action: "vault:read", Outcome: schema.OutcomeFailure}}); err != nil {
		t.Fatal(err)
	}
	if len(bodies) != 2 {
		t.Fatalf("got %d posts", len(bodies))
	}
	var f map[string]any
	if err := json.Unmarshal(bodies[0], &f); err != nil || f["class_uid"] != 2004.0 || f["type_uid"] != 200401.0 {
		t.Errorf("finding post = %s (%v)", bodies[0], err)
	}
	var evs []map[string]any
	if err := json.Unmarshal(bodies[1], &evs); err != nil || len(evs) != 1 || evs[0]["class_uid"] != 6003.0 || evs[0]["status"] != "Failure" {
		t.Errorf("event post = %s (%v)", bodies[1], err)
	}
	for _, tt := range []struct {
		code      int
		retry     bool
		reason    notify.Reason
		wantAfter time.Duration
	}{{503, true, notify.ReasonServer, 3 * time.Second}, {429, true, notify.ReasonThrottled, 3 * time.Second}, {422, false, notify.ReasonRejected, 3 * time.Second}} {
		status = tt.code
		err := n.Notify(ctx, notifytest.Alert())
		if d := notify.Classify(err); d.Retry != tt.retry || d.Reason != tt.reason || d.RetryAfter != tt.wantAfter {
			t.Errorf("status %d: %v classified %+v", tt.code, err, d)
		}
	}
	n.token = "wrong"
	status = http.StatusOK
	if d := notify.Classify(n.Notify(ctx, notifytest.Alert())); d.Retry || d.Reason != notify.ReasonAuth {
		t.Errorf("wrong token classified %+v", d)
	}
}

func TestGoldenAndInjection(t *testing.T) {
	up := notifytest.Alert()
	up.Update, up.Repeat, up.GroupCount = true, 2, 7
	for name, a := range map[string]notify.Alert{"finding": notifytest.Alert(), "finding-update": up} {
		b, err := EncodeFinding(a)
		if err != nil {
			t.Fatal(err)
		}
		var pretty bytes.Buffer
		_ = json.Indent(&pretty, b, "", "  ")
		notifytest.Golden(t, name, append(pretty.Bytes(), '\n'))
	}
	hf := notify.BoundFinding(notifytest.HostileFinding(), 2048, 20, 32)
	b, err := EncodeFinding(notify.Alert{Finding: hf})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.ContainsAny(b, "<>&\r\n\x00") {
		t.Error("webhook body holds a raw <, >, &, CR, LF or NUL")
	}
	var back map[string]any
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back["actor"].(map[string]any)["user"].(map[string]any)["uid"] != hf.Principal || back["message"] != hf.Summary {
		t.Error("hostile values did not round-trip through JSON")
	}
}

func TestConfigValidate(t *testing.T) {
	err := Config{URL: "mailto:x", Headers: map[string]string{"authorization": "Bearer x"}}.Validate("w")
	if err == nil {
		t.Fatal("accepted a bad config")
	}
	for _, want := range []string{"w.url", "w.headers.authorization", "w.timeout"} {
		if !bytes.Contains([]byte(err.Error()), []byte(want)) {
			t.Errorf("error lacks %s: %v", want, err)
		}
	}
}
