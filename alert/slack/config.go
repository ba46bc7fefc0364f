package slack

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"auditwatch/config/duration"
	"auditwatch/internal/secret"
)

// Modes of the Slack output.
const (
	ModeBot     = "bot"     // chat.postMessage with a bot token: threads and count edits
	ModeWebhook = "webhook" // an incoming webhook: one message per alert, no threads
)

// Config of one Slack output.
type Config struct {
	Mode string `yaml:"mode"`
	// Token is the bot token (xoxb-…), for ModeBot.
	Token secret.Secret `yaml:"token"`
	// WebhookURL is the incoming-webhook URL, for ModeWebhook. It is a
	// credential, so it is a secret too.
	WebhookURL secret.Secret `yaml:"webhook_url"`
	// Channel is the channel id or name to post to (ModeBot).
	Channel string `yaml:"channel"`
	// APIURL is Slack's Web API base URL, ending in "/".
	APIURL string `yaml:"api_url"`
	// MinInterval between two messages to one channel (Slack allows about
	// one per second per channel).
	MinInterval duration.Duration `yaml:"min_interval"`
	// Burst is how many messages may go to one channel at once before
	// MinInterval spaces them (Slack grants short bursts above its one
	// message a second per channel; beyond them it answers 429 with
	// Retry-After, which the retries honour).
	Burst int `yaml:"burst"`
	// MaxBatch is how many queued updates of one incident one thread reply
	// may carry when the rate limit is behind the findings (bot mode;
	// default 10, 1 posts each update on its own).
	MaxBatch int `yaml:"max_batch"`
	// UpdateParent edits the thread's first message with the running count
	// when a repeat is posted (ModeBot).
	UpdateParent *bool `yaml:"update_parent"`
	// MaxFieldChars bounds each value shown (after escaping).
	MaxFieldChars int `yaml:"max_field_chars"`
}

// SetDefaults fills zero fields.
func (c *Config) SetDefaults() {
	if c.Mode == "" {
		c.Mode = ModeBot
	}
	if c.APIURL == "" {
		c.APIURL = "https://slack.com/api/"
	}
	if c.MinInterval == 0 {
		c.MinInterval = duration.Duration(time.Second)
	}
	if c.Burst == 0 {
		c.Burst = 10
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = 10
	}
	if c.UpdateParent == nil {
		t := true
		c.UpdateParent = &t
	}
	if c.MaxFieldChars == 0 {
		c.MaxFieldChars = 300
	}
}

// Validate reports every bad field, each prefixed by path.
func (c Config) Validate(path string) error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", path, field, fmt.Sprintf(format, args...)))
	}
	switch c.Mode {
	case ModeBot:
		if c.Token.IsZero() {
			bad("token", "required in bot mode ({env: NAME} or {file: PATH})")
		}
		if c.Channel == "" {
			bad("channel", "required in bot mode")
		}
		if !c.WebhookURL.IsZero() {
			bad("webhook_url", "only for webhook mode")
		}
	case ModeWebhook:
		if c.WebhookURL.IsZero() {
			bad("webhook_url", "required in webhook mode ({env: NAME} or {file: PATH})")
		}
		if !c.Token.IsZero() {
			bad("token", "only for bot mode")
		}
	default:
		bad("mode", "unknown mode %q (want bot or webhook)", c.Mode)
	}
	if err := c.Token.Validate(); err != nil {
		bad("token", "%v", err)
	}
	if err := c.WebhookURL.Validate(); err != nil {
		bad("webhook_url", "%v", err)
	}
	if u, err := url.Parse(c.APIURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		bad("api_url", "must be an http(s) URL, got %q", c.APIURL)
	}
	if c.MinInterval < 0 {
		bad("min_interval", "must not be negative, got %s", c.MinInterval)
	}
	if c.MaxBatch < 0 || c.MaxBatch > 20 {
		bad("max_batch", "must be between 1 and 20, got %d", c.MaxBatch)
	}
	if c.Burst < 0 || c.Burst > 1000 {
		bad("burst", "must be between 1 and 1000, got %d", c.Burst)
	}
	if c.MaxFieldChars < 32 || c.MaxFieldChars > 2000 {
		bad("max_field_chars", "must be within 32..2000, got %d", c.MaxFieldChars)
	}
	return errors.Join(errs...)
}
