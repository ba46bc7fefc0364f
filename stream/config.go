package stream

import (
	"errors"
	"fmt"
	"net"
	"time"

	"auditwatch/config/duration"
	"auditwatch/internal/secret"
)

// Stream types.
const (
	TypeEmbedded = "embedded"
	TypeKafka    = "kafka"
)

// Config is the `stream:` section of the config.
type Config struct {
	// Type is "embedded" (default: one process, in-memory queues) or "kafka".
	Type     string         `yaml:"type"`
	Embedded EmbeddedConfig `yaml:"embedded"`
	Kafka    KafkaConfig    `yaml:"kafka"`
}

// EmbeddedConfig sizes the in-memory queues.
type EmbeddedConfig struct {
	// QueueSize is the capacity of each topic's queue in records; a full
	// queue blocks producers (back-pressure).
	QueueSize int `yaml:"queue_size"`
}

// KafkaConfig connects to a Kafka cluster.
type KafkaConfig struct {
	Brokers []string `yaml:"brokers"`
	// EventsTopic carries schema.Events keyed by principal.
	EventsTopic string `yaml:"events_topic"`
	// EventsByIPTopic carries failed authentication events re-keyed by
	// source IP, for the IP-keyed auth-failure detector instance.
	EventsByIPTopic string `yaml:"events_by_ip_topic"`
	// FindingsTopic carries schema.Findings keyed by dedupe key.
	FindingsTopic string `yaml:"findings_topic"`
	// LinksTopic, when set, carries credential links (Vault-issued keys,
	// the networks and AWS principals of Vault identities, revocations)
	// between detect instances: each publishes what it learns there and
	// reads everything the others publish, so an issue and the uses of its
	// key meet although the principal partitioning puts them on different
	// instances. A compacted topic (cleanup.policy=compact).
	LinksTopic string `yaml:"links_topic"`
	// DetectGroup and AlertGroup are the consumer groups of the detect and
	// alert stages.
	DetectGroup string `yaml:"detect_group"`
	AlertGroup  string `yaml:"alert_group"`
	// FindingsStoreGroup is the consumer group with which the alert stage
	// stores the findings topic (storage: section), at its own pace and
	// apart from the alert outputs' group, so a slow store holds only
	// itself. Default: <alert_group>-store.
	FindingsStoreGroup string `yaml:"findings_store_group"`
	ClientID           string `yaml:"client_id"`
	// BatchSize and BatchTimeout bound a producer batch.
	BatchSize    int               `yaml:"batch_size"`
	BatchTimeout duration.Duration `yaml:"batch_timeout"`
	// WriteTimeout bounds one produce request.
	WriteTimeout duration.Duration `yaml:"write_timeout"`
	// CommitInterval is how often a consumer checkpoints and commits.
	CommitInterval duration.Duration `yaml:"commit_interval"`
	TLS            bool              `yaml:"tls"`
	SASL           SASLConfig        `yaml:"sasl"`
}

// SASLConfig is the optional SASL login.
type SASLConfig struct {
	// Mechanism is "" (none) or "plain".
	Mechanism string        `yaml:"mechanism"`
	Username  string        `yaml:"username"`
	Password  secret.Secret `yaml:"password"`
}

// SetDefaults fills unset fields.
func (c *Config) SetDefaults() {
	if c.Type == "" {
		c.Type = TypeEmbedded
	}
	if c.Embedded.QueueSize == 0 {
		c.Embedded.QueueSize = 8192
	}
	k := &c.Kafka
	if k.EventsTopic == "" {
		k.EventsTopic = "auditwatch.events"
	}
	if k.EventsByIPTopic == "" {
		k.EventsByIPTopic = "auditwatch.events-by-ip"
	}
	if k.FindingsTopic == "" {
		k.FindingsTopic = "auditwatch.findings"
	}
	if k.DetectGroup == "" {
		k.DetectGroup = "auditwatch-detect"
	}
	if k.AlertGroup == "" {
		k.AlertGroup = "auditwatch-alert"
	}
	if k.FindingsStoreGroup == "" {
		k.FindingsStoreGroup = k.AlertGroup + "-store"
	}
	if k.ClientID == "" {
		k.ClientID = "auditwatch"
	}
	if k.BatchSize == 0 {
		k.BatchSize = 1000
	}
	if k.BatchTimeout == 0 {
		k.BatchTimeout = duration.Duration(10 * time.Millisecond)
	}
	if k.WriteTimeout == 0 {
		k.WriteTimeout = duration.Duration(10 * time.Second)
	}
	if k.CommitInterval == 0 {
		k.CommitInterval = duration.Duration(time.Second)
	}
}

// Validate reports every bad field.
func (c Config) Validate() error {
	var errs []error
	switch c.Type {
	case TypeEmbedded:
		if c.Embedded.QueueSize <= 0 {
			errs = append(errs, errors.New("embedded.queue_size: must be positive"))
		}
	case TypeKafka:
		if err := c.Kafka.Validate(); err != nil {
			errs = append(errs, prefix("kafka", err))
		}
	default:
		errs = append(errs, fmt.Errorf("type: want %q or %q, got %q", TypeEmbedded, TypeKafka, c.Type))
	}
	return errors.Join(errs...)
}

// Validate reports every bad field.
func (k KafkaConfig) Validate() error {
	var errs []error
	if len(k.Brokers) == 0 {
		errs = append(errs, errors.New("brokers: at least one required"))
	}
	for i, b := range k.Brokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			errs = append(errs, fmt.Errorf("brokers[%d]: want host:port, got %q", i, b))
		}
	}
	for _, f := range []struct{ name, v string }{{"events_topic", k.EventsTopic}, {"events_by_ip_topic", k.EventsByIPTopic}, {"findings_topic", k.FindingsTopic}, {"detect_group", k.DetectGroup}, {"alert_group", k.AlertGroup}, {"findings_store_group", k.FindingsStoreGroup}} {
		if f.v == "" {
			errs = append(errs, fmt.Errorf("%s: required", f.name))
		}
	}
	if k.FindingsStoreGroup != "" && k.FindingsStoreGroup == k.AlertGroup {
		errs = append(errs, fmt.Errorf("findings_store_group: must differ from alert_group (%q): storing keeps its own position on the findings topic", k.AlertGroup))
	}
	if k.BatchSize <= 0 {
		errs = append(errs, errors.New("batch_size: must be positive"))
	}
	if k.BatchTimeout <= 0 {
		errs = append(errs, errors.New("batch_timeout: must be positive"))
	}
	if k.WriteTimeout <= 0 {
		errs = append(errs, errors.New("write_timeout: must be positive"))
	}
	if k.CommitInterval <= 0 {
		errs = append(errs, errors.New("commit_interval: must be positive"))
	}
	switch k.SASL.Mechanism {
	case "":
	case "plain":
		if k.SASL.Username == "" {
			errs = append(errs, errors.New("sasl.username: required with a mechanism"))
		}
		if k.SASL.Password.IsZero() {
			errs = append(errs, errors.New("sasl.password: required with a mechanism"))
		} else if err := k.SASL.Password.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("sasl.password: %w", err))
		}
	default:
		errs = append(errs, fmt.Errorf("sasl.mechanism: want \"\" or \"plain\", got %q", k.SASL.Mechanism))
	}
	return errors.Join(errs...)
}

func prefix(p string, err error) error {
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			errs = append(errs, fmt.Errorf("%s.%w", p, e))
		}
		return errors.Join(errs...)
	}
	return fmt.Errorf("%s.%w", p, err)
}
