// Package incident owns correlation: the stage between detection and
// delivery that joins the findings of one attack into one incident and
// sets schema.Finding.IncidentID, so every output, the store and the Slack
// thread see the same incident.
//
// Findings join an open incident (one whose last finding is within the
// window) when they share its principal; or its source address, when the
// address is the evidence (an unexpected network, an address's failure
// burst) rather than where a principal's routine calls come from; or a
// secret, when the secret is the evidence (a first access) and the address
// is shared too (two keys: every reader of a shared secret has a first
// read of it). An address or secret joins at most MaxFanout distinct
// principals into one incident:
// beyond that it is a shared NAT address or a popular secret, and joining
// through it would chain unrelated activity. Updates of one finding (same
// DedupeKey) stay in the incident of their first revision.
//
// The state is small (open incidents only, bounded by MaxOpen) and is
// saved with the detector's checkpoint, so a restart that replays findings
// gives them the same incident ids.
package incident

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"auditwatch/schema"
)

// Config configures correlation.
type Config struct {
	// Window: a finding joins an incident whose latest finding is at most
	// this much earlier (event time). Zero: 30 minutes.
	Window time.Duration
	// MaxFanout: distinct principals an address or secret may join into
	// one incident. Zero: 3.
	MaxFanout int
	// MaxOpen bounds the open incidents kept (the oldest are closed
	// first). Zero: 10,000.
	MaxOpen int
}

// Defaults fills unset fields.
func (c *Config) Defaults() {
	if c.Window == 0 {
		c.Window = 30 * time.Minute
	}
	if c.MaxFanout == 0 {
		c.MaxFanout = 3
	}
	if c.MaxOpen == 0 {
		c.MaxOpen = 10_000
	}
}

// Validate reports a bad field.
func (c *Config) Validate() error {
	if c.Window < 0 {
		return fmt.Errorf("incident: window must not be negative")
	}
	if c.MaxFanout < 1 {
		return fmt.Errorf("incident: max_fanout must be at least 1, got %d", c.MaxFanout)
	}
	if c.MaxOpen < 1 {
		return fmt.Errorf("incident: max_open must be at least 1, got %d", c.MaxOpen)
	}
	return nil
}

// Bounds of one incident's remembered keys (the rest still join through
// the ones kept).
const (
	maxKeys      = 32
	maxDetectors = 8
	maxDedupe    = 64
)

// open is one open incident.
type open struct {
	ID         string          `json:"id"`
	First      int64           `json:"f"`
	Last       int64           `json:"l"`
	Severity   schema.Severity `json:"s"`
	Findings   int             `json:"n"`
	Principals []string        `json:"p,omitempty"`
	Addresses  []string        `json:"a,omitempty"`
	Secrets    []string        `json:"r,omitempty"`
	SeenAddrs  []string        `json:"sa,omitempty"` // every finding's address (not only evidence)
	Detectors  []string        `json:"d,omitempty"`
	Dedupe     []string        `json:"k,omitempty"`
}

// Correlator assigns incident ids. It is not safe for concurrent use: one
// per detector partition, like the engine it follows.
type Correlator struct {
	cfg  Config
	open []*open // oldest first
}

// New returns a Correlator; cfg gets its defaults.
func New(cfg Config) (*Correlator, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Correlator{cfg: cfg}, nil
}

// addressEvidence: the finding is about its address.
func addressEvidence(f *schema.Finding) bool {
	switch f.Detector {
	case schema.DetectorUnexpectedIP:
		return true
	case schema.DetectorAuthFailureSpike:
		return true
	}
	return f.Attributes["key"] == "ip"
}

// secretEvidence: the finding is about its secret.
func secretEvidence(f *schema.Finding) bool {
	return f.Detector == schema.DetectorFirstTimeAccess && f.Resource != ""
}

// Assign sets IncidentID (and the incident's running summary attributes)
// on each finding, in order.
func (c *Correlator) Assign(fs []schema.Finding) {
	for i := range fs {
		c.assign(&fs[i])
	}
}

func (c *Correlator) assign(f *schema.Finding) {
	t := f.Time.UnixNano()
	c.expire(t)
	inc := c.find(f, t)
	if inc == nil {
		inc = &open{ID: schema.MakeID("incident", f.DedupeKey, f.ID), First: t, Last: t}
		if len(c.open) >= c.cfg.MaxOpen {
			c.open = c.open[1:]
		}
		c.open = append(c.open, inc)
	}
	c.join(inc, f, t)
	f.IncidentID = inc.ID
	if f.Attributes == nil {
		f.Attributes = map[string]string{}
	}
	f.Attributes["incident_severity"] = string(inc.Severity)
	f.Attributes["incident_detectors"] = strings.Join(inc.Detectors, ",")
	f.Attributes["incident_findings"] = strconv.Itoa(inc.Findings)
}

// expire closes incidents idle past the window before t.
func (c *Correlator) expire(t int64) {
	w := c.cfg.Window.Nanoseconds()
	kept := c.open[:0]
	for _, o := range c.open {
		if t-o.Last <= w {
			kept = append(kept, o)
		}
	}
	clear(c.open[len(kept):])
	c.open = kept
}

// find returns the open incident f belongs to, or nil.
func (c *Correlator) find(f *schema.Finding, t int64) *open {
	w := c.cfg.Window.Nanoseconds()
	if f.DedupeKey != "" {
		for _, o := range c.open {
			if slices.Contains(o.Dedupe, f.DedupeKey) {
				return o
			}
		}
	}
	var best *open
	for _, o := range c.open {
		if t < o.First-w || t-o.Last > w {
			continue
		}
		if c.joins(o, f) && (best == nil || o.First < best.First) {
			best = o
		}
	}
	return best
}

// joins reports whether f shares a joining key with o.
func (c *Correlator) joins(o *open, f *schema.Finding) bool {
	if f.Principal != "" && slices.Contains(o.Principals, f.Principal) {
		return true
	}
	newPrincipal := f.Principal != "" && !slices.Contains(o.Principals, f.Principal)
	fanoutOK := !newPrincipal || len(o.Principals) < c.cfg.MaxFanout
	if f.SourceIP != "" && addressEvidence(f) && fanoutOK && slices.Contains(o.Addresses, f.SourceIP) {
		return true
	}
	// A secret is popular by nature (every reader of a shared secret has
	// a first read of it): it joins another principal only together with
	// a second shared key, the address.
	if secretEvidence(f) && fanoutOK && slices.Contains(o.Secrets, f.Resource) && f.SourceIP != "" && slices.Contains(o.SeenAddrs, f.SourceIP) {
		return true
	}
	return false
}

func addBounded(list []string, s string, n int) []string {
	if s == "" || slices.Contains(list, s) || len(list) >= n {
		return list
	}
	return append(list, s)
}

func (c *Correlator) join(o *open, f *schema.Finding, t int64) {
	o.First, o.Last = min(o.First, t), max(o.Last, t)
	if f.Severity.Rank() > o.Severity.Rank() {
		o.Severity = f.Severity
	}
	if f.Revision == 0 || !slices.Contains(o.Dedupe, f.DedupeKey) {
		o.Findings++
	}
	o.Principals = addBounded(o.Principals, f.Principal, maxKeys)
	if addressEvidence(f) {
		o.Addresses = addBounded(o.Addresses, f.SourceIP, maxKeys)
	}
	if secretEvidence(f) {
		o.Secrets = addBounded(o.Secrets, f.Resource, maxKeys)
	}
	o.SeenAddrs = addBounded(o.SeenAddrs, f.SourceIP, maxKeys)
	o.Detectors = addBounded(o.Detectors, f.Detector, maxDetectors)
	sort.Strings(o.Detectors)
	if len(o.Dedupe) >= maxDedupe && !slices.Contains(o.Dedupe, f.DedupeKey) {
		o.Dedupe = o.Dedupe[1:]
	}
	o.Dedupe = addBounded(o.Dedupe, f.DedupeKey, maxDedupe)
}

// Open is the number of open incidents.
func (c *Correlator) Open() int { return len(c.open) }

// MarshalState returns the open incidents for a checkpoint.
func (c *Correlator) MarshalState() ([]byte, error) {
	b, err := json.Marshal(c.open)
	if err != nil {
		return nil, fmt.Errorf("incident: save state: %w", err)
	}
	return b, nil
}

// RestoreState replaces the open incidents with a checkpoint's; empty b
// means none.
func (c *Correlator) RestoreState(b []byte) error {
	c.open = nil
	if len(b) == 0 {
		return nil
	}
	if err := json.Unmarshal(b, &c.open); err != nil {
		c.open = nil
		return fmt.Errorf("incident: restore state: %w", err)
	}
	if len(c.open) > c.cfg.MaxOpen {
		c.open = c.open[len(c.open)-c.cfg.MaxOpen:]
	}
	return nil
}
