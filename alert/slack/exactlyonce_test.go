package slack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"auditwatch/alert/notify"
	"auditwatch/alert/notify/notifytest"
	"auditwatch/alert/slack/slacktest"
)

// hangOnce makes the fake hold the first request of method without an
// answer (accepting the message first when accept is set); later
// requests are answered. The returned func releases the held request.
func hangOnce(srv *slacktest.Server, method string, accept bool) func() {
	var mu sync.Mutex
	held := false
	release := make(chan struct{})
	srv.Hang = func(m string) (<-chan struct{}, bool) {
		mu.Lock()
		defer mu.Unlock()
		if m != method || held {
			return nil, false
		}
		held = true
		return release, accept
	}
	var once sync.Once
	return func() { once.Do(func() { close(release) }) }
}

// attempt is one delivery attempt with a short deadline, as the worker's
// attempt_timeout gives it.
func attempt(n *Notifier, a notify.Alert) error {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	return n.Notify(ctx, a)
}

// TestExactlyOnceAfterAmbiguousTimeout: Slack accepts a message but the
// answer never comes (the attempt times out); the retry finds the message
// by its metadata in conversations.history and does not post again. The
// same holds for a thread reply (conversations.replies). When the hung
// request was not accepted, the retry posts it, once.
func TestExactlyOnceAfterAmbiguousTimeout(t *testing.T) {
	for _, accepted := range []bool{true, false} {
		srv := slacktest.New(token)
		n := newBot(t, srv, notify.RealClock{})
		n.cfg.MinInterval = 0
		release := hangOnce(srv, "chat.postMessage", accepted)
		a := notifytest.Alert()
		if err := attempt(n, a); err == nil || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("accepted=%v: hung attempt = %v, want a timeout", accepted, err)
		}
		if err := attempt(n, a); err != nil {
			t.Fatalf("accepted=%v: retry: %v", accepted, err)
		}
		if err := attempt(n, a); err != nil { // a redelivery after the worker lost its record
			t.Fatalf("accepted=%v: redelivery: %v", accepted, err)
		}
		posts := srv.Posts()
		if len(posts) != 1 {
			t.Fatalf("accepted=%v: %d posts of one finding revision, want 1", accepted, len(posts))
		}
		// The channel is configured by name and nothing was posted before
		// the first attempt: the name was resolved (conversations.list,
		// two pages) before it, once, so the history could be searched.
		if id, ok, _ := n.threads.Thread(channelKey); !ok || id != slacktest.ChannelID || srv.Lists() != 2 {
			t.Errorf("accepted=%v: channel resolved to %q (%v) with %d conversations.list calls, want %s with 2 (two pages)",
				accepted, id, ok, srv.Lists(), slacktest.ChannelID)
		}
		var md slack.SlackMetadata
		if err := json.Unmarshal([]byte(posts[0].Metadata), &md); err != nil || md.EventType != MetadataEventType ||
			md.EventPayload["finding_id"] != a.Finding.ID {
			t.Errorf("message metadata = %s (%v)", posts[0].Metadata, err)
		}
		// The thread is known: a reply whose answer is lost is found in the thread.
		release()
		release = hangOnce(srv, "chat.postMessage", true)
		up := a
		up.Update, up.Repeat, up.GroupCount = true, 2, 5
		up.Finding.ID, up.Finding.Revision = "later", 1
		if err := attempt(n, up); err == nil {
			t.Fatalf("accepted=%v: hung reply succeeded", accepted)
		}
		if err := attempt(n, up); err != nil {
			t.Fatalf("accepted=%v: reply retry: %v", accepted, err)
		}
		replies := 0
		for _, m := range srv.Posts() {
			if m.ThreadTS == posts[0].TS {
				replies++
			}
		}
		if replies != 1 {
			t.Errorf("accepted=%v: %d replies of one revision, want 1", accepted, replies)
		}
		release()
		n.Close()
		srv.Close()
	}
}

// TestFakeHistoryIsRealistic checks the fake against slack-go's own
// client: metadata only with include_all_metadata, newest first,
// pagination by cursor, replies only through conversations.replies.
func TestFakeHistoryIsRealistic(t *testing.T) {
	srv := slacktest.New(token)
	defer srv.Close()
	api := slack.New(token, slack.OptionAPIURL(srv.APIURL()))
	ctx := context.Background()
	var parent string
	for i := range 5 {
		_, ts, err := api.PostMessageContext(ctx, "#sec", slack.MsgOptionText("m"+string(rune('0'+i)), false),
			slack.MsgOptionMetadata(slack.SlackMetadata{EventType: "e", EventPayload: map[string]any{"i": i}}))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			parent = ts
		}
	}
	if _, _, err := api.PostMessageContext(ctx, "#sec", slack.MsgOptionText("reply", false), slack.MsgOptionTS(parent)); err != nil {
		t.Fatal(err)
	}
	resp, err := api.GetConversationHistoryContext(ctx, &slack.GetConversationHistoryParameters{ChannelID: slacktest.ChannelID, Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Messages) != 2 || resp.Messages[0].Text != "m4" || !resp.HasMore || resp.Messages[0].Metadata.EventType != "" {
		t.Errorf("history page 1 = %+v (more %v): want m4, m3, more, no metadata", resp.Messages, resp.HasMore)
	}
	var all []string
	cursor := ""
	for {
		resp, err := api.GetConversationHistoryContext(ctx, &slack.GetConversationHistoryParameters{ChannelID: slacktest.ChannelID,
			Limit: 2, Cursor: cursor, IncludeAllMetadata: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range resp.Messages {
			if m.Metadata.EventType != "e" {
				t.Errorf("%s: metadata missing with include_all_metadata", m.Text)
			}
			all = append(all, m.Text)
		}
		if cursor = resp.ResponseMetaData.NextCursor; cursor == "" {
			break
		}
	}
	if strings.Join(all, ",") != "m4,m3,m2,m1,m0" {
		t.Errorf("history = %v, want the five top-level messages newest first (no thread reply)", all)
	}
	msgs, _, _, err := api.GetConversationRepliesContext(ctx, &slack.GetConversationRepliesParameters{ChannelID: slacktest.ChannelID, Timestamp: parent})
	if err != nil || len(msgs) != 2 || msgs[1].Text != "reply" {
		t.Errorf("replies = %+v, %v", msgs, err)
	}
	if _, _, err := api.PostMessageContext(ctx, "#sec", slack.MsgOptionText("x", false),
		slack.MsgOptionMetadata(slack.SlackMetadata{EventType: ""})); err == nil || !strings.Contains(err.Error(), "invalid_metadata") {
		t.Errorf("metadata without event_type: %v, want invalid_metadata_format", err)
	}
}

// TestLookupFailureStillPosts: when the history cannot be read (Slack
// answers channel_not_found for a channel name), a retried alert is
// posted rather than dead-lettered.
func TestLookupFailureStillPosts(t *testing.T) {
	srv := slacktest.New(token)
	defer srv.Close()
	n := newBot(t, srv, notify.RealClock{})
	defer n.Close()
	n.cfg.MinInterval = 0
	srv.Fail = func(method string, _ int, _ string) *slacktest.Failure {
		if method == "conversations.history" {
			return &slacktest.Failure{Status: 200, Body: slacktest.SlackError("channel_not_found")}
		}
		return nil
	}
	release := hangOnce(srv, "chat.postMessage", false)
	defer release()
	a := notifytest.Alert()
	if err := attempt(n, a); err == nil {
		t.Fatal("hung attempt succeeded")
	}
	if err := attempt(n, a); err != nil {
		t.Fatalf("retry with an unreadable history: %v, want a post", err)
	}
	if len(srv.Posts()) != 1 {
		t.Errorf("%d posts, want 1", len(srv.Posts()))
	}
}

// TestUnknownChannelNamePostsByName: a channel name that conversations.list
// does not show (the bot is not in it, or lacks channels:read) is looked
// for once; posts go ahead by name (and the id Slack answers a post with
// is what later lookups use).
func TestUnknownChannelNamePostsByName(t *testing.T) {
	srv := slacktest.New(token)
	defer srv.Close()
	cfg := botConfig(t, srv)
	cfg.Channel = "#not-listed"
	n, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	for i := range 3 {
		a := notifytest.Alert()
		a.Finding.ID = fmt.Sprintf("f%d", i)
		a.Finding.DedupeKey = a.Finding.ID
		if err := n.Notify(context.Background(), a); err != nil {
			t.Fatal(err)
		}
	}
	if got := len(srv.Posts()); got != 3 {
		t.Errorf("%d posts, want 3", got)
	}
	if srv.Lists() != 2 {
		t.Errorf("%d conversations.list calls, want the 2 pages once", srv.Lists())
	}
}

// TestBatchExactlyOnce: queued updates of one incident go out as one
// thread reply whose metadata lists each revision. When that post's answer
// is lost (accepted, then the attempt times out), the retry — even with a
// further update joined to the batch — finds the revisions already posted
// and posts only the new one; a single-alert redelivery of a batched
// revision is found too. Every revision is in exactly one message.
func TestBatchExactlyOnce(t *testing.T) {
	srv, n, first := startedThread(t)
	upd := func(i int) notify.Alert {
		a := first
		a.Update, a.Repeat, a.GroupCount = true, i+1, 10*(i+1)
		a.Finding.ID, a.Finding.Revision = fmt.Sprintf("upd-%d", i), i
		return a
	}
	release := hangOnce(srv, "chat.postMessage", true)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	err := n.NotifyBatch(ctx, []notify.Alert{upd(1), upd(2), upd(3)})
	cancel()
	if err == nil {
		t.Fatal("hung batch post succeeded")
	}
	release()
	if err := n.NotifyBatch(context.Background(), []notify.Alert{upd(1), upd(2), upd(3), upd(4)}); err != nil {
		t.Fatalf("batch retry: %v", err)
	}
	if err := attempt(n, upd(2)); err != nil { // a redelivery of one batched revision
		t.Fatalf("redelivery: %v", err)
	}
	posts := srv.Posts()
	count := map[string]int{}
	replies := 0
	for _, m := range posts {
		var md slack.SlackMetadata
		if err := json.Unmarshal([]byte(m.Metadata), &md); err != nil {
			t.Fatalf("metadata %s: %v", m.Metadata, err)
		}
		for _, r := range Revisions(md, "") {
			count[r]++
		}
		if m.ThreadTS == posts[0].TS {
			replies++
		}
	}
	for i := 1; i <= 4; i++ {
		if k := fmt.Sprintf("upd-%d/%d", i, i); count[k] != 1 {
			t.Errorf("revision %s in %d messages, want 1", k, count[k])
		}
	}
	if replies != 2 {
		t.Errorf("%d thread replies, want 2 (the batch of three, then the fourth alone)", replies)
	}
	if len(posts) != 3 || !strings.Contains(posts[1].Text, "3 updates") {
		t.Errorf("%d posts; the batched reply reads %q", len(posts), posts[min(1, len(posts)-1)].Text)
	}
}

// TestExactlyOnceAfterTheThreadMoved: a batch of updates is posted into
// the incident's thread, and the process dies after recording only some of
// them as delivered; before the rest are delivered again, a new top-level
// message of the same incident moves its thread. The redelivered revisions
// must be found where their attempt was made (the old thread), not looked
// for in the new one and posted twice — one at a time and in a batch.
func TestExactlyOnceAfterTheThreadMoved(t *testing.T) {
	for _, batched := range []bool{false, true} {
		srv, n, first := startedThread(t)
		upd := func(i int) notify.Alert { return update(first, fmt.Sprintf("upd-%d", i), i+1) }
		if err := n.NotifyBatch(context.Background(), []notify.Alert{upd(1), upd(2)}); err != nil {
			t.Fatal(err)
		}
		oldThread, _, _ := n.threads.Thread(first.ThreadKey())
		again := first
		again.Finding.ID = "new-top-level"
		if err := attempt(n, again); err != nil {
			t.Fatal(err)
		}
		if ts, _, _ := n.threads.Thread(first.ThreadKey()); ts == oldThread {
			t.Fatalf("batched=%v: the thread did not move (%s)", batched, ts)
		}
		// upd-2 was posted but not recorded as delivered: delivered again.
		var err error
		if batched {
			err = n.NotifyBatch(context.Background(), []notify.Alert{upd(2), upd(3)})
		} else {
			err = attempt(n, upd(2))
		}
		if err != nil {
			t.Fatalf("batched=%v: redelivery: %v", batched, err)
		}
		count := map[string]int{}
		for _, m := range srv.Posts() {
			var md slack.SlackMetadata
			if err := json.Unmarshal([]byte(m.Metadata), &md); err != nil {
				t.Fatalf("metadata %s: %v", m.Metadata, err)
			}
			for _, r := range Revisions(md, "") {
				count[r]++
			}
		}
		if count["upd-2/1"] != 1 {
			t.Errorf("batched=%v: upd-2/1 in %d messages, want 1", batched, count["upd-2/1"])
		}
		if batched && count["upd-3/1"] != 1 {
			t.Errorf("batched=%v: upd-3/1 in %d messages, want 1", batched, count["upd-3/1"])
		}
		// The attempt of a revision posted anew records its new place.
		if batched {
			newThread, _, _ := n.threads.Thread(first.ThreadKey())
			if _, where, ok, _ := n.threads.Attempt("upd-3\x001"); !ok || where != newThread {
				t.Errorf("upd-3's attempt recorded at %q (%v), want the new thread %s", where, ok, newThread)
			}
		}
	}
}

// TestUnknownAttemptPlaceSearchesTheCurrentThread: a journal record that
// does not say where its attempt went (written before places were kept)
// is looked up in the current thread, as before.
func TestUnknownAttemptPlaceSearchesTheCurrentThread(t *testing.T) {
	srv, n, first := startedThread(t)
	up := update(first, "legacy", 1)
	if err := attempt(n, up); err != nil {
		t.Fatal(err)
	}
	at, _, _, _ := n.threads.Attempt("legacy\x001")
	if err := n.threads.MarkAttempt("legacy\x001", at, UnknownPlace); err != nil {
		t.Fatal(err)
	}
	if err := attempt(n, up); err != nil {
		t.Fatal(err)
	}
	if got := len(srv.Posts()); got != 2 {
		t.Errorf("%d posts, want 2 (the legacy attempt's reply found in the thread)", got)
	}
}

// TestBatchRevisionHandedTwicePostedOnce: a batch naming one revision
// twice posts it once.
func TestBatchRevisionHandedTwicePostedOnce(t *testing.T) {
	srv, n, first := startedThread(t)
	up := update(first, "twice", 1)
	other := up
	other.Finding.ID = "once"
	if err := n.NotifyBatch(context.Background(), []notify.Alert{up, other, up}); err != nil {
		t.Fatal(err)
	}
	posts := srv.Posts()
	if len(posts) != 2 {
		t.Fatalf("%d posts, want 2", len(posts))
	}
	if got := posts[1].Revisions(); len(got) != 2 {
		t.Errorf("batch message carries %v, want each revision once", got)
	}
}

// startedThread starts a fake Slack and a bot-mode output without a rate
// limit, and posts a first alert, which starts its incident's thread.
func startedThread(t *testing.T) (*slacktest.Server, *Notifier, notify.Alert) {
	t.Helper()
	srv := slacktest.New(token)
	t.Cleanup(srv.Close)
	n := newBot(t, srv, notify.RealClock{})
	t.Cleanup(func() { _ = n.Close() })
	n.cfg.MinInterval = 0
	first := notifytest.Alert()
	if err := attempt(n, first); err != nil {
		t.Fatal(err)
	}
	return srv, n, first
}

// update is repeat number repeat of first's incident, as revision 1 of the
// finding id.
func update(first notify.Alert, id string, repeat int) notify.Alert {
	a := first
	a.Update, a.Repeat, a.GroupCount = true, repeat, 10*repeat
	a.Finding.ID, a.Finding.Revision = id, 1
	return a
}
