package slack

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"auditwatch/alert/outputtest"
	"auditwatch/alert/slack/slacktest"
	"auditwatch/internal/secret"
)

// slackPeer switches the local Slack API's behaviour for the suite.
type slackPeer struct {
	srv  *slacktest.Server
	mu   sync.Mutex
	mode outputtest.Mode
}

func newSlackPeer(t *testing.T, tok string) *slackPeer {
	p := &slackPeer{srv: slacktest.New(tok)}
	t.Cleanup(p.srv.Close)
	p.srv.Fail = func(method string, n int, text string) *slacktest.Failure {
		p.mu.Lock()
		defer p.mu.Unlock()
		switch p.mode {
		case outputtest.FailRetryable:
			if n%2 == 0 {
				return &slacktest.Failure{Status: 429, Body: slacktest.SlackError("ratelimited"), Headers: map[string]string{"Retry-After": "1"}}
			}
			return &slacktest.Failure{Status: 503, Body: "<html>unavailable</html>"}
		case outputtest.FailPermanent:
			if method == "webhook" {
				return &slacktest.Failure{Status: 403, Body: "invalid_token"}
			}
			return &slacktest.Failure{Status: 200, Body: slacktest.SlackError("invalid_auth")}
		}
		return nil
	}
	never := make(chan struct{})
	t.Cleanup(func() { close(never) })
	p.srv.Hang = func(string) (<-chan struct{}, bool) {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.mode == outputtest.Hang {
			return never, false
		}
		return nil, false
	}
	return p
}

func (p *slackPeer) set(m outputtest.Mode) { p.mu.Lock(); p.mode = m; p.mu.Unlock() }

// rendered is what a Slack user sees of a message: its text fallback
// and every text of its blocks, decoded from the JSON.
func rendered(m slacktest.Message) []byte {
	parts := []string{m.Text}
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if s, ok := e.(string); ok && k == "text" {
					parts = append(parts, s)
				} else {
					walk(e)
				}
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	var blocks any
	_ = json.Unmarshal([]byte(m.Blocks), &blocks)
	walk(blocks)
	return []byte(strings.Join(parts, " "))
}

var renderedRev = regexp.MustCompile("finding `([^`]+)` rev ([0-9]+)")

var slackForbidden = []string{"<!channel>", "<!here>", "<@U123>", "<https://evil|click>", "@channel"}

func TestConformanceBot(t *testing.T) {
	outputtest.Run(t, func(t *testing.T) outputtest.Target {
		p := newSlackPeer(t, token)
		n, err := New(botConfig(t, p.srv), nil)
		if err != nil {
			t.Fatal(err)
		}
		n.cfg.MinInterval = 0
		t.Cleanup(func() { n.Close() })
		return outputtest.Target{
			Output: n,
			Payloads: func() [][]byte {
				var out [][]byte
				for _, m := range p.srv.Posts() {
					out = append(out, append(rendered(m), " meta:"+m.Metadata...))
				}
				return out
			},
			Decode: func(b []byte) (string, int, error) {
				_, meta, _ := strings.Cut(string(b), " meta:")
				var md struct {
					EventType    string `json:"event_type"`
					EventPayload struct {
						FindingID string `json:"finding_id"`
						Revision  int    `json:"revision"`
					} `json:"event_payload"`
				}
				if err := json.Unmarshal([]byte(meta), &md); err != nil || md.EventType != MetadataEventType {
					return "", 0, fmt.Errorf("metadata %q: %v", meta, err)
				}
				return md.EventPayload.FindingID, md.EventPayload.Revision, nil
			},
			SetMode:    p.set,
			Secrets:    []string{token},
			Forbidden:  slackForbidden,
			LineBreaks: true,
		}
	})
}

func TestConformanceWebhook(t *testing.T) {
	const hookToken = "whsecretTOKEN0123456789"
	outputtest.Run(t, func(t *testing.T) outputtest.Target {
		p := newSlackPeer(t, hookToken)
		t.Setenv("AW_TEST_SLACK_HOOK", p.srv.WebhookURL())
		n, err := New(Config{Mode: ModeWebhook, WebhookURL: secret.Secret{Env: "AW_TEST_SLACK_HOOK"}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		n.cfg.MinInterval = 0
		t.Cleanup(func() { n.Close() })
		return outputtest.Target{
			Output: n,
			Payloads: func() [][]byte {
				var out [][]byte
				for _, m := range p.srv.Messages() {
					out = append(out, rendered(m))
				}
				return out
			},
			Decode: func(b []byte) (string, int, error) {
				m := renderedRev.FindStringSubmatch(string(b))
				if m == nil {
					return "", 0, fmt.Errorf("no finding id and revision in %q", b)
				}
				rev, err := strconv.Atoi(m[2])
				return m[1], rev, err
			},
			SetMode:    p.set,
			Secrets:    []string{hookToken, p.srv.WebhookURL()},
			Forbidden:  slackForbidden,
			LineBreaks: true,
		}
	})
}
