package slack

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"auditwatch/alert/notify"
	"auditwatch/alert/notify/notifytest"
	"auditwatch/alert/slack/slacktest"
	"auditwatch/internal/runbook"
	"auditwatch/internal/secret"
)

const token = "xoxb-test-token"

func botConfig(t *testing.T, srv *slacktest.Server) Config {
	t.Setenv("AW_TEST_SLACK_TOKEN", token)
	return Config{Mode: ModeBot, Token: secret.Secret{Env: "AW_TEST_SLACK_TOKEN"}, Channel: "#sec-alerts", APIURL: srv.APIURL()}
}

func newBot(t *testing.T, srv *slacktest.Server, clock notify.Clock) *Notifier {
	t.Helper()
	n, err := New(botConfig(t, srv), nil, WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestEscape(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain text 1.2.3.4", "plain text 1.2.3.4"},
		{"<!channel>", "&lt;!channel&gt;"},
		{"<@U123>", "&lt;@U123&gt;"},
		{"<https://evil|click>", "&lt;https://evil|click&gt;"},
		{"a & b", "a &amp; b"},
		{"*b* _i_ ~s~ `c`", "＊b＊ ＿i＿ ～s～ ｀c｀"},
		{"line1\r\nline2", "line1␍␊line2"},
		{"nul\x00byte\x7f", "nul␀byte␡"},
		{"bidi\u202eevil", "bidi\uFFFDevil"},
		{"bad\xffutf8", "bad\uFFFDutf8"},
		{"ping @channel and @HERE", "ping ＠channel and ＠HERE"},
		{"x|y=z\\w", "x|y=z\\w"},
	}
	for _, tt := range tests {
		if got := Escape(tt.in, 0); got != tt.want {
			t.Errorf("Escape(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestEscapeBound(t *testing.T) {
	for _, max := range []int{8, 20, 100, 300} {
		got := Escape(notifytest.Big(), max)
		if len(got) > max {
			t.Errorf("Escape(10 KB, %d) is %d bytes", max, len(got))
		}
		if !strings.HasSuffix(got, "…") {
			t.Errorf("Escape(10 KB, %d) = %q, want an ellipsis at the end", max, got)
		}
		// An entity is never split: every & starts a whole entity.
		for i := strings.IndexByte(got, '&'); i >= 0; i = strings.IndexByte(got[i+1:], '&') + i + 1 {
			rest := got[i:]
			if !strings.HasPrefix(rest, "&amp;") && !strings.HasPrefix(rest, "&lt;") && !strings.HasPrefix(rest, "&gt;") {
				t.Fatalf("Escape(10 KB, %d) split an entity: %q", max, rest)
			}
			if strings.IndexByte(got[i+1:], '&') < 0 {
				break
			}
		}
	}
	if got := Escape("short", 100); got != "short" {
		t.Errorf("Escape(short) = %q", got)
	}
}

func TestGoldenMessage(t *testing.T) {
	a := notifytest.Alert()
	m := render(a, 300)
	b, err := json.MarshalIndent(map[string]any{"text": m.Text, "blocks": m.Blocks}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	notifytest.Golden(t, "message", append(b, '\n'))

	up := a
	up.Update, up.Repeat, up.GroupCount = true, 3, 9
	m = render(up, 300)
	b, _ = json.MarshalIndent(map[string]any{"text": m.Text, "blocks": m.Blocks}, "", "  ")
	notifytest.Golden(t, "message-update", append(b, '\n'))
}

func TestThreadPerDedupeKey(t *testing.T) {
	srv := slacktest.New(token)
	defer srv.Close()
	clock := notifytest.NewClock(time.Unix(1_800_000_000, 0))
	n := newBot(t, srv, clock)
	ctx := context.Background()
	a := notifytest.Alert()
	if err := n.Notify(ctx, a); err != nil {
		t.Fatal(err)
	}
	a2 := a
	a2.Update, a2.Repeat, a2.GroupCount = true, 2, 6
	a2.Finding.ID = "second"
	if err := n.Notify(ctx, a2); err != nil {
		t.Fatal(err)
	}
	other := notifytest.Alert()
	other.Finding.DedupeKey = "another incident"
	if err := n.Notify(ctx, other); err != nil {
		t.Fatal(err)
	}
	msgs := srv.Messages()
	if len(msgs) != 4 {
		t.Fatalf("got %d messages, want parent, reply, parent edit, second parent: %+v", len(msgs), msgs)
	}
	parent := msgs[0]
	if parent.Method != "chat.postMessage" || parent.ThreadTS != "" || parent.Channel != "#sec-alerts" {
		t.Errorf("first message = %+v, want a top-level post to #sec-alerts", parent)
	}
	if msgs[1].Method != "chat.postMessage" || msgs[1].ThreadTS != parent.TS {
		t.Errorf("repeat = %+v, want a reply in thread %s", msgs[1], parent.TS)
	}
	if !strings.Contains(msgs[1].Text, "Repeat 2 (6 events so far)") {
		t.Errorf("repeat text = %q, want the count", msgs[1].Text)
	}
	if msgs[2].Method != "chat.update" || msgs[2].TS != parent.TS || !strings.Contains(msgs[2].Text, "2 alerts, 6 events") {
		t.Errorf("parent edit = %+v, want chat.update of %s with the count", msgs[2], parent.TS)
	}
	if msgs[3].ThreadTS != "" {
		t.Errorf("another dedupe key went into a thread: %+v", msgs[3])
	}
	// Three posts and an edit are within the default burst (10): no wait.
	if slept, _ := clock.Slept(); slept != 0 {
		t.Errorf("rate limiter slept %s for 3 posts to one channel, want none (burst 10)", slept)
	}
	// Ten more posts: the burst is spent at the 10th post, then one a
	// second (min_interval): 13 posts in all wait 3 s of virtual time.
	for i := range 10 {
		b := notifytest.Alert()
		b.Finding.DedupeKey = fmt.Sprintf("burst %d", i)
		b.Finding.ID = fmt.Sprintf("burst-%d", i)
		if err := n.Notify(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if slept, _ := clock.Slept(); slept != 3*time.Second {
		t.Errorf("rate limiter slept %s for 13 posts to one channel, want 3s (burst 10, then 1/s)", slept)
	}
}

func TestSlackErrors(t *testing.T) {
	tests := []struct {
		name       string
		fail       *slacktest.Failure
		token      string
		wantRetry  bool
		wantReason notify.Reason
		wantAfter  time.Duration
	}{
		{name: "wrong token", token: "xoxb-wrong", wantReason: notify.ReasonAuth},
		{name: "429", fail: &slacktest.Failure{Status: 429, Body: `{"ok":false,"error":"ratelimited"}`, Headers: map[string]string{"Retry-After": "7"}},
			wantRetry: true, wantReason: notify.ReasonThrottled, wantAfter: 7 * time.Second},
		{name: "500", fail: &slacktest.Failure{Status: 500, Body: "<html>oops</html>"}, wantRetry: true, wantReason: notify.ReasonServer},
		{name: "503", fail: &slacktest.Failure{Status: 503, Body: "unavailable"}, wantRetry: true, wantReason: notify.ReasonServer},
		{name: "internal_error", fail: &slacktest.Failure{Status: 200, Body: slacktest.SlackError("internal_error")}, wantRetry: true, wantReason: notify.ReasonServer},
		{name: "ratelimited body", fail: &slacktest.Failure{Status: 200, Body: slacktest.SlackError("ratelimited")}, wantRetry: true, wantReason: notify.ReasonThrottled},
		{name: "channel_not_found", fail: &slacktest.Failure{Status: 200, Body: slacktest.SlackError("channel_not_found")}, wantReason: notify.ReasonRejected},
		{name: "token_revoked", fail: &slacktest.Failure{Status: 200, Body: slacktest.SlackError("token_revoked")}, wantReason: notify.ReasonAuth},
		{name: "404", fail: &slacktest.Failure{Status: 404, Body: "not found"}, wantReason: notify.ReasonRejected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := slacktest.New(token)
			defer srv.Close()
			if tt.fail != nil {
				srv.Fail = func(string, int, string) *slacktest.Failure { return tt.fail }
			}
			cfg := botConfig(t, srv)
			if tt.token != "" {
				t.Setenv("AW_TEST_SLACK_TOKEN", tt.token)
			}
			n, err := New(cfg, nil, WithClock(notifytest.NewClock(time.Unix(0, 0))))
			if err != nil {
				t.Fatal(err)
			}
			err = n.Notify(context.Background(), notifytest.Alert())
			if err == nil {
				t.Fatal("Notify succeeded, want an error")
			}
			d := notify.Classify(err)
			if d.Retry != tt.wantRetry || d.Reason != tt.wantReason || d.RetryAfter != tt.wantAfter {
				t.Errorf("Classify(%v) = %+v, want retry=%v reason=%s after=%s", err, d, tt.wantRetry, tt.wantReason, tt.wantAfter)
			}
			if strings.Contains(err.Error(), token) {
				t.Errorf("error %q contains the token", err)
			}
		})
	}
}

func TestWebhookMode(t *testing.T) {
	srv := slacktest.New("hooksecret")
	defer srv.Close()
	t.Setenv("AW_TEST_SLACK_HOOK", srv.WebhookURL())
	n, err := New(Config{Mode: ModeWebhook, WebhookURL: secret.Secret{Env: "AW_TEST_SLACK_HOOK"}}, nil,
		WithClock(notifytest.NewClock(time.Unix(0, 0))))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Notify(context.Background(), notifytest.Alert()); err != nil {
		t.Fatal(err)
	}
	msgs := srv.Messages()
	if len(msgs) != 1 || msgs[0].Method != "webhook" || !strings.Contains(msgs[0].Blocks, "Why this is unusual") {
		t.Fatalf("webhook got %+v", msgs)
	}
	t.Setenv("AW_TEST_SLACK_HOOK", srv.URL+"/services/T000/B000/wrong")
	n, _ = New(Config{Mode: ModeWebhook, WebhookURL: secret.Secret{Env: "AW_TEST_SLACK_HOOK"}}, nil)
	err = n.Notify(context.Background(), notifytest.Alert())
	if d := notify.Classify(err); d.Retry || d.Reason != notify.ReasonAuth {
		t.Errorf("wrong webhook: Classify(%v) = %+v, want permanent auth", err, d)
	}
}

// TestInjection sends the hostile finding through the bot and checks what
// Slack received: no mention, broadcast or link syntax, no control
// characters, formatting neutralised, every text object within Slack's limits.
func TestInjection(t *testing.T) {
	srv := slacktest.New(token)
	defer srv.Close()
	n := newBot(t, srv, notifytest.NewClock(time.Unix(0, 0)))
	f := notify.BoundFinding(notifytest.HostileFinding(), 2048, 20, 32)
	if err := n.Notify(context.Background(), notify.Alert{Finding: f, Repeat: 1, GroupCount: 1}); err != nil {
		t.Fatal(err)
	}
	msgs := srv.Messages()
	if len(msgs) != 1 {
		t.Fatalf("got %d messages", len(msgs))
	}
	var blocks []any
	if err := json.Unmarshal([]byte(msgs[0].Blocks), &blocks); err != nil {
		t.Fatal(err)
	}
	var texts []string
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if s, ok := x["text"].(string); ok {
				texts = append(texts, s)
				if len(s) > 3000 {
					t.Errorf("a text object is %d bytes (Slack allows 3000)", len(s))
				}
			}
			for _, c := range x {
				walk(c)
			}
		case []any:
			for _, c := range x {
				walk(c)
			}
		}
	}
	walk(blocks)
	texts = append(texts, msgs[0].Text)
	if strings.Contains(msgs[0].Text, "\n") {
		t.Errorf("text fallback has a raw newline: %q", msgs[0].Text)
	}
	joined := strings.Join(texts, "\n")
	for _, bad := range []string{"<!channel>", "<!here>", "<@U123>", "<https://evil", "|click>", "\x00", "\r", "*bold*", "_it_", "~s~", "`code`", "@channel"} {
		if strings.Contains(joined, bad) {
			t.Errorf("Slack received %q unescaped", bad)
		}
	}
	for _, want := range []string{"&lt;!channel&gt;", "&lt;@U123&gt;", "&lt;https://evil|click&gt;", "&amp;", "␍␊", "␀", "＊bold＊"} {
		if !strings.Contains(joined, want) {
			t.Errorf("Slack did not receive the escaped form %q", want)
		}
	}
	// Outside our own markup, no '<' or '>' survives at all.
	if strings.ContainsAny(joined, "<>") {
		t.Errorf("a raw < or > reached Slack")
	}
	if len(msgs[0].Text) > 4000 {
		t.Errorf("text fallback is %d bytes; fields are not bounded", len(msgs[0].Text))
	}
	// The runbook of a hostile finding falls back to the finding id.
	if !strings.Contains(joined, "auditwatch query finding --id '4f1c2a9e8b7d6c5f4e3d2c1b0a998877'") {
		t.Errorf("runbook lacks the finding-id query: %s", Runbook(f))
	}
}

func TestRunbook(t *testing.T) {
	got := Runbook(notifytest.Finding())
	// The runbook catalog's commands (internal/runbook), from an hour
	// before the incident's first event.
	since := " --since '" + runbook.Since(notifytest.Finding()) + "'"
	want := "auditwatch query finding --id '4f1c2a9e8b7d6c5f4e3d2c1b0a998877'" + since + "\n" +
		"auditwatch query who-accessed --resource 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/payments/db-AbCdEf'" + since + "\n" +
		"auditwatch query principal --principal 'arn:aws:iam::123456789012:role/payments-api'" + since + "\n" +
		"auditwatch query blast-radius --principal 'arn:aws:iam::123456789012:role/payments-api'" + since + "\n" +
		"auditwatch query ip --ip '203.0.113.77'" + since
	if got != want {
		t.Errorf("Runbook =\n%s\nwant\n%s", got, want)
	}
	f := notifytest.Finding()
	f.Resource = "secret/it's <here> & there"
	if got := Runbook(f); !strings.Contains(got, `--resource 'secret/it'\''s &lt;here&gt; &amp; there'`) {
		t.Errorf("Runbook quoting: %s", got)
	}
}

func TestConfigValidate(t *testing.T) {
	c := Config{Mode: "carrier-pigeon", APIURL: "ftp://x", MinInterval: -1, MaxFieldChars: 5, MaxBatch: 50}
	err := c.Validate("alerts.outputs[0].slack")
	if err == nil {
		t.Fatal("Validate accepted a bad config")
	}
	for _, want := range []string{"alerts.outputs[0].slack.mode", "alerts.outputs[0].slack.api_url", "alerts.outputs[0].slack.min_interval",
		"alerts.outputs[0].slack.max_field_chars", "alerts.outputs[0].slack.max_batch"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate error lacks %s: %v", want, err)
		}
	}
	c = Config{Mode: ModeBot}
	c.SetDefaults()
	err = c.Validate("s")
	if err == nil || !strings.Contains(err.Error(), "s.token") || !strings.Contains(err.Error(), "s.channel") {
		t.Errorf("bot mode without token and channel: %v", err)
	}
}

func TestWebhookThinsRepeats(t *testing.T) {
	srv := slacktest.New("hooksecret")
	defer srv.Close()
	t.Setenv("AW_TEST_SLACK_HOOK", srv.WebhookURL())
	n, err := New(Config{Mode: ModeWebhook, WebhookURL: secret.Secret{Env: "AW_TEST_SLACK_HOOK"}}, nil,
		WithClock(notifytest.NewClock(time.Unix(0, 0))))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	for i := 1; i <= 10; i++ {
		a := notifytest.Alert()
		a.Update, a.Repeat, a.GroupCount = i > 1, i, 3*i
		if err := n.Notify(context.Background(), a); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for _, m := range srv.Messages() {
		got = append(got, m.Text[:min(len(m.Text), 9)])
	}
	if want := "HIGH secr,Repeat 2 ,Repeat 4 ,Repeat 8 "; strings.Join(got, ",") != want {
		t.Errorf("webhook posts = %q, want %q", strings.Join(got, ","), want)
	}
}
