// Package slack owns the Slack output: Block Kit alerts posted with a bot
// token (chat.postMessage, one thread per dedupe key with repeats as thread
// replies and the first message edited with the running count) or through
// an incoming webhook, with every attacker-controlled value escaped (see
// Escape) and a per-channel rate limit. Slack's errors are mapped onto
// alert/notify's classification: 429 and Slack's ratelimited/internal
// errors are retried (honouring Retry-After), invalid_auth and the like
// are permanent.
package slack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/slack-go/slack"

	"auditwatch/alert/notify"
)

// ThreadStore persists the thread timestamp of each dedupe key.
type ThreadStore interface {
	Thread(key string) (ts string, ok bool, err error)
	SetThread(key, ts string) error
}

// Option changes how New builds the output.
type Option func(*Notifier)

// WithClock sets the clock of the rate limiter.
func WithClock(c notify.Clock) Option { return func(n *Notifier) { n.clock = c } }

// WithThreads sets where thread timestamps are kept (default: memory).
func WithThreads(t ThreadStore) Option { return func(n *Notifier) { n.threads = t } }

// WithHTTPClient sets the HTTP client.
func WithHTTPClient(c *http.Client) Option { return func(n *Notifier) { n.http = c } }

// Notifier posts alerts to Slack.
type Notifier struct {
	cfg     Config
	log     *slog.Logger
	clock   notify.Clock
	http    *http.Client
	api     *slack.Client
	webhook string
	threads ThreadStore

	rmu  sync.Mutex
	next map[string]time.Time // per channel: earliest time of the next message
}

// New builds the output, reading its token or webhook URL now.
func New(cfg Config, logger *slog.Logger, opts ...Option) (*Notifier, error) {
	cfg.ApplyDefaults()
	if err := cfg.Validate("slack"); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	n := &Notifier{cfg: cfg, log: logger, clock: notify.RealClock{}, http: &http.Client{Timeout: 30 * time.Second},
		threads: &memThreads{m: map[string]string{}}, next: map[string]time.Time{}}
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
	case ModeWebhook:
		u, err := cfg.WebhookURL.Value()
		if err != nil {
			return nil, fmt.Errorf("slack webhook_url %s: %w", cfg.WebhookURL, err)
		}
		n.webhook = u
	}
	return n, nil
}

// Notify posts a (one attempt; the router retries).
func (n *Notifier) Notify(ctx context.Context, a notify.Alert) error {
	if n.cfg.Mode == ModeWebhook {
		return n.postWebhook(ctx, a)
	}
	key := a.ThreadKey()
	ts, haveThread, err := n.threads.Thread(key)
	if err != nil {
		return notify.Retryable(notify.ReasonUnavailable, 0, fmt.Errorf("slack thread store: %w", err))
	}
	m := render(a, n.cfg.MaxFieldChars)
	opts := []slack.MsgOption{slack.MsgOptionBlocks(m.Blocks...), slack.MsgOptionText(m.Text, false),
		slack.MsgOptionDisableLinkUnfurl(), slack.MsgOptionDisableMediaUnfurl()}
	// A repeat within the group window, or a later revision of an incident
	// whose thread exists (e.g. after a restart emptied the group table),
	// goes into the thread.
	reply := haveThread && (a.Update || a.Finding.Revision > 0)
	if reply {
		opts = append(opts, slack.MsgOptionTS(ts))
	}
	if err := n.wait(ctx, n.cfg.Channel); err != nil {
		return err
	}
	channel, newTS, err := n.api.PostMessageContext(ctx, n.cfg.Channel, opts...)
	if err != nil {
		return classify("chat.postMessage", err)
	}
	if !reply {
		if err := n.threads.SetThread(key, newTS); err != nil {
			n.log.Error("slack thread not recorded; repeats will start a new thread", "err", err)
		}
		return nil
	}
	if *n.cfg.UpdateParent {
		// Best effort: the reply is posted; failing here must not make the
		// router retry (and post the reply twice).
		pm := renderParentUpdate(a, n.cfg.MaxFieldChars)
		if err := n.wait(ctx, channel); err == nil {
			if _, _, _, err := n.api.UpdateMessageContext(ctx, channel, ts, slack.MsgOptionBlocks(pm.Blocks...),
				slack.MsgOptionText(pm.Text, false)); err != nil {
				n.log.Warn("slack parent count not updated", "err", notify.SanitizeLine(err.Error(), 200))
			}
		}
	}
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
	if err := n.wait(ctx, "webhook"); err != nil {
		return err
	}
	if err := slack.PostWebhookCustomHTTPContext(ctx, n.webhook, n.http, msg); err != nil {
		return classify("incoming webhook", err)
	}
	return nil
}

// wait holds a message to channel until the channel's rate allows it.
func (n *Notifier) wait(ctx context.Context, channel string) error {
	if n.cfg.MinInterval <= 0 {
		return nil
	}
	n.rmu.Lock()
	now := n.clock.Now()
	at := n.next[channel]
	if at.Before(now) {
		at = now
	}
	n.next[channel] = at.Add(n.cfg.MinInterval)
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
		return notify.Retryable(notify.ReasonThrottled, rl.RetryAfter, fmt.Errorf("slack %s: %w", op, err))
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
	return fmt.Errorf("slack %s: %w", op, err)
}

// Close releases idle connections.
func (n *Notifier) Close() error {
	n.http.CloseIdleConnections()
	return nil
}

type memThreads struct {
	mu sync.Mutex
	m  map[string]string
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
