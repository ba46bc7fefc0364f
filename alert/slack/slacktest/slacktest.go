// Package slacktest owns a local stand-in for Slack's Web API and incoming
// webhooks for tests: it checks the bearer token, answers chat.postMessage
// and chat.update with Slack's real response shapes (including
// {"ok":false,"error":"invalid_auth"}, HTTP 429 with Retry-After and 5xx
// pages), and records every accepted message.
package slacktest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
)

// Message is one accepted chat.postMessage, chat.update or webhook post.
type Message struct {
	Method   string // chat.postMessage, chat.update or webhook
	Channel  string
	TS       string
	ThreadTS string
	Text     string
	Blocks   string // the raw JSON of the blocks
}

// Failure is an injected answer: a status code, a body and headers.
type Failure struct {
	Status  int
	Body    string
	Headers map[string]string
}

// Server is the fake Slack.
type Server struct {
	*httptest.Server
	Token string
	// Fail, when set, is asked before a request is accepted; a non-nil
	// answer is sent instead. n counts requests from 1; text is the
	// message's text fallback.
	Fail func(method string, n int, text string) *Failure

	mu       sync.Mutex
	n        int
	seq      int
	messages []Message
	requests int
}

// New starts a fake Slack on loopback. Its Web API base URL is URL()+"/api/".
func New(token string) *Server {
	s := &Server{Token: token}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// APIURL is the base URL to configure as api_url.
func (s *Server) APIURL() string { return s.URL + "/api/" }

// WebhookURL is the incoming-webhook URL.
func (s *Server) WebhookURL() string { return s.URL + "/services/T000/B000/" + s.Token }

// Messages returns the accepted messages in order.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.messages...)
}

// Requests returns how many requests arrived.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// SlackError is the body of a Web API error.
func SlackError(name string) string { return fmt.Sprintf(`{"ok":false,"error":%q}`, name) }

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests++
	s.n++
	n := s.n
	s.mu.Unlock()
	method := strings.TrimPrefix(r.URL.Path, "/api/")
	webhook := strings.HasPrefix(r.URL.Path, "/services/")
	if webhook {
		method = "webhook"
	}
	if s.Fail != nil {
		text := ""
		if !webhook {
			_ = r.ParseForm()
			text = r.PostForm.Get("text")
		}
		if f := s.Fail(method, n, text); f != nil {
			for k, v := range f.Headers {
				w.Header().Set(k, v)
			}
			w.WriteHeader(f.Status)
			_, _ = w.Write([]byte(f.Body))
			return
		}
	}
	if r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if webhook {
		s.serveWebhook(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if err := r.ParseForm(); err != nil {
		_, _ = w.Write([]byte(SlackError("invalid_form_data")))
		return
	}
	// Slack takes the token as a bearer header or, as slack-go sends it
	// for chat.* methods, as the form field "token".
	tok, hasBearer := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !hasBearer {
		tok = r.PostForm.Get("token")
	}
	switch {
	case tok == "":
		_, _ = w.Write([]byte(SlackError("not_authed")))
		return
	case tok != s.Token:
		_, _ = w.Write([]byte(SlackError("invalid_auth")))
		return
	}
	m := Message{Method: method, Channel: r.PostForm.Get("channel"), ThreadTS: r.PostForm.Get("thread_ts"),
		Text: r.PostForm.Get("text"), Blocks: r.PostForm.Get("blocks")}
	switch method {
	case "chat.postMessage":
		if m.Channel == "" {
			_, _ = w.Write([]byte(SlackError("channel_not_found")))
			return
		}
		if m.Blocks != "" && !json.Valid([]byte(m.Blocks)) {
			_, _ = w.Write([]byte(SlackError("invalid_blocks")))
			return
		}
		s.mu.Lock()
		s.seq++
		m.TS = fmt.Sprintf("1700000000.%06d", s.seq)
		s.messages = append(s.messages, m)
		s.mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "channel": "C0TEST", "ts": m.TS,
			"message": map[string]any{"text": m.Text, "ts": m.TS}})
	case "chat.update":
		m.TS = r.PostForm.Get("ts")
		s.mu.Lock()
		s.messages = append(s.messages, m)
		s.mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "channel": m.Channel, "ts": m.TS, "text": m.Text})
	default:
		_, _ = w.Write([]byte(SlackError("unknown_method")))
	}
}

func (s *Server) serveWebhook(w http.ResponseWriter, r *http.Request) {
	if !strings.HasSuffix(r.URL.Path, "/"+s.Token) {
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte("invalid_token"))
		return
	}
	var body struct {
		Text   string          `json:"text"`
		Blocks json.RawMessage `json:"blocks"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Text == "" {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte("invalid_payload"))
		return
	}
	s.mu.Lock()
	s.messages = append(s.messages, Message{Method: "webhook", Text: body.Text, Blocks: string(body.Blocks)})
	s.mu.Unlock()
	_, _ = w.Write([]byte("ok"))
}
