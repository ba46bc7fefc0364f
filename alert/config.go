package alert

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"auditwatch/alert/hec"
	"auditwatch/alert/kafka"
	"auditwatch/alert/notify"
	"auditwatch/alert/slack"
	"auditwatch/alert/syslog"
	"auditwatch/alert/webhook"
	"auditwatch/config/duration"
	"auditwatch/schema"
)

// Output types.
const (
	TypeSlack   = "slack"
	TypeHEC     = "hec"
	TypeSyslog  = "syslog"
	TypeWebhook = "webhook"
	TypeKafka   = "kafka"
)

// Config is the `alerts:` section of the root configuration.
type Config struct {
	// StatePath is the bbolt file holding delivered-alert idempotency keys
	// and Slack thread timestamps. Empty keeps them in memory only (tests).
	StatePath string `yaml:"state_path"`
	// OutboxPath is the bbolt file queueing alerts per output until they
	// are delivered (default <state.dir>/alert/outbox.db). Empty keeps the
	// queues in memory only (tests).
	OutboxPath string `yaml:"outbox_path"`
	// StateRetention is how long idempotency keys are kept.
	StateRetention duration.Duration `yaml:"state_retention"`
	// GroupWindow: repeats of one dedupe key within this window of the
	// group's first alert are sent as updates (thread replies with counts).
	GroupWindow duration.Duration `yaml:"group_window"`
	// MaxGroups bounds the in-memory group table; the oldest is evicted.
	MaxGroups int `yaml:"max_groups"`
	// MaxFieldBytes bounds every attacker-influenced string an output sees.
	MaxFieldBytes int `yaml:"max_field_bytes"`
	// MaxEvidenceIDs bounds the evidence ids an output sees.
	MaxEvidenceIDs int `yaml:"max_evidence_ids"`

	Retry      notify.Backoff   `yaml:"retry"`
	DeadLetter DeadLetterConfig `yaml:"dead_letter"`
	Outputs    []OutputConfig   `yaml:"outputs"`
	Routes     []RouteConfig    `yaml:"routes"`
	// DefaultOutputs receive findings that no route matched.
	DefaultOutputs []string `yaml:"default_outputs"`
	// EventOutputs receive raw normalized events (HandleEvent): the trail
	// itself for the SIEM. Only hec, syslog, webhook and kafka outputs can.
	EventOutputs []string        `yaml:"event_outputs"`
	Silences     []SilenceConfig `yaml:"silences"`
}

// DeadLetterConfig names the file permanent failures and exhausted retries
// are appended to, one JSON object per line.
type DeadLetterConfig struct {
	Path string `yaml:"path"`
}

// OutputConfig is one named output. Exactly the block matching Type is set.
type OutputConfig struct {
	Name string `yaml:"name"`
	Type string `yaml:"type"`
	// MinSeverity drops findings below it for this output.
	MinSeverity string `yaml:"min_severity"`
	// Retry overrides the section's retry policy for this output.
	Retry *notify.Backoff `yaml:"retry"`

	Slack   *slack.Config   `yaml:"slack"`
	HEC     *hec.Config     `yaml:"hec"`
	Syslog  *syslog.Config  `yaml:"syslog"`
	Webhook *webhook.Config `yaml:"webhook"`
	Kafka   *kafka.Config   `yaml:"kafka"`
}

// Match selects findings. Empty lists match everything; globs use * (any
// run of characters, '/' included) and ? (one character).
type Match struct {
	Detectors   []string `yaml:"detectors"`
	MinSeverity string   `yaml:"min_severity"`
	Principals  []string `yaml:"principals"`
	Resources   []string `yaml:"resources"`
	SourceIPs   []string `yaml:"source_ips"`
}

// RouteConfig sends matching findings to outputs. Routes are tried in
// order; the first match wins unless it sets Continue.
type RouteConfig struct {
	Name     string   `yaml:"name"`
	Match    Match    `yaml:",inline"`
	Outputs  []string `yaml:"outputs"`
	Continue bool     `yaml:"continue"`
}

// SilenceConfig mutes matching findings until Until, for a stated Reason.
// Silenced findings are counted, never delivered, never dead-lettered.
type SilenceConfig struct {
	Match     Match     `yaml:",inline"`
	Until     time.Time `yaml:"until"`
	Reason    string    `yaml:"reason"`
	CreatedBy string    `yaml:"created_by"`
}

// Defaults returns the section's defaults.
func Defaults() Config {
	return Config{
		StateRetention: duration.Duration(30 * 24 * time.Hour),
		GroupWindow:    duration.Duration(time.Hour),
		MaxGroups:      100000,
		MaxFieldBytes:  2048,
		MaxEvidenceIDs: 20,
		Retry:          notify.DefaultBackoff(),
	}
}

// DefaultPaths puts the idempotency ledger and, when there are outputs, the
// dead-letter file under dir (the pipeline's state directory) unless the
// config names them: <dir>/ledger.db and <dir>/dead-letter.jsonl, and the
// outbox at <dir>/outbox.db.
func (c *Config) DefaultPaths(dir string) {
	if c.StatePath == "" {
		c.StatePath = filepath.Join(dir, "ledger.db")
	}
	if c.OutboxPath == "" {
		c.OutboxPath = filepath.Join(dir, "outbox.db")
	}
	if c.DeadLetter.Path == "" && len(c.Outputs) > 0 {
		c.DeadLetter.Path = filepath.Join(dir, "dead-letter.jsonl")
	}
}

// SetDefaults fills zero fields of c (and of each output block) from
// Defaults. Decoding onto Defaults() does the same for the section itself.
func (c *Config) SetDefaults() {
	d := Defaults()
	if c.StateRetention == 0 {
		c.StateRetention = d.StateRetention
	}
	if c.GroupWindow == 0 {
		c.GroupWindow = d.GroupWindow
	}
	if c.MaxGroups == 0 {
		c.MaxGroups = d.MaxGroups
	}
	if c.MaxFieldBytes == 0 {
		c.MaxFieldBytes = d.MaxFieldBytes
	}
	if c.MaxEvidenceIDs == 0 {
		c.MaxEvidenceIDs = d.MaxEvidenceIDs
	}
	if c.Retry == (notify.Backoff{}) {
		c.Retry = d.Retry
	}
	for i := range c.Outputs {
		o := &c.Outputs[i]
		if o.Retry != nil {
			fillBackoff(o.Retry, c.Retry)
		}
		switch {
		case o.Slack != nil:
			o.Slack.SetDefaults()
		case o.HEC != nil:
			o.HEC.SetDefaults()
		case o.Syslog != nil:
			o.Syslog.SetDefaults()
		case o.Webhook != nil:
			o.Webhook.SetDefaults()
		case o.Kafka != nil:
			o.Kafka.SetDefaults()
		}
	}
}

// ParseYAML strictly decodes a document whose top level has an `alerts:`
// key (other top-level keys are left to their owners, so the root config
// file can be read directly) and applies defaults. Unknown keys inside the
// section are errors naming their line.
func ParseYAML(data []byte) (Config, error) {
	doc := struct {
		Alerts Config               `yaml:"alerts"`
		Rest   map[string]yaml.Node `yaml:",inline"`
	}{Alerts: Defaults()}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("alerts config: %w", err)
	}
	doc.Alerts.SetDefaults()
	return doc.Alerts, nil
}

// FromNode strictly decodes an `alerts:` section already parsed into a
// yaml.Node (the root config keeps sections as nodes) and applies
// defaults. Unknown keys are errors; their line numbers count from the
// start of the section. A zero node gives the defaults.
func FromNode(n *yaml.Node) (Config, error) {
	cfg := Defaults()
	if n == nil || n.Kind == 0 {
		return cfg, nil
	}
	b, err := yaml.Marshal(n)
	if err != nil {
		return Config{}, fmt.Errorf("alerts config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("alerts config: %w", err)
	}
	cfg.SetDefaults()
	return cfg, nil
}

// Validate reports every bad field with its path under `alerts`.
func (c Config) Validate() error {
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("alerts.%s: %s", path, fmt.Sprintf(format, args...)))
	}
	if c.StateRetention <= 0 {
		bad("state_retention", "must be positive, got %s", c.StateRetention)
	}
	if c.GroupWindow < 0 {
		bad("group_window", "must not be negative, got %s", c.GroupWindow)
	}
	if c.MaxGroups <= 0 {
		bad("max_groups", "must be positive, got %d", c.MaxGroups)
	}
	if c.MaxFieldBytes < 64 {
		bad("max_field_bytes", "must be at least 64, got %d", c.MaxFieldBytes)
	}
	if c.MaxEvidenceIDs <= 0 {
		bad("max_evidence_ids", "must be positive, got %d", c.MaxEvidenceIDs)
	}
	if err := c.Retry.Validate("alerts.retry"); err != nil {
		errs = append(errs, err)
	}
	if c.DeadLetter.Path == "" && len(c.Outputs) > 0 {
		bad("dead_letter.path", "required when outputs are configured: failed alerts must go somewhere")
	}
	names := map[string]string{}
	for i, o := range c.Outputs {
		p := fmt.Sprintf("outputs[%d]", i)
		if o.Name == "" {
			bad(p+".name", "required")
		} else if strings.ContainsAny(o.Name, " \t\n\x00") {
			bad(p+".name", "must not contain white space, got %q", o.Name)
		} else if _, dup := names[o.Name]; dup {
			bad(p+".name", "duplicate output name %q", o.Name)
		} else {
			names[o.Name] = o.Type
		}
		if o.MinSeverity != "" {
			if _, err := schema.ParseSeverity(o.MinSeverity); err != nil {
				bad(p+".min_severity", "%v", err)
			}
		}
		if o.Retry != nil {
			if err := o.Retry.Validate("alerts." + p + ".retry"); err != nil {
				errs = append(errs, err)
			}
		}
		blocks := 0
		for _, set := range []bool{o.Slack != nil, o.HEC != nil, o.Syslog != nil, o.Webhook != nil, o.Kafka != nil} {
			if set {
				blocks++
			}
		}
		if blocks > 1 {
			bad(p, "set only the block of its type (%s)", o.Type)
		}
		var err error
		switch o.Type {
		case TypeSlack:
			if o.Slack == nil {
				bad(p+".slack", "required for type slack")
			} else {
				err = o.Slack.Validate("alerts." + p + ".slack")
			}
		case TypeHEC:
			if o.HEC == nil {
				bad(p+".hec", "required for type hec")
			} else {
				err = o.HEC.Validate("alerts." + p + ".hec")
			}
		case TypeSyslog:
			if o.Syslog == nil {
				bad(p+".syslog", "required for type syslog")
			} else {
				err = o.Syslog.Validate("alerts." + p + ".syslog")
			}
		case TypeWebhook:
			if o.Webhook == nil {
				bad(p+".webhook", "required for type webhook")
			} else {
				err = o.Webhook.Validate("alerts." + p + ".webhook")
			}
		case TypeKafka:
			if o.Kafka == nil {
				bad(p+".kafka", "required for type kafka")
			} else {
				err = o.Kafka.Validate("alerts." + p + ".kafka")
			}
		default:
			bad(p+".type", "unknown output type %q (want slack, hec, syslog, webhook or kafka)", o.Type)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	checkRefs := func(path string, refs []string) {
		for j, n := range refs {
			if _, ok := names[n]; !ok {
				bad(fmt.Sprintf("%s[%d]", path, j), "unknown output %q", n)
			}
		}
	}
	for i, r := range c.Routes {
		p := fmt.Sprintf("routes[%d]", i)
		if len(r.Outputs) == 0 {
			bad(p+".outputs", "required: a route must name at least one output")
		}
		checkRefs(p+".outputs", r.Outputs)
		errs = append(errs, validateMatch("alerts."+p, r.Match))
	}
	checkRefs("default_outputs", c.DefaultOutputs)
	checkRefs("event_outputs", c.EventOutputs)
	kafkaEvents := map[string]bool{}
	for _, o := range c.Outputs {
		if o.Kafka != nil && o.Kafka.EventsTopic != "" {
			kafkaEvents[o.Name] = true
		}
	}
	for j, n := range c.EventOutputs {
		if names[n] == TypeKafka && !kafkaEvents[n] {
			bad(fmt.Sprintf("event_outputs[%d]", j), "kafka output %q has no events_topic", n)
		}
		if names[n] == TypeSlack {
			bad(fmt.Sprintf("event_outputs[%d]", j), "output %q is slack; raw events go to SIEM outputs only (hec, syslog, webhook, kafka)", n)
		}
	}
	for i, s := range c.Silences {
		p := fmt.Sprintf("silences[%d]", i)
		if s.Until.IsZero() {
			bad(p+".until", "required: silences must expire (RFC 3339 time)")
		}
		if strings.TrimSpace(s.Reason) == "" {
			bad(p+".reason", "required: say why the alerts are muted")
		}
		errs = append(errs, validateMatch("alerts."+p, s.Match))
	}
	return errors.Join(errs...)
}

func validateMatch(path string, m Match) error {
	var errs []error
	if m.MinSeverity != "" {
		if _, err := schema.ParseSeverity(m.MinSeverity); err != nil {
			errs = append(errs, fmt.Errorf("%s.min_severity: %w", path, err))
		}
	}
	for i, d := range m.Detectors {
		if !schema.KnownDetector(d) {
			errs = append(errs, fmt.Errorf("%s.detectors[%d]: unknown detector %q (want one of %s)", path, i, d,
				strings.Join(append(append([]string(nil), schema.Detectors...), schema.OtherDetectors...), ", ")))
		}
	}
	for _, l := range []struct {
		name  string
		globs []string
	}{{"principals", m.Principals}, {"resources", m.Resources}, {"source_ips", m.SourceIPs}} {
		for i, g := range l.globs {
			if g == "" {
				errs = append(errs, fmt.Errorf("%s.%s[%d]: empty pattern", path, l.name, i))
			}
		}
	}
	return errors.Join(errs...)
}

// fillBackoff sets the zero fields of an output's retry override from the
// section's policy, so an output can override one field (attempt_timeout).
func fillBackoff(b *notify.Backoff, from notify.Backoff) {
	if b.Initial == 0 {
		b.Initial = from.Initial
	}
	if b.Max == 0 {
		b.Max = from.Max
	}
	if b.Multiplier == 0 {
		b.Multiplier = from.Multiplier
	}
	if b.Jitter == 0 {
		b.Jitter = from.Jitter
	}
	if b.MaxAttempts == 0 && b.MaxElapsed == 0 {
		b.MaxAttempts, b.MaxElapsed = from.MaxAttempts, from.MaxElapsed
	}
	if b.MaxRetryAfter == 0 {
		b.MaxRetryAfter = from.MaxRetryAfter
	}
	if b.AttemptTimeout == 0 {
		b.AttemptTimeout = from.AttemptTimeout
	}
}
