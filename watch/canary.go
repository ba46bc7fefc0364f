package watch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"go.yaml.in/yaml/v3"

	"auditwatch/config/duration"
	"auditwatch/internal/awscfg"
	"auditwatch/internal/resname"
	"auditwatch/internal/secret"
	"auditwatch/schema"
)

// CanaryConfig is the `canary:` section.
type CanaryConfig struct {
	// Interval between synthetic reads.
	Interval duration.Duration `yaml:"interval"`
	// CheckInterval: how often deadlines are checked and rounds started
	// (default 5s).
	CheckInterval duration.Duration `yaml:"check_interval"`
	// HeartbeatURL is called (GET) after every canary round whose events
	// all came back in time, never while one is missing: point an
	// external dead man's switch at it. Such a URL is a credential (who
	// has it can keep the switch quiet), so it comes from the environment
	// or a file like every other secret: {env: NAME} or {file: PATH}.
	HeartbeatURL secret.Secret `yaml:"heartbeat_url"`
	Vault        *VaultCanary  `yaml:"vault"`
	AWS          *AWSCanary    `yaml:"aws"`
}

// VaultCanary reads a dedicated secret over Vault's HTTP API with a
// dedicated token.
type VaultCanary struct {
	Address string        `yaml:"address"`
	Token   secret.Secret `yaml:"token"`
	// Path is the API path read (KV v2: secret/data/NAME).
	Path string `yaml:"path"`
	// AuditDevice is the audit device path the read file comes from; its
	// sys/audit-hash of the token must equal the token HMAC in the log.
	AuditDevice string            `yaml:"audit_device"`
	Deadline    duration.Duration `yaml:"deadline"`
}

// AWSCanary calls GetSecretValue on a dedicated secret.
type AWSCanary struct {
	AWS      awscfg.Config     `yaml:"aws"`
	SecretID string            `yaml:"secret_id"`
	Deadline duration.Duration `yaml:"deadline"`
}

// SetDefaults fills unset fields.
func (c *CanaryConfig) SetDefaults() {
	if c.Interval == 0 {
		c.Interval = duration.Duration(time.Minute)
	}
	if c.CheckInterval == 0 {
		c.CheckInterval = duration.Duration(5 * time.Second)
	}
	if v := c.Vault; v != nil {
		if v.Path == "" {
			v.Path = "secret/data/auditwatch-canary"
		}
		if v.AuditDevice == "" {
			v.AuditDevice = "file"
		}
		if v.Deadline == 0 {
			v.Deadline = duration.Duration(2 * time.Minute)
		}
	}
	if a := c.AWS; a != nil {
		if a.SecretID == "" {
			a.SecretID = "auditwatch-canary"
		}
		if a.Deadline == 0 {
			// CloudTrail delivers within 15 minutes, S3 notices follow.
			a.Deadline = duration.Duration(25 * time.Minute)
		}
	}
}

// Validate reports every bad field.
func (c CanaryConfig) Validate() error {
	var errs []error
	if c.Interval <= 0 {
		errs = append(errs, errors.New("interval: must be positive"))
	}
	if c.CheckInterval <= 0 {
		errs = append(errs, errors.New("check_interval: must be positive"))
	}
	if err := c.HeartbeatURL.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("heartbeat_url: %w", err))
	}
	if v := c.Vault; v != nil {
		if u, err := url.Parse(v.Address); err != nil || u.Scheme == "" || u.Host == "" {
			errs = append(errs, fmt.Errorf("vault.address: want a URL, got %q", v.Address))
		}
		if v.Token.IsZero() {
			errs = append(errs, errors.New("vault.token: required ({env: NAME} or {file: PATH})"))
		} else if err := v.Token.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("vault.token: %w", err))
		}
		if v.Deadline <= 0 {
			errs = append(errs, errors.New("vault.deadline: must be positive"))
		}
	}
	if a := c.AWS; a != nil {
		if err := a.AWS.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("aws.aws: %w", err))
		}
		if a.Deadline <= 0 {
			errs = append(errs, errors.New("aws.deadline: must be positive"))
		}
	}
	return errors.Join(errs...)
}

// Heartbeat reads the heartbeat URL from its source ("" when none is
// configured). Errors name the source, never the URL.
func (c CanaryConfig) Heartbeat() (string, error) {
	if c.HeartbeatURL.IsZero() {
		return "", nil
	}
	v, err := c.HeartbeatURL.Value()
	if err != nil {
		return "", fmt.Errorf("heartbeat_url: %w", err)
	}
	if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("heartbeat_url (%s): want an http(s) URL", c.HeartbeatURL)
	}
	return v, nil
}

// Active reports whether any canary is configured.
func (c CanaryConfig) Active() bool { return c.Vault != nil || c.AWS != nil }

// SecretsAPI is the part of the Secrets Manager client the AWS canary uses.
type SecretsAPI interface {
	GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
}

type probe struct{ sent time.Time }

type lane struct {
	kind     string // vault, aws
	deadline time.Duration
	name     string // canonical resource name of the canary secret
	pending  []probe
	lastSeen time.Time // passive: the newest canary event's time
	blind    *schema.Finding
	backs    int // probes that came back since the last heartbeat
}

// Canary performs the synthetic reads and matches their audit events.
type Canary struct {
	cfg   CanaryConfig
	http  *http.Client
	sm    SecretsAPI
	lanes []*lane

	// Stage names where arrivals are counted, in pipeline_blind findings:
	// "detect" (the default: the whole path) or "parser" (the Kafka
	// ingest stage).
	Stage string
	// passive: this Canary makes no reads; it expects the canary events
	// another process's reads cause, one per interval (the Kafka detect
	// stage, watching the whole path behind the ingest stage's canary).
	passive bool

	mu       sync.Mutex
	expected string // sys/audit-hash of the Vault canary token
	salt     *schema.Finding
	lastSent time.Time
	events   int
}

// CanaryEvents is the number of canary events consumed (not published).
func (c *Canary) CanaryEvents() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.events
}

// NewCanary returns the canary of cfg (defaulted); sm may be nil without
// an AWS canary.
func NewCanary(cfg CanaryConfig, hc *http.Client, sm SecretsAPI) *Canary {
	cfg.SetDefaults()
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	c := &Canary{cfg: cfg, http: hc, sm: sm}
	if v := cfg.Vault; v != nil {
		c.lanes = append(c.lanes, &lane{kind: "vault", deadline: v.Deadline.D(),
			name: resname.Name(&schema.Event{Source: schema.SourceVault, Resource: v.Path})})
	}
	if a := cfg.AWS; a != nil {
		c.lanes = append(c.lanes, &lane{kind: "aws", deadline: a.Deadline.D(),
			name: resname.Name(&schema.Event{Source: schema.SourceCloudTrail, Resource: a.SecretID})})
	}
	return c
}

// NewPassiveCanary returns a Canary that makes no reads and expects the
// canary events another process's reads cause (the Kafka ingest stage's)
// once per interval: a lane is armed by the first canary event this
// process sees (only the detect instance that owns the canary's partition
// sees them), then each event expects the next within interval +
// deadline, and Disarm (partitions given up) stops expecting.
func NewPassiveCanary(cfg CanaryConfig) *Canary {
	c := NewCanary(cfg, nil, nil)
	c.passive = true
	return c
}

// Disarm stops a passive canary from expecting events until the next one
// arrives (the partitions that carried them were given up).
func (c *Canary) Disarm() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.lanes {
		l.pending = nil
	}
}

// Is reports whether ev is a canary event (of any lane).
func (c *Canary) Is(ev *schema.Event) bool { return c.laneOf(ev) != nil }

// Due reports whether a round of reads is due at now.
func (c *Canary) Due(now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.passive {
		return false
	}
	return c.lastSent.IsZero() || now.Sub(c.lastSent) >= c.cfg.Interval.D()
}

// Probe performs one round of synthetic reads, recorded as sent at now.
// A failed read is returned (and not expected back).
func (c *Canary) Probe(ctx context.Context, now time.Time) error {
	c.mu.Lock()
	c.lastSent = now
	c.mu.Unlock()
	var errs []error
	for _, l := range c.lanes {
		var err error
		switch l.kind {
		case "vault":
			err = c.vaultRead(ctx)
		case "aws":
			err = c.awsRead(ctx)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("canary %s: %w", l.kind, err))
			continue
		}
		c.mu.Lock()
		if len(l.pending) < 1000 {
			l.pending = append(l.pending, probe{sent: now})
		}
		c.mu.Unlock()
	}
	return errors.Join(errs...)
}

func (c *Canary) vaultRead(ctx context.Context) error {
	v := c.cfg.Vault
	tok, err := v.Token.Value()
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	base := strings.TrimSuffix(v.Address, "/")
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/"+strings.TrimPrefix(v.Path, "/"), nil)
	req.Header.Set("X-Vault-Token", tok)
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("read %s: HTTP %d", v.Path, resp.StatusCode)
	}
	// The device's HMAC of the canary token, for the salt check.
	body, _ := json.Marshal(map[string]string{"input": tok})
	req, _ = http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/sys/audit-hash/"+url.PathEscape(v.AuditDevice), bytes.NewReader(body))
	req.Header.Set("X-Vault-Token", tok)
	resp, err = c.http.Do(req)
	if err != nil {
		return fmt.Errorf("audit-hash: %w", err)
	}
	defer resp.Body.Close()
	var out struct {
		Hash string `json:"hash"`
		Data struct {
			Hash string `json:"hash"`
		} `json:"data"`
	}
	if resp.StatusCode/100 != 2 || json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out) != nil {
		return fmt.Errorf("audit-hash %s: HTTP %d", v.AuditDevice, resp.StatusCode)
	}
	h := out.Hash
	if h == "" {
		h = out.Data.Hash
	}
	c.mu.Lock()
	c.expected = h
	c.mu.Unlock()
	return nil
}

func (c *Canary) awsRead(ctx context.Context) error {
	if c.sm == nil {
		return errors.New("no Secrets Manager client")
	}
	_, err := c.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(c.cfg.AWS.SecretID)})
	return err
}

// lane returns the lane an event is the canary of.
func (c *Canary) laneOf(ev *schema.Event) *lane {
	for _, l := range c.lanes {
		switch {
		case l.kind == "vault" && ev.Source == schema.SourceVault && resname.Name(ev) == l.name:
			return l
		case l.kind == "aws" && ev.Source == schema.SourceCloudTrail && ev.Action == "secretsmanager:GetSecretValue" && resname.Name(ev) == l.name:
			return l
		}
	}
	return nil
}

// Match consumes a canary event arriving at now (true: it is one, and is
// kept out of detectors and baselines); the findings are resolutions and
// the salt check.
func (c *Canary) Match(ev *schema.Event, now time.Time) (bool, []schema.Finding) {
	l := c.laneOf(ev)
	if l == nil {
		return false, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events++
	var out []schema.Finding
	// The probes sent before the event's time are back, with clock skew
	// between Vault or AWS and this host allowed (a minute, at most half
	// an interval, so one event never answers the next round's probe). An
	// event older than every pending probe is an old canary event read
	// again (a replay): not an arrival.
	skew := min(time.Minute, c.cfg.Interval.D()/2)
	i := 0
	for i < len(l.pending) && !l.pending[i].sent.After(ev.Time.Add(skew)) {
		i++
	}
	arrived := i > 0
	if c.passive && ev.Time.After(l.lastSeen) {
		// passive: any newer canary event is the one expected (or arms
		// the lane)
		arrived, i = true, len(l.pending)
	}
	if !arrived {
		return true, nil
	}
	l.pending = l.pending[i:]
	l.backs++
	if c.passive {
		l.lastSeen = ev.Time
		l.pending = append(l.pending[:0], probe{sent: ev.Time.Add(c.cfg.Interval.D())})
	}
	if l.blind != nil {
		f := revise(*l.blind, now, schema.SeverityInfo, "canary "+l.kind+" events come back again", "resolved: the canary audit event arrived")
		out = append(out, f)
		l.blind = nil
	}
	if l.kind == "vault" && c.expected != "" && ev.TokenHMAC != "" {
		switch {
		case ev.TokenHMAC != c.expected && c.salt == nil:
			key := schema.MakeID(schema.DetectorPipelineBlind, "salt", c.cfg.Vault.AuditDevice, c.expected)
			f := schema.Finding{ID: schema.MakeID(schema.DetectorPipelineBlind, key, "0"), Detector: schema.DetectorPipelineBlind,
				Severity: schema.SeverityCritical, Time: now.UTC(), Resource: "sys/audit/" + c.cfg.Vault.AuditDevice, Source: schema.SourceVault,
				Count: 1, EventIDs: []string{ev.ID}, DedupeKey: key, FirstTime: now.UTC(), LastTime: now.UTC(),
				Summary: "Vault audit device salt changed: " + c.cfg.Vault.AuditDevice,
				Reason: "the canary token's HMAC in the log (" + ev.TokenHMAC + ") differs from sys/audit-hash/" + c.cfg.Vault.AuditDevice +
					" (" + c.expected + "): the device was re-created or swapped, or the log read is not the device's",
				Attributes: map[string]string{"kind": "audit_salt_changed", "log_hmac": ev.TokenHMAC, "audit_hash": c.expected}}
			c.salt = &f
			out = append(out, f)
		case ev.TokenHMAC == c.expected && c.salt != nil:
			out = append(out, revise(*c.salt, now, schema.SeverityInfo, "Vault audit salt matches again", "resolved: the log's canary HMAC equals sys/audit-hash"))
			c.salt = nil
		}
	}
	return true, out
}

func revise(f schema.Finding, now time.Time, sev schema.Severity, summary, reason string) schema.Finding {
	f.Revision++
	f.Severity = sev
	f.Time, f.LastTime = now.UTC(), now.UTC()
	f.Summary, f.Reason = summary, reason
	f.Attributes = copyAttrs(f.Attributes, "status", "resolved")
	f.ID = schema.MakeID(f.Detector, f.DedupeKey, strconv.Itoa(f.Revision))
	return f
}

// Check raises pipeline_blind for every lane whose oldest probe is past
// its deadline; healthy reports whether every lane's canaries came back
// (some since the last check, none overdue).
func (c *Canary) Check(now time.Time) (out []schema.Finding, healthy bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	healthy = len(c.lanes) > 0
	for _, l := range c.lanes {
		overdue := len(l.pending) > 0 && now.Sub(l.pending[0].sent) > l.deadline
		if overdue {
			healthy = false
			if l.blind == nil {
				sent := l.pending[0].sent
				stage := c.Stage
				if stage == "" {
					stage = "detect"
				}
				key := schema.MakeID(schema.DetectorPipelineBlind, l.kind, stage, sent.UTC().Format(time.RFC3339Nano))
				f := schema.Finding{ID: schema.MakeID(schema.DetectorPipelineBlind, key, "0"), Detector: schema.DetectorPipelineBlind,
					Severity: schema.SeverityCritical, Time: now.UTC(), Resource: l.name, Source: laneSource(l.kind),
					Count: len(l.pending), EventIDs: []string{}, DedupeKey: key, FirstTime: sent.UTC(), LastTime: now.UTC(),
					Summary: fmt.Sprintf("pipeline blind: the %s canary read at %s did not come back within %s", l.kind, sent.UTC().Format(time.RFC3339), l.deadline),
					Reason:  "auditwatch made a synthetic read of " + l.name + " and its audit event never arrived: the audit trail, its delivery or auditwatch's reading of it is broken",
					Attributes: map[string]string{"kind": "canary_missed", "canary": l.kind, "stage": stage, "sent_at": sent.UTC().Format(time.RFC3339Nano),
						"deadline": l.deadline.String()}}
				l.blind = &f
				out = append(out, f)
			}
			continue
		}
		if l.backs == 0 {
			healthy = false
		}
	}
	if healthy {
		for _, l := range c.lanes {
			l.backs = 0
		}
	}
	return out, healthy
}

// Blind reports per lane whether it is blind now (for the metric).
func (c *Canary) Blind() map[string]bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]bool{}
	for _, l := range c.lanes {
		out[l.kind] = l.blind != nil
	}
	return out
}

func laneSource(kind string) string {
	if kind == "vault" {
		return schema.SourceVault
	}
	return schema.SourceCloudTrail
}

// DecodeCanary decodes, defaults and validates the `canary:` section.
func DecodeCanary(n *yaml.Node) (CanaryConfig, error) {
	var c CanaryConfig
	if n != nil && n.Kind != 0 {
		if err := n.Decode(&c); err != nil {
			return c, fmt.Errorf("canary: %w", err)
		}
	}
	c.SetDefaults()
	return c, c.Validate()
}
