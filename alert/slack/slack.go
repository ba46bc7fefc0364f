// Package slack owns the Slack output: Block Kit alerts posted with a bot
// token (chat.postMessage, one thread per incident with repeats as thread
// replies and the first message edited with the running count) or through
// an incoming webhook, with every attacker-controlled value escaped (see
// Escape) and a per-channel rate limit. Slack's errors are mapped onto
// alert/notify's classification: 429 and Slack's ratelimited/internal
// errors are retried (honouring Retry-After), invalid_auth and the like
// are permanent.
//
// Bot mode posts each finding revision at most once, across crashes and
// timeouts: every message carries Slack message metadata (event type
// "auditwatch_finding" with the output, finding id and revision); before a
// post the attempt is recorded in the journal with where it goes (the
// thread, or top level), after it the message ts; and when an earlier
// attempt of the same revision exists (a timeout, a crash between the post
// and its record), the place of that attempt (conversations.history, or
// conversations.replies for a thread reply, with include_all_metadata) is
// searched for that metadata before posting again — where the attempt
// went, even if the incident's thread has moved since. The channel should be configured as a channel id (C…): Slack's
// history methods take ids only. Webhook mode cannot look messages up and
// is at-least-once; every message names the finding id and revision.
package slack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/slack-go/slack"

	"auditwatch/alert/notify"
	"auditwatch/internal/redact"
)

// Journal persists, per output, the thread timestamp of each incident and,
// for each finding revision, when its post was first attempted and where:
// the thread ts it replied in, "" for a top-level message. An incident's
// thread can move (a new top-level message of the same incident) between
// an ambiguous attempt and its retry, so the retry looks where the attempt
// went, not where the thread is now. A journal that does not know where
// (a record written before places were kept) answers UnknownPlace.
type Journal interface {
	Thread(key string) (ts string, ok bool, err error)
	SetThread(key, ts string) error
	Attempt(key string) (at time.Time, where string, ok bool, err error)
	MarkAttempt(key string, at time.Time, where string) error
}

// UnknownPlace is the place of an attempt whose journal record does not
// say where it was made; the current thread is searched then (a Slack ts
// is digits and a dot, so it never reads "?").
const UnknownPlace = "?"

// attemptPlace is where to look for the message of an earlier attempt
// recorded at where, when the post would now go to threadTS.
func attemptPlace(where, threadTS string) string {
	if where == UnknownPlace {
		return threadTS
	}
	return where
}

// MetadataEventType is the event_type of the message metadata every bot
// message carries.
const MetadataEventType = "auditwatch_finding"

// channelKey is the journal key of the channel id Slack resolved the
// configured channel to.
const channelKey = "\x00channel"

// Option changes how New builds the output.
type Option func(*Notifier)

// WithClock sets the clock of the rate limiter.
func WithClock(c notify.Clock) Option { return func(n *Notifier) { n.clock = c } }

// WithJournal sets where thread timestamps and post attempts are kept
// (default: memory, which keeps exactly-once only within one process).
func WithJournal(j Journal) Option { return func(n *Notifier) { n.threads = j } }

// WithOutputName sets the output name carried in message metadata, so two
// outputs posting to one channel do not take each other's messages for
// their own.
func WithOutputName(name string) Option { return func(n *Notifier) { n.name = name } }

// Notifier posts alerts to Slack.
type Notifier struct {
	cfg     Config
	log     *slog.Logger
	clock   notify.Clock
	http    *http.Client
	api     *slack.Client
	webhook string
	threads Journal
	name    string

	rmu        sync.Mutex
	unresolved bool                 // the channel name could not be resolved (warned once)
	next       map[string]time.Time // per rate key: theoretical arrival time of the next message (GCRA)
}

// New builds the output, reading its token or webhook URL now.
func New(cfg Config, logger *slog.Logger, opts ...Option) (*Notifier, error) {
	cfg.SetDefaults()
	if err := cfg.Validate("slack"); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	n := &Notifier{cfg: cfg, log: logger, clock: notify.RealClock{}, http: &http.Client{Timeout: 30 * time.Second},
		threads: &memThreads{m: map[string]string{}, at: map[string]memAttempt{}}, next: map[string]time.Time{}, name: "slack"}
	for _, o := range opts {
		o(n)
	}
	switch cfg.Mode {
	case ModeBot:
		tok, err := cfg.Token.Value()
		if err != nil {
			return nil, fmt.Errorf("slack token %s: %w", cfg.Token, err)
		}
		n.api = slack.New(tok, slack.OptionAPIURL(cfg.APIURL), slack.OptionHTTPClient(n.http))
		redact.Register(tok)
	case ModeWebhook:
		u, err := cfg.WebhookURL.Value()
		if err != nil {
			return nil, fmt.Errorf("slack webhook_url %s: %w", cfg.WebhookURL, err)
		}
		n.webhook = u
		redact.Register(u)
		redact.Register(redact.URLParts(u)...)
	}
	return n, nil
}

// Notify posts a (one attempt; the output's worker retries). In bot mode
// a finding revision whose post was attempted before is first looked up
// in the channel, and not posted again when found. The token and the
// webhook URL never appear in its errors.
func (n *Notifier) Notify(ctx context.Context, a notify.Alert) error {
	return redact.Error(n.notifyOnce(ctx, a))
}

func (n *Notifier) notifyOnce(ctx context.Context, a notify.Alert) error {
	if n.cfg.Mode == ModeWebhook {
		return n.postWebhook(ctx, a)
	}
	key := a.ThreadKey()
	ts, haveThread, err := n.threads.Thread(key)
	if err != nil {
		return notify.Retryable(notify.ReasonUnavailable, 0, fmt.Errorf("slack journal: %w", err))
	}
	// A repeat within the group window, or a later revision of an incident
	// whose thread exists (e.g. after a restart emptied the group table),
	// goes into the thread.
	reply := haveThread && (a.Update || a.Finding.Revision > 0)
	threadTS := ""
	if reply {
		threadTS = ts
	}
	// The history lookup after an ambiguous failure needs the channel id:
	// a configured name is resolved before the first post.
	if err := n.resolveChannel(ctx); err != nil {
		return err
	}
	rev := a.Finding.ID + "\x00" + strconv.Itoa(a.Finding.Revision)
	at, where, attempted, err := n.threads.Attempt(rev)
	if err != nil {
		return notify.Retryable(notify.ReasonUnavailable, 0, fmt.Errorf("slack journal: %w", err))
	}
	var channel, newTS string
	if attempted {
		// An earlier attempt may have posted: look where it was made
		// before posting again.
		channel, newTS, err = n.lookup(ctx, a, attemptPlace(where, threadTS), at)
		switch {
		case err != nil && notify.Classify(err).Retry:
			return err
		case err != nil:
			// The history cannot be read (a channel name instead of an
			// id, a missing history scope): post, at the risk of a repeat,
			// rather than dead-letter the alert.
			n.log.Warn("slack message lookup failed; posting without it (configure the channel id and the history scope for exactly-once)",
				"finding", a.Finding.ID, "err", notify.SanitizeLine(err.Error(), 200))
			newTS = ""
		}
		if newTS != "" {
			n.log.Info("slack message of an earlier attempt found; not posted again", "finding", a.Finding.ID, "revision", a.Finding.Revision)
		}
	}
	if newTS == "" && (!attempted || where != threadTS) {
		// First attempt, or the post now goes elsewhere than the earlier
		// attempt (not found there): record where before posting.
		if err := n.threads.MarkAttempt(rev, n.clock.Now(), threadTS); err != nil {
			return notify.Retryable(notify.ReasonUnavailable, 0, fmt.Errorf("slack journal: %w", err))
		}
	}
	if newTS == "" {
		if channel, newTS, err = n.post(ctx, render(a, n.cfg.MaxFieldChars), n.metadata(a), threadTS); err != nil {
			return err
		}
	}
	if !reply {
		if err := n.threads.SetThread(key, newTS); err != nil {
			// The message is posted; failing now makes the worker retry,
			// and the retry finds the message by its metadata.
			return notify.Retryable(notify.ReasonUnavailable, 0, fmt.Errorf("slack journal: thread of a posted message: %w", err))
		}
		return nil
	}
	n.updateParent(ctx, channel, ts, a)
	return nil
}

// post posts m with its metadata md at the channel's post rate, as a reply
// in the thread threadTS when set, and records the channel id Slack
// answers with (for the history lookups).
func (n *Notifier) post(ctx context.Context, m message, md slack.SlackMetadata, threadTS string) (channel, ts string, err error) {
	opts := []slack.MsgOption{slack.MsgOptionBlocks(m.Blocks...), slack.MsgOptionText(m.Text, false),
		slack.MsgOptionDisableLinkUnfurl(), slack.MsgOptionDisableMediaUnfurl(), slack.MsgOptionMetadata(md)}
	if threadTS != "" {
		opts = append(opts, slack.MsgOptionTS(threadTS))
	}
	if err := n.wait(ctx, postKey(n.cfg.Channel)); err != nil {
		return "", "", err
	}
	channel, ts, err = n.api.PostMessageContext(ctx, n.cfg.Channel, opts...)
	if err != nil {
		return "", "", classify("chat.postMessage", err)
	}
	if channel != "" && channel != n.cfg.Channel {
		if err := n.threads.SetThread(channelKey, channel); err != nil {
			n.log.Warn("slack channel id not recorded", "err", err)
		}
	}
	return channel, ts, nil
}

// updateParent edits the thread's first message (channel, ts) to the
// running count of a's incident (update_parent). Best effort: the reply is
// posted, and failing here must not make the worker retry it.
func (n *Notifier) updateParent(ctx context.Context, channel, ts string, a notify.Alert) {
	if !*n.cfg.UpdateParent || channel == "" {
		return
	}
	pm := renderParentUpdate(a, n.cfg.MaxFieldChars)
	if err := n.wait(ctx, otherKey(n.cfg.Channel)); err == nil {
		if _, _, _, err := n.api.UpdateMessageContext(ctx, channel, ts, slack.MsgOptionBlocks(pm.Blocks...),
			slack.MsgOptionText(pm.Text, false)); err != nil {
			n.log.Warn("slack parent count not updated", "err", notify.SanitizeLine(err.Error(), 200))
		}
	}
}

// listPages bounds the conversations.list pages one resolution reads.
const listPages = 50

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

// resolveChannel records the id of a channel configured by name
// (conversations.list, public and private channels), once: the journal
// keeps it across restarts. A retryable failure is returned (nothing is
// posted before the name is resolved); a permanent one (no
// channels:read/groups:read scope, no such channel among the bot's) is
// logged once and the post goes ahead by name, at the risk of a repeat
// after an ambiguous failure.
func (n *Notifier) resolveChannel(ctx context.Context) error {
	if isChannelID(n.cfg.Channel) {
		return nil
	}
	if _, ok, err := n.threads.Thread(channelKey); err != nil {
		return notify.Retryable(notify.ReasonUnavailable, 0, fmt.Errorf("slack journal: %w", err))
	} else if ok {
		return nil
	}
	n.rmu.Lock()
	gaveUp := n.unresolved
	n.rmu.Unlock()
	if gaveUp {
		return nil
	}
	name := strings.TrimPrefix(n.cfg.Channel, "#")
	cursor := ""
	var err error
	for range listPages {
		if err = n.wait(ctx, otherKey(n.cfg.Channel)); err != nil {
			return err
		}
		var chs []slack.Channel
		chs, cursor, err = n.api.GetConversationsContext(ctx, &slack.GetConversationsParameters{
			Cursor: cursor, Limit: 1000, ExcludeArchived: true, Types: []string{"public_channel", "private_channel"}})
		if err != nil {
			err = classify("conversations.list", err)
			if notify.Classify(err).Retry {
				return err
			}
			break
		}
		for _, c := range chs {
			if c.Name == name {
				if err := n.threads.SetThread(channelKey, c.ID); err != nil {
					return notify.Retryable(notify.ReasonUnavailable, 0, fmt.Errorf("slack journal: channel id: %w", err))
				}
				return nil
			}
		}
		if cursor == "" {
			err = fmt.Errorf("no channel named %q among the bot's conversations", name)
			break
		}
	}
	n.rmu.Lock()
	n.unresolved = true
	n.rmu.Unlock()
	n.log.Warn("slack channel name not resolved to an id; posting by name (a post whose answer is lost may be repeated: configure the channel id, or give the bot channels:read)",
		"channel", notify.SanitizeLine(n.cfg.Channel, 100), "err", notify.SanitizeLine(fmt.Sprint(err), 200))
	return nil
}

// metadata is the message metadata that identifies a's finding revision.
func (n *Notifier) metadata(a notify.Alert) slack.SlackMetadata {
	return slack.SlackMetadata{EventType: MetadataEventType, EventPayload: map[string]any{
		"output": n.name, "finding_id": a.Finding.ID, "revision": a.Finding.Revision}}
}

// batchMetadata identifies every finding revision of a batched message:
// the first as in metadata, all of them in "revisions".
func (n *Notifier) batchMetadata(as []notify.Alert) slack.SlackMetadata {
	md := n.metadata(as[0])
	revs := make([]map[string]any, len(as))
	for i, a := range as {
		revs[i] = map[string]any{"finding_id": a.Finding.ID, "revision": a.Finding.Revision}
	}
	md.EventPayload["revisions"] = revs
	return md
}

// Revisions returns the finding revisions ("id/revision") a message's
// metadata says it carries, for output (every output when empty): one
// for a message of one alert, each of a batched message's.
func Revisions(md slack.SlackMetadata, output string) []string {
	if md.EventType != MetadataEventType {
		return nil
	}
	p := md.EventPayload
	if output != "" && fmt.Sprint(p["output"]) != output {
		return nil
	}
	if list, ok := p["revisions"].([]any); ok {
		out := make([]string, 0, len(list))
		for _, r := range list {
			if m, ok := r.(map[string]any); ok {
				out = append(out, fmt.Sprint(m["finding_id"])+"/"+fmt.Sprint(m["revision"]))
			}
		}
		return out
	}
	if list, ok := p["revisions"].([]map[string]any); ok {
		out := make([]string, 0, len(list))
		for _, m := range list {
			out = append(out, fmt.Sprint(m["finding_id"])+"/"+fmt.Sprint(m["revision"]))
		}
		return out
	}
	return []string{fmt.Sprint(p["finding_id"]) + "/" + fmt.Sprint(p["revision"])}
}

// revisionKey is the form Revisions returns for a.
func revisionKey(a notify.Alert) string {
	return a.Finding.ID + "/" + strconv.Itoa(a.Finding.Revision)
}

// lookupPages bounds the history pages one lookup reads.
const lookupPages = 20

// lookup searches the channel (or the thread, for a reply) for a message
// carrying a's metadata posted since shortly before the first attempt at.
// It returns the channel and ts of the message, ts empty when there is
// none.
func (n *Notifier) lookup(ctx context.Context, a notify.Alert, threadTS string, at time.Time) (string, string, error) {
	want := revisionKey(a)
	var ts string
	channel, err := n.scan(ctx, threadTS, at, a.Finding.ID, func(m slack.Message) bool {
		if slices.Contains(Revisions(m.Metadata, n.name), want) {
			ts = m.Timestamp
			return true
		}
		return false
	})
	return channel, ts, err
}

// scan reads the channel's history (or the thread's replies) since
// shortly before at, page by page, until visit returns true or the
// history ends. what names the alert in the log.
func (n *Notifier) scan(ctx context.Context, threadTS string, at time.Time, what string, visit func(slack.Message) bool) (string, error) {
	channel := n.cfg.Channel
	if id, ok, err := n.threads.Thread(channelKey); err == nil && ok {
		channel = id
	}
	oldest := at.Add(-time.Minute)
	oldestTS := fmt.Sprintf("%d.%06d", oldest.Unix(), oldest.Nanosecond()/1000)
	cursor := ""
	for range lookupPages {
		if err := n.wait(ctx, otherKey(n.cfg.Channel)); err != nil {
			return "", err
		}
		var msgs []slack.Message
		var more bool
		if threadTS != "" {
			var next string
			var err error
			msgs, more, next, err = n.api.GetConversationRepliesContext(ctx, &slack.GetConversationRepliesParameters{
				ChannelID: channel, Timestamp: threadTS, Cursor: cursor, Oldest: oldestTS, Limit: 200, IncludeAllMetadata: true})
			if err != nil {
				return "", classify("conversations.replies", err)
			}
			cursor = next
		} else {
			resp, err := n.api.GetConversationHistoryContext(ctx, &slack.GetConversationHistoryParameters{
				ChannelID: channel, Cursor: cursor, Oldest: oldestTS, Limit: 200, IncludeAllMetadata: true})
			if err != nil {
				return "", classify("conversations.history", err)
			}
			msgs, more, cursor = resp.Messages, resp.HasMore, resp.ResponseMetaData.NextCursor
		}
		for _, m := range msgs {
			if visit(m) {
				return channel, nil
			}
		}
		if !more || cursor == "" {
			return channel, nil
		}
	}
	n.log.Warn("slack lookup stopped after the page limit; posting again", "finding", what, "pages", lookupPages)
	return channel, nil
}

// MaxBatch is how many queued updates of one incident the worker may hand
// to NotifyBatch at once: max_batch (10) in bot mode, 0 (no batches) with
// a webhook, which cannot look messages up.
func (n *Notifier) MaxBatch() int {
	if n.cfg.Mode != ModeBot {
		return 0
	}
	return n.cfg.MaxBatch
}

// NotifyBatch posts several queued updates of one incident as one thread
// reply (one attempt), when Slack's one post a second per channel is
// behind the findings: one post instead of len(as), each revision still
// posted exactly once. The message metadata lists every revision it
// carries; the attempt of each is recorded before the post, and after an
// earlier attempt of any of them the thread is searched, and only the
// revisions no message carries yet are posted. The thread's first message
// is then edited to the running count (chat.update, a separate rate
// limit). Without a thread yet (the first alert was not posted), the batch
// is a top-level message that starts the thread.
func (n *Notifier) NotifyBatch(ctx context.Context, as []notify.Alert) error {
	return redact.Error(n.notifyBatch(ctx, as))
}

func (n *Notifier) notifyBatch(ctx context.Context, as []notify.Alert) error {
	// A revision handed twice is posted once.
	seen := make(map[string]bool, len(as))
	uniq := as[:0:0]
	for _, a := range as {
		if k := revisionKey(a); !seen[k] {
			seen[k] = true
			uniq = append(uniq, a)
		}
	}
	as = uniq
	if len(as) == 1 || n.cfg.Mode != ModeBot {
		for _, a := range as {
			if err := n.notifyOnce(ctx, a); err != nil {
				return err
			}
		}
		return nil
	}
	key := as[0].ThreadKey()
	ts, reply, err := n.threads.Thread(key)
	if err != nil {
		return notify.Retryable(notify.ReasonUnavailable, 0, fmt.Errorf("slack journal: %w", err))
	}
	threadTS := ""
	if reply {
		threadTS = ts
	}
	if err := n.resolveChannel(ctx); err != nil {
		return err
	}
	// Where earlier attempts of these revisions were made (the thread may
	// have moved since), each place with its earliest attempt.
	places := map[string]time.Time{}
	for _, a := range as {
		at, where, ok, err := n.threads.Attempt(a.Finding.ID + "\x00" + strconv.Itoa(a.Finding.Revision))
		if err != nil {
			return notify.Retryable(notify.ReasonUnavailable, 0, fmt.Errorf("slack journal: %w", err))
		}
		if !ok {
			continue
		}
		p := attemptPlace(where, threadTS)
		if first, seen := places[p]; !seen || at.Before(first) {
			places[p] = at
		}
	}
	todo := as
	var channel, newTS string
	if len(places) > 0 {
		// An earlier attempt may have posted some of them: post only the
		// revisions no message of this output carries.
		found := map[string]string{} // revision → ts of a top-level message carrying it ("" in a thread)
		order := make([]string, 0, len(places))
		for p := range places {
			order = append(order, p)
		}
		slices.Sort(order)
		for _, p := range order {
			var c string
			c, err = n.scan(ctx, p, places[p], as[0].Finding.ID, func(m slack.Message) bool {
				for _, r := range Revisions(m.Metadata, n.name) {
					if _, ok := found[r]; !ok {
						found[r] = ""
						if p == "" {
							found[r] = m.Timestamp
						}
					}
				}
				return false
			})
			if err != nil {
				break
			}
			channel = c
		}
		switch {
		case err != nil && notify.Classify(err).Retry:
			return err
		case err != nil:
			n.log.Warn("slack message lookup failed; posting without it (configure the channel id and the history scope for exactly-once)",
				"finding", as[0].Finding.ID, "err", notify.SanitizeLine(err.Error(), 200))
			found = nil
		}
		todo = nil
		for _, a := range as {
			if t, ok := found[revisionKey(a)]; ok {
				n.log.Info("slack message of an earlier attempt found; not posted again", "finding", a.Finding.ID, "revision", a.Finding.Revision)
				if newTS == "" {
					newTS = t
				}
				continue
			}
			todo = append(todo, a)
		}
	}
	for _, a := range todo {
		rev := a.Finding.ID + "\x00" + strconv.Itoa(a.Finding.Revision)
		if _, where, ok, _ := n.threads.Attempt(rev); ok && where == threadTS {
			continue
		}
		if err := n.threads.MarkAttempt(rev, n.clock.Now(), threadTS); err != nil {
			return notify.Retryable(notify.ReasonUnavailable, 0, fmt.Errorf("slack journal: %w", err))
		}
	}
	if len(todo) > 0 {
		if channel, newTS, err = n.post(ctx, renderBatch(todo, n.cfg.MaxFieldChars), n.batchMetadata(todo), threadTS); err != nil {
			return err
		}
	}
	if !reply {
		if newTS == "" {
			return nil
		}
		if err := n.threads.SetThread(key, newTS); err != nil {
			return notify.Retryable(notify.ReasonUnavailable, 0, fmt.Errorf("slack journal: thread of a posted message: %w", err))
		}
		return nil
	}
	n.updateParent(ctx, channel, ts, as[len(as)-1])
	return nil
}

// postWebhook posts a to the incoming webhook. A webhook cannot thread,
// so to keep a burst from flooding the channel only the first alert of a
// group and the repeats numbered 2, 4, 8, 16 … are posted; the others are
// counted in the next posted repeat's totals.
func (n *Notifier) postWebhook(ctx context.Context, a notify.Alert) error {
	if a.Update && a.Repeat&(a.Repeat-1) != 0 {
		return nil
	}
	m := render(a, n.cfg.MaxFieldChars)
	msg := &slack.WebhookMessage{Text: m.Text, Blocks: &slack.Blocks{BlockSet: m.Blocks}}
	if err := n.wait(ctx, postKey("webhook")); err != nil {
		return err
	}
	if err := slack.PostWebhookCustomHTTPContext(ctx, n.webhook, n.http, msg); err != nil {
		return classify("incoming webhook", err)
	}
	return nil
}

// Rate keys: posts per channel, and the channel's other calls (edits of
// a thread's first message, history lookups), which Slack limits apart
// from posting.
func postKey(channel string) string  { return "post:" + channel }
func otherKey(channel string) string { return "other:" + channel }

// wait holds a call until its rate key allows it: one per MinInterval on
// average with bursts of up to Burst (a generic cell rate algorithm).
func (n *Notifier) wait(ctx context.Context, key string) error {
	if n.cfg.MinInterval <= 0 {
		return nil
	}
	iv := n.cfg.MinInterval.D()
	n.rmu.Lock()
	now := n.clock.Now()
	tat := n.next[key]
	if tat.Before(now) {
		tat = now
	}
	at := tat.Add(-time.Duration(max(n.cfg.Burst, 1)-1) * iv)
	if at.Before(now) {
		at = now
	}
	n.next[key] = tat.Add(iv)
	n.rmu.Unlock()
	if d := at.Sub(now); d > 0 {
		return n.clock.Sleep(ctx, d)
	}
	return nil
}

// Slack error names (the "error" of {"ok":false}) that are worth retrying.
var retryableSlackErrors = map[string]notify.Reason{
	"ratelimited":         notify.ReasonThrottled,
	"rate_limited":        notify.ReasonThrottled,
	"internal_error":      notify.ReasonServer,
	"fatal_error":         notify.ReasonServer,
	"service_unavailable": notify.ReasonServer,
	"request_timeout":     notify.ReasonTimeout,
}

var authSlackErrors = map[string]bool{
	"invalid_auth": true, "not_authed": true, "account_inactive": true, "token_revoked": true,
	"token_expired": true, "no_permission": true, "missing_scope": true, "not_allowed_token_type": true,
	"ekm_access_denied": true, "access_denied": true, "invalid_token": true,
}

// classify maps slack-go's errors onto notify's classification.
func classify(op string, err error) error {
	var rl *slack.RateLimitedError
	if errors.As(err, &rl) {
		return notify.Retryable(notify.ReasonThrottled, rl.RetryAfter, redact.Error(fmt.Errorf("slack %s: %w", op, err)))
	}
	var sc slack.StatusCodeError
	if errors.As(err, &sc) {
		return fmt.Errorf("slack %s: %w", op, &notify.StatusError{Code: sc.Code, Msg: sc.Status})
	}
	var se slack.SlackErrorResponse
	if errors.As(err, &se) {
		name := notify.SanitizeLine(se.Err, 64)
		if reason, ok := retryableSlackErrors[se.Err]; ok {
			return notify.Retryable(reason, 0, fmt.Errorf("slack %s: %s", op, name))
		}
		if authSlackErrors[se.Err] {
			return notify.Permanent(notify.ReasonAuth, fmt.Errorf("slack %s: %s", op, name))
		}
		return notify.Permanent(notify.ReasonRejected, fmt.Errorf("slack %s: %s", op, name))
	}
	return redact.Error(fmt.Errorf("slack %s: %w", op, err))
}

// Close releases idle connections.
func (n *Notifier) Close() error {
	n.http.CloseIdleConnections()
	return nil
}

type memThreads struct {
	mu sync.Mutex
	m  map[string]string
	at map[string]memAttempt
}

type memAttempt struct {
	at    time.Time
	where string
}

func (t *memThreads) Attempt(key string) (time.Time, string, bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	a, ok := t.at[key]
	return a.at, a.where, ok, nil
}

func (t *memThreads) MarkAttempt(key string, at time.Time, where string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.at[key] = memAttempt{at, where}
	return nil
}

func (t *memThreads) Thread(key string) (string, bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ts, ok := t.m[key]
	return ts, ok, nil
}

func (t *memThreads) SetThread(key, ts string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.m[key] = ts
	return nil
}
