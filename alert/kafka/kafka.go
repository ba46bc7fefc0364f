// Package kafka owns the Kafka output: findings as JSON on a findings
// topic for SIEMs that consume Kafka (keyed by dedupe key, headers carrying
// the finding id and revision so consumers can dedupe), and optionally raw
// events on an events topic. Writes wait for all in-sync replicas.
package kafka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	kafkago "github.com/segmentio/kafka-go"

	"auditwatch/alert/notify"
	"auditwatch/schema"
)

// Notifier writes to one Kafka cluster.
type Notifier struct {
	cfg Config
	log *slog.Logger
	w   *kafkago.Writer
}

// New builds the output; it connects lazily.
func New(cfg Config, logger *slog.Logger) (*Notifier, error) {
	cfg.SetDefaults()
	if err := cfg.Validate("kafka"); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	w := &kafkago.Writer{
		Addr:         kafkago.TCP(cfg.Brokers...),
		Balancer:     &kafkago.Hash{},
		RequiredAcks: kafkago.RequireAll,
		BatchTimeout: cfg.BatchTimeout.D(),
		WriteTimeout: cfg.WriteTimeout.D(),
		// One attempt per call: the router's retry loop owns retries.
		MaxAttempts: 1,
		// Its own transport, so Close can end its connections.
		Transport: &kafkago.Transport{},
	}
	return &Notifier{cfg: cfg, log: logger, w: w}, nil
}

// Body is the value of a findings-topic message.
type Body struct {
	Kind       string         `json:"kind"`
	Finding    schema.Finding `json:"finding"`
	Update     bool           `json:"update"`
	Repeat     int            `json:"repeat"`
	GroupCount int            `json:"group_count"`
}

// Message returns the findings-topic message for a.
func (n *Notifier) Message(a notify.Alert) (kafkago.Message, error) {
	v, err := json.Marshal(Body{Kind: "finding", Finding: a.Finding, Update: a.Update, Repeat: a.Repeat, GroupCount: a.GroupCount})
	if err != nil {
		return kafkago.Message{}, notify.Permanent(notify.ReasonEncode, fmt.Errorf("kafka: %w", err))
	}
	return kafkago.Message{
		Topic: n.cfg.Topic,
		Key:   []byte(a.ThreadKey()),
		Value: notify.InertJSON(v),
		Headers: []kafkago.Header{
			{Key: "auditwatch-finding-id", Value: []byte(a.Finding.ID)},
			{Key: "auditwatch-revision", Value: []byte(strconv.Itoa(a.Finding.Revision))},
			{Key: "auditwatch-kind", Value: []byte("finding")},
		},
	}, nil
}

// Notify writes one finding.
func (n *Notifier) Notify(ctx context.Context, a notify.Alert) error {
	m, err := n.Message(a)
	if err != nil {
		return err
	}
	return classify(n.w.WriteMessages(ctx, m))
}

// SendEvents writes raw events to EventsTopic.
func (n *Notifier) SendEvents(ctx context.Context, evs []schema.Event) error {
	if n.cfg.EventsTopic == "" {
		return notify.Permanent(notify.ReasonRejected, errors.New("kafka: no events_topic configured"))
	}
	msgs := make([]kafkago.Message, 0, len(evs))
	for _, e := range evs {
		v, err := json.Marshal(e)
		if err != nil {
			return notify.Permanent(notify.ReasonEncode, fmt.Errorf("kafka: %w", err))
		}
		msgs = append(msgs, kafkago.Message{Topic: n.cfg.EventsTopic, Key: []byte(e.ID), Value: notify.InertJSON(v),
			Headers: []kafkago.Header{{Key: "auditwatch-kind", Value: []byte("event")}}})
	}
	return classify(n.w.WriteMessages(ctx, msgs...))
}

// classify maps kafka-go errors: broker errors flagged temporary are
// retried, other broker errors (too large, not authorised, unknown topic)
// are permanent, transport errors are left to notify.Classify.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var we kafkago.WriteErrors
	if errors.As(err, &we) {
		for _, e := range we {
			if e != nil {
				err = e
				break
			}
		}
	}
	var ke kafkago.Error
	if errors.As(err, &ke) {
		if ke.Temporary() {
			return notify.Retryable(notify.ReasonServer, 0, fmt.Errorf("kafka write: %w", err))
		}
		reason := notify.ReasonRejected
		switch ke {
		case kafkago.TopicAuthorizationFailed, kafkago.ClusterAuthorizationFailed, kafkago.SASLAuthenticationFailed:
			reason = notify.ReasonAuth
		case kafkago.UnknownTopicOrPartition:
			// Also returned while a new topic's metadata propagates.
			return notify.Retryable(notify.ReasonUnavailable, 0, fmt.Errorf("kafka write: %w", err))
		}
		return notify.Permanent(reason, fmt.Errorf("kafka write: %w", err))
	}
	return fmt.Errorf("kafka write: %w", err)
}

// Close flushes and closes the writer and its connections.
func (n *Notifier) Close() error {
	err := n.w.Close()
	n.w.Transport.(*kafkago.Transport).CloseIdleConnections()
	return err
}
