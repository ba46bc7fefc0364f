// Package slacktest owns a local stand-in for Slack's Web API and incoming
// webhooks for tests: it checks the bearer token, answers chat.postMessage,
// chat.update, conversations.history and conversations.replies with
// Slack's real response shapes (including {"ok":false,"error":"invalid_auth"},
// HTTP 429 with Retry-After and 5xx pages), keeps message metadata and
// returns it only when include_all_metadata is set, as Slack does, and
// records every accepted message. Hang holds requests open without an
// answer (a hung API), optionally after accepting the message.
package slacktest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ChannelID is the id the fake resolves every channel name to.
const ChannelID = "C0TEST"

// ChannelName is the name conversations.list gives ChannelID (beside a
// few other channels), as Slack lists names: without the leading '#'.
const ChannelName = "sec-alerts"

// otherChannels are listed by conversations.list before ChannelName; a
// page holds at most two channels (Slack may return fewer than limit), so
// a lookup that reads only the first page misses ChannelName.
var otherChannels = [][2]string{{"C0GENERAL", "general"}, {"C0RANDOM", "random"}, {"G0PRIVATE", "sec-private"}}

// Message is one accepted chat.postMessage, chat.update or webhook post.
type Message struct {
	Method   string // chat.postMessage, chat.update or webhook
	Channel  string
	TS       string
	ThreadTS string
	Text     string
	Blocks   string // the raw JSON of the blocks
	// Metadata is the raw JSON of the message metadata ("" when none).
	Metadata string
}

// Revisions returns the finding revisions ("id/revision") the message's
// metadata says it carries: one for a message of one alert, each of a
// message that carries several updates ("revisions").
func (m Message) Revisions() []string {
	type rev struct {
		FindingID string  `json:"finding_id"`
		Revision  float64 `json:"revision"`
	}
	var md struct {
		EventPayload struct {
			rev
			Revisions []rev `json:"revisions"`
		} `json:"event_payload"`
	}
	if m.Metadata == "" || json.Unmarshal([]byte(m.Metadata), &md) != nil {
		return nil
	}
	key := func(r rev) string { return r.FindingID + "/" + strconv.Itoa(int(r.Revision)) }
	if len(md.EventPayload.Revisions) > 0 {
		out := make([]string, len(md.EventPayload.Revisions))
		for i, r := range md.EventPayload.Revisions {
			out[i] = key(r)
		}
		return out
	}
	if md.EventPayload.FindingID == "" {
		return nil
	}
	return []string{key(md.EventPayload.rev)}
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
	// Hang, when set, is asked for every Web API request. A non-nil
	// release holds the request without an answer until release is
	// closed or the client gives up; with afterAccept a chat.postMessage
	// is accepted (recorded, visible in the history) before the hold, as
	// when Slack posts but the answer is lost.
	Hang func(method string) (release <-chan struct{}, afterAccept bool)

	mu       sync.Mutex
	lists    int
	lastTS   time.Time
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
		Text: r.PostForm.Get("text"), Blocks: r.PostForm.Get("blocks"), Metadata: r.PostForm.Get("metadata")}
	var release <-chan struct{}
	var afterAccept, accepted bool
	if s.Hang != nil {
		release, afterAccept = s.Hang(method)
	}
	if release != nil && afterAccept && method == "chat.postMessage" {
		if s.accept(w, &m, false) {
			accepted = true
		}
	}
	if release != nil {
		select {
		case <-release:
		case <-r.Context().Done():
			return // the client gave up: no answer
		}
	}
	switch method {
	case "chat.postMessage":
		if !accepted && !s.accept(w, &m, true) {
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "channel": ChannelID, "ts": m.TS,
			"message": map[string]any{"text": m.Text, "ts": m.TS}})
	case "conversations.history", "conversations.replies":
		s.history(w, r, method)
	case "conversations.list":
		s.list(w, r)
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

// accept validates and records a posted message, answering the error
// itself (when answer is set) if it is not valid.
func (s *Server) accept(w http.ResponseWriter, m *Message, answer bool) bool {
	fail := ""
	switch {
	case m.Channel == "":
		fail = "channel_not_found"
	case m.Blocks != "" && !json.Valid([]byte(m.Blocks)):
		fail = "invalid_blocks"
	case m.Metadata != "" && !validMetadata(m.Metadata):
		fail = "invalid_metadata_format"
	}
	if fail != "" {
		if answer {
			_, _ = w.Write([]byte(SlackError(fail)))
		}
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Slack's ts is the post time in microseconds, unique per channel.
	now := time.Now().Truncate(time.Microsecond)
	if !now.After(s.lastTS) {
		now = s.lastTS.Add(time.Microsecond)
	}
	s.lastTS = now
	s.seq++
	m.TS = fmt.Sprintf("%d.%06d", now.Unix(), now.Nanosecond()/1000)
	s.messages = append(s.messages, *m)
	return true
}

// validMetadata checks Slack's rules for the metadata argument: an
// object with a non-empty event_type and an object event_payload.
func validMetadata(raw string) bool {
	var md struct {
		EventType    string         `json:"event_type"`
		EventPayload map[string]any `json:"event_payload"`
	}
	return json.Unmarshal([]byte(raw), &md) == nil && md.EventType != "" && md.EventPayload != nil
}

// history answers conversations.history (the channel's top-level
// messages, newest first) and conversations.replies (a thread's parent
// and replies, oldest first), honouring oldest, latest, inclusive, limit
// and cursor, with metadata only when include_all_metadata is set.
// list answers conversations.list: the other channels, then ChannelName,
// paged by limit (default 100) and an opaque cursor.
func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.lists++
	s.mu.Unlock()
	f := r.PostForm
	all := append(slices.Clone(otherChannels), [2]string{ChannelID, ChannelName})
	limit, _ := strconv.Atoi(f.Get("limit"))
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	start := 0
	if c := f.Get("cursor"); c != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(c, "page:"))
		if err != nil || !strings.HasPrefix(c, "page:") {
			_, _ = w.Write([]byte(SlackError("invalid_cursor")))
			return
		}
		start = min(max(n, 0), len(all))
	}
	end := min(start+limit, start+2, len(all))
	chs := make([]map[string]any, 0, end-start)
	for _, c := range all[start:end] {
		chs = append(chs, map[string]any{"id": c[0], "name": c[1], "is_channel": c[0][0] == 'C', "is_private": c[0][0] == 'G'})
	}
	next := ""
	if end < len(all) {
		next = "page:" + strconv.Itoa(end)
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "channels": chs, "response_metadata": map[string]any{"next_cursor": next}})
}

// Lists returns how many conversations.list requests were answered.
func (s *Server) Lists() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lists
}

func (s *Server) history(w http.ResponseWriter, r *http.Request, method string) {
	f := r.PostForm
	channel := f.Get("channel")
	// Slack's history methods take a channel id only: a name (with or
	// without '#') is not found.
	if channel == "" || channel != ChannelID && !isChannelID(channel) {
		_, _ = w.Write([]byte(SlackError("channel_not_found")))
		return
	}
	thread := f.Get("ts")
	if method == "conversations.replies" && thread == "" {
		_, _ = w.Write([]byte(SlackError("thread_not_found")))
		return
	}
	ts := func(v string) float64 { x, _ := strconv.ParseFloat(v, 64); return x }
	oldest, latest := ts(f.Get("oldest")), ts(f.Get("latest"))
	inclusive := f.Get("inclusive") == "1" || f.Get("inclusive") == "true"
	limit, _ := strconv.Atoi(f.Get("limit"))
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	start, _ := strconv.Atoi(f.Get("cursor"))
	withMeta := f.Get("include_all_metadata") == "1" || f.Get("include_all_metadata") == "true"
	s.mu.Lock()
	var sel []Message
	for _, m := range s.messages {
		if m.Method != "chat.postMessage" || (m.Channel != channel && channel != ChannelID) {
			continue
		}
		if method == "conversations.history" && m.ThreadTS != "" {
			continue
		}
		if method == "conversations.replies" && m.TS != thread && m.ThreadTS != thread {
			continue
		}
		t := ts(m.TS)
		if oldest > 0 && (t < oldest || t == oldest && !inclusive) {
			continue
		}
		if latest > 0 && (t > latest || t == latest && !inclusive) {
			continue
		}
		sel = append(sel, m)
	}
	s.mu.Unlock()
	if method == "conversations.history" {
		slices.Reverse(sel)
	}
	if method == "conversations.replies" && len(sel) == 0 {
		_, _ = w.Write([]byte(SlackError("thread_not_found")))
		return
	}
	start = min(max(start, 0), len(sel))
	end := min(start+limit, len(sel))
	out := make([]map[string]any, 0, end-start)
	for _, m := range sel[start:end] {
		msg := map[string]any{"type": "message", "ts": m.TS, "text": m.Text}
		if m.ThreadTS != "" {
			msg["thread_ts"] = m.ThreadTS
		}
		if withMeta && m.Metadata != "" {
			msg["metadata"] = json.RawMessage(m.Metadata)
		}
		out = append(out, msg)
	}
	resp := map[string]any{"ok": true, "messages": out, "has_more": end < len(sel)}
	if end < len(sel) {
		resp["response_metadata"] = map[string]any{"next_cursor": strconv.Itoa(end)}
	}
	_ = json.NewEncoder(w).Encode(resp)
}

// Posts returns the accepted chat.postMessage messages.
func (s *Server) Posts() []Message {
	var out []Message
	for _, m := range s.Messages() {
		if m.Method == "chat.postMessage" {
			out = append(out, m)
		}
	}
	return out
}

func (s *Server) serveWebhook(w http.ResponseWriter, r *http.Request) {
	if !strings.HasSuffix(r.URL.Path, "/"+s.Token) {
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte("invalid_token"))
		return
	}
	raw, _ := io.ReadAll(r.Body)
	if s.Hang != nil {
		if release, _ := s.Hang("webhook"); release != nil {
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
	}
	var body struct {
		Text   string          `json:"text"`
		Blocks json.RawMessage `json:"blocks"`
	}
	if err := json.Unmarshal(raw, &body); err != nil || body.Text == "" {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte("invalid_payload"))
		return
	}
	s.mu.Lock()
	s.messages = append(s.messages, Message{Method: "webhook", Text: body.Text, Blocks: string(body.Blocks)})
	s.mu.Unlock()
	_, _ = w.Write([]byte("ok"))
}

// isChannelID reports whether s has the form of a Slack conversation id
// (C…, G… or D… followed by upper-case letters and digits).
func isChannelID(s string) bool {
	if len(s) < 3 || !strings.ContainsRune("CGD", rune(s[0])) {
		return false
	}
	for _, r := range s[1:] {
		if (r < 'A' || r > 'Z') && (r < '0' || r > '9') {
			return false
		}
	}
	return true
}
