// Package hec owns the Splunk HTTP Event Collector output: findings and
// raw events as HEC JSON events (token from internal/secret), raw events
// batched by count and bytes, and optional indexer acknowledgement (a
// request counts as delivered only when /services/collector/ack says its
// ackId was indexed; an ack that never comes is retried, which Splunk
// documents may index the batch twice).
package hec

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"

	"auditwatch/alert/notify"
	"auditwatch/internal/redact"
	"auditwatch/schema"
)

// ErrAckTimeout means the indexer did not acknowledge a request in time.
var ErrAckTimeout = errors.New("hec indexer acknowledgement timed out")

// Option changes how New builds the output.
type Option func(*Notifier)

// WithClock sets the clock used between acknowledgement polls.
func WithClock(c notify.Clock) Option { return func(n *Notifier) { n.clock = c } }

// Notifier posts to one HEC endpoint.
type Notifier struct {
	cfg     Config
	log     *slog.Logger
	clock   notify.Clock
	http    *http.Client
	token   string
	channel string
	event   string
	ack     string
}

// New builds the output, reading the token now.
func New(cfg Config, logger *slog.Logger, opts ...Option) (*Notifier, error) {
	cfg.SetDefaults()
	if err := cfg.Validate("hec"); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	tok, err := cfg.Token.Value()
	if err != nil {
		return nil, fmt.Errorf("hec token %s: %w", cfg.Token, err)
	}
	n := &Notifier{cfg: cfg, log: logger, clock: notify.RealClock{}, token: tok, channel: cfg.Channel}
	base := strings.TrimRight(cfg.URL, "/")
	n.event = base + "/services/collector/event"
	n.ack = base + "/services/collector/ack"
	if n.channel == "" {
		n.channel = newGUID()
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("hec ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("hec ca_file %s: no PEM certificates", cfg.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	n.http = &http.Client{Transport: tr, Timeout: cfg.Timeout.D()}
	for _, o := range opts {
		o(n)
	}
	return n, nil
}

func newGUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// Event is one HEC event envelope.
type Event struct {
	Time       float64           `json:"time"`
	Host       string            `json:"host,omitempty"`
	Source     string            `json:"source,omitempty"`
	SourceType string            `json:"sourcetype,omitempty"`
	Index      string            `json:"index,omitempty"`
	Event      any               `json:"event"`
	Fields     map[string]string `json:"fields,omitempty"`
}

// FindingBody is the event of a finding.
type FindingBody struct {
	Kind       string         `json:"kind"`
	Finding    schema.Finding `json:"finding"`
	Update     bool           `json:"update"`
	Repeat     int            `json:"repeat"`
	GroupCount int            `json:"group_count"`
}

func epoch(t interface{ UnixMicro() int64 }) float64 { return float64(t.UnixMicro()) / 1e6 }

// EncodeFinding returns the HEC request body for a.
func (n *Notifier) EncodeFinding(a notify.Alert) ([]byte, error) {
	f := a.Finding
	ev := Event{Time: epoch(f.Time), Host: n.cfg.Host, Source: n.cfg.Source, SourceType: n.cfg.SourceType,
		Index: n.cfg.Index, Event: FindingBody{Kind: "finding", Finding: f, Update: a.Update, Repeat: a.Repeat, GroupCount: a.GroupCount},
		// Indexed fields: only our own bounded vocabulary.
		Fields: map[string]string{"detector": f.Detector, "severity": string(f.Severity)}}
	b, err := json.Marshal(ev)
	if err != nil {
		return nil, notify.Permanent(notify.ReasonEncode, fmt.Errorf("hec: %w", err))
	}
	return notify.InertJSON(b), nil
}

// EncodeEvent returns the HEC envelope of a raw event.
func (n *Notifier) EncodeEvent(e schema.Event) ([]byte, error) {
	ev := Event{Time: epoch(e.Time), Host: n.cfg.Host, Source: n.cfg.Source, SourceType: n.cfg.EventSourceType,
		Index: n.cfg.Index, Event: e}
	b, err := json.Marshal(ev)
	if err != nil {
		return nil, notify.Permanent(notify.ReasonEncode, fmt.Errorf("hec: %w", err))
	}
	return notify.InertJSON(b), nil
}

// Notify posts one finding.
func (n *Notifier) Notify(ctx context.Context, a notify.Alert) error {
	b, err := n.EncodeFinding(a)
	if err != nil {
		return err
	}
	return n.post(ctx, b)
}

// SendEvents posts evs in batches of at most BatchSize events and
// MaxBatchBytes bytes. A failed batch fails the call; the router retries
// the whole call (HEC consumers dedupe on the event id).
func (n *Notifier) SendEvents(ctx context.Context, evs []schema.Event) error {
	var buf bytes.Buffer
	count := 0
	flush := func() error {
		if count == 0 {
			return nil
		}
		err := n.post(ctx, bytes.Clone(buf.Bytes()))
		buf.Reset()
		count = 0
		return err
	}
	for _, e := range evs {
		b, err := n.EncodeEvent(e)
		if err != nil {
			return err
		}
		if count > 0 && (count >= n.cfg.BatchSize || buf.Len()+len(b) > n.cfg.MaxBatchBytes) {
			if err := flush(); err != nil {
				return err
			}
		}
		buf.Write(b)
		count++
	}
	return flush()
}

type hecResponse struct {
	Text  string `json:"text"`
	Code  int    `json:"code"`
	AckID *int64 `json:"ackId"`
}

// HEC status codes (in the JSON body) that are worth retrying: 8 internal
// server error, 9 server busy.
func retryableHECCode(c int) bool { return c == 8 || c == 9 }

func (n *Notifier) request(ctx context.Context, u string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, notify.Permanent(notify.ReasonEncode, fmt.Errorf("hec: %w", err))
	}
	req.Header.Set("Authorization", "Splunk "+n.token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Splunk-Request-Channel", n.channel)
	resp, err := n.http.Do(req)
	if err != nil {
		return nil, redact.Error(fmt.Errorf("hec post: %w", err))
	}
	return resp, nil
}

func (n *Notifier) post(ctx context.Context, body []byte) error {
	resp, err := n.request(ctx, n.event, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var hr hecResponse
	_ = json.Unmarshal(raw, &hr)
	if resp.StatusCode/100 != 2 {
		se := &notify.StatusError{Code: resp.StatusCode, RetryAfter: notify.ParseRetryAfter(resp.Header.Get("Retry-After"), n.clock.Now()),
			Msg: fmt.Sprintf("hec code %d: %s", hr.Code, notify.SanitizeLine(hr.Text, 200))}
		if retryableHECCode(hr.Code) {
			t := true
			se.Retry = &t
		}
		return fmt.Errorf("hec post: %w", se)
	}
	if !n.cfg.Ack {
		return nil
	}
	if hr.AckID == nil {
		return notify.Permanent(notify.ReasonRejected, errors.New("hec: ack is on but the collector returned no ackId (is indexer acknowledgement enabled for the token?)"))
	}
	return n.waitAck(ctx, *hr.AckID)
}

func (n *Notifier) waitAck(ctx context.Context, id int64) error {
	start := n.clock.Now()
	body, _ := json.Marshal(map[string][]int64{"acks": {id}})
	u := n.ack + "?channel=" + url.QueryEscape(n.channel)
	for {
		resp, err := n.request(ctx, u, body)
		if err != nil {
			return err
		}
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("hec ack: %w", &notify.StatusError{Code: resp.StatusCode, Msg: notify.SanitizeLine(string(raw), 200)})
		}
		var ar struct {
			Acks map[string]bool `json:"acks"`
		}
		if err := json.Unmarshal(raw, &ar); err != nil {
			return fmt.Errorf("hec ack: bad response: %w", err)
		}
		if ar.Acks[strconv.FormatInt(id, 10)] {
			return nil
		}
		if n.clock.Now().Sub(start) >= n.cfg.AckTimeout.D() {
			return notify.Retryable(notify.ReasonTimeout, 0, fmt.Errorf("%w: ackId %d after %s", ErrAckTimeout, id, n.cfg.AckTimeout))
		}
		if err := n.clock.Sleep(ctx, n.cfg.AckInterval.D()); err != nil {
			return err
		}
	}
}

// Close releases idle connections.
func (n *Notifier) Close() error {
	n.http.CloseIdleConnections()
	return nil
}
