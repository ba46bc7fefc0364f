// Package watch owns the pipeline's watch over itself: the silent-source
// alarm (each live source learns its usual gap between arrivals per hour
// of day and raises source_silent when it goes quiet far longer, and again
// when it recovers) and the end-to-end canary (a synthetic read of a
// dedicated Vault secret and AWS secret whose audit events must come back
// through the sources within a deadline, else pipeline_blind; plus the
// Vault audit salt check).
package watch

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"

	"auditwatch/config/duration"
	"auditwatch/schema"
)

// SilenceConfig is the `silence:` section.
type SilenceConfig struct {
	Enabled *bool `yaml:"enabled"`
	// Factor: quiet for more than Factor x the usual gap of this hour of
	// day is silence.
	Factor float64 `yaml:"factor"`
	// MinQuiet: never silence before this long.
	MinQuiet duration.Duration `yaml:"min_quiet"`
	// LearningPeriod: a source alarms only after arriving over at least
	// this long (a one-shot backfill never does).
	LearningPeriod duration.Duration `yaml:"learning_period"`
	// MinSamples: and after this many gaps.
	MinSamples int `yaml:"min_samples"`
	// Alpha of the per-hour moving average of gaps.
	Alpha float64 `yaml:"alpha"`
	// Severity of source_silent.
	Severity schema.Severity `yaml:"severity"`
	// CheckInterval: how often quiet sources are checked (default 5s).
	CheckInterval duration.Duration `yaml:"check_interval"`
}

// SetDefaults fills unset fields.
func (c *SilenceConfig) SetDefaults() {
	if c.Enabled == nil {
		t := true
		c.Enabled = &t
	}
	if c.Factor == 0 {
		c.Factor = 10
	}
	if c.MinQuiet == 0 {
		c.MinQuiet = duration.Duration(5 * time.Minute)
	}
	if c.LearningPeriod == 0 {
		c.LearningPeriod = duration.Duration(time.Hour)
	}
	if c.MinSamples == 0 {
		c.MinSamples = 20
	}
	if c.Alpha == 0 {
		c.Alpha = 0.1
	}
	if c.Severity == "" {
		c.Severity = schema.SeverityHigh
	}
	if c.CheckInterval == 0 {
		c.CheckInterval = duration.Duration(5 * time.Second)
	}
}

// Validate reports every bad field.
func (c SilenceConfig) Validate() error {
	var errs []error
	if c.Factor < 1 {
		errs = append(errs, errors.New("factor: must be at least 1"))
	}
	if c.MinQuiet <= 0 {
		errs = append(errs, errors.New("min_quiet: must be positive"))
	}
	if c.LearningPeriod < 0 {
		errs = append(errs, errors.New("learning_period: must not be negative"))
	}
	if c.MinSamples < 1 {
		errs = append(errs, errors.New("min_samples: must be at least 1"))
	}
	if c.Alpha <= 0 || c.Alpha > 1 {
		errs = append(errs, errors.New("alpha: must be within (0, 1]"))
	}
	if _, err := schema.ParseSeverity(string(c.Severity)); err != nil {
		errs = append(errs, fmt.Errorf("severity: %w", err))
	}
	if c.CheckInterval <= 0 {
		errs = append(errs, errors.New("check_interval: must be positive"))
	}
	return errors.Join(errs...)
}

type sourceState struct {
	first, last time.Time
	gaps        [24]float64 // seconds, moving average per hour of day
	n           [24]int
	total       int
	open        *schema.Finding
}

// maxSources bounds the sources learned (names come from the config; the
// bound keeps a misbehaving source naming scheme from growing the state).
const maxSources = 4096

// Silence learns each source's usual gap between arrivals.
type Silence struct {
	cfg   SilenceConfig
	mu    sync.Mutex
	src   map[string]*sourceState
	dirty bool // changed since the last Save
}

// NewSilence returns a silence detector; cfg is defaulted.
func NewSilence(cfg SilenceConfig) *Silence {
	cfg.SetDefaults()
	return &Silence{cfg: cfg, src: map[string]*sourceState{}}
}

// Observe records an arrival of n events from source at now; it returns
// the recovery finding when the source was silent.
func (s *Silence) Observe(source string, n int, now time.Time) []schema.Finding {
	if n == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.src[source]
	if st == nil {
		if len(s.src) >= maxSources {
			return nil
		}
		st = &sourceState{first: now}
		s.src[source] = st
	}
	s.dirty = true
	var out []schema.Finding
	if !st.last.IsZero() && now.After(st.last) {
		gap := now.Sub(st.last).Seconds()
		h := st.last.UTC().Hour()
		if st.n[h] == 0 {
			st.gaps[h] = gap
		} else {
			st.gaps[h] += s.cfg.Alpha * (gap - st.gaps[h])
		}
		st.n[h]++
		st.total++
	}
	if st.open != nil {
		f := *st.open
		f.Revision++
		f.Severity = schema.SeverityInfo
		f.Time, f.LastTime = now.UTC(), now.UTC()
		f.Summary = fmt.Sprintf("source %s recovered after %s of silence", source, now.Sub(st.last).Round(time.Second))
		f.Reason = "resolved: events arrive again"
		f.Attributes = copyAttrs(f.Attributes, "status", "resolved")
		f.ID = schema.MakeID(schema.DetectorSourceSilent, f.DedupeKey, strconv.Itoa(f.Revision))
		out = append(out, f)
		st.open = nil
	}
	if now.After(st.last) {
		st.last = now
	}
	return out
}

// usual is the learned gap of a source at hour h (falling back to the
// average over the hours learned).
func (st *sourceState) usual(h int) time.Duration {
	if st.n[h] > 0 {
		return time.Duration(st.gaps[h] * float64(time.Second))
	}
	var sum float64
	var k int
	for i := range st.gaps {
		if st.n[i] > 0 {
			sum += st.gaps[i]
			k++
		}
	}
	if k == 0 {
		return 0
	}
	return time.Duration(sum / float64(k) * float64(time.Second))
}

// Threshold is how long a source may stay quiet at now (0: not learned yet).
func (s *Silence) Threshold(source string, now time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.src[source]
	if st == nil {
		return 0
	}
	return s.threshold(st, now)
}

func (s *Silence) threshold(st *sourceState, now time.Time) time.Duration {
	if st.total < s.cfg.MinSamples || st.last.Sub(st.first) < s.cfg.LearningPeriod.D() {
		return 0
	}
	t := time.Duration(float64(st.usual(now.UTC().Hour())) * s.cfg.Factor)
	if t < s.cfg.MinQuiet.D() {
		t = s.cfg.MinQuiet.D()
	}
	return t
}

// Check raises source_silent for every learned source quiet past its threshold.
func (s *Silence) Check(now time.Time) []schema.Finding {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.src))
	for n := range s.src {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []schema.Finding
	for _, name := range names {
		st := s.src[name]
		th := s.threshold(st, now)
		if st.open != nil || th == 0 || now.Sub(st.last) <= th {
			continue
		}
		key := schema.MakeID(schema.DetectorSourceSilent, name, st.last.UTC().Format(time.RFC3339Nano))
		f := schema.Finding{
			ID: schema.MakeID(schema.DetectorSourceSilent, key, "0"), Detector: schema.DetectorSourceSilent, Severity: s.cfg.Severity,
			Time: now.UTC(), Resource: name, Source: name, Count: 1, EventIDs: []string{}, DedupeKey: key,
			FirstTime: st.last.UTC(), LastTime: now.UTC(),
			Summary: fmt.Sprintf("source %s silent for %s (usual gap at this hour %s)", name, now.Sub(st.last).Round(time.Second), st.usual(now.UTC().Hour()).Round(time.Second)),
			Reason: fmt.Sprintf("no event for more than %s (%gx the learned gap, at least %s): a stopped, disabled or redirected audit device, or a broken reader",
				th.Round(time.Second), s.cfg.Factor, s.cfg.MinQuiet.D()),
			Attributes: map[string]string{"source": name, "last_event_at": st.last.UTC().Format(time.RFC3339), "threshold": th.Round(time.Second).String()},
		}
		st.open = &f
		s.dirty = true
		out = append(out, f)
	}
	return out
}

// savedSource is a source's learned state in the state file.
type savedSource struct {
	First time.Time       `json:"first"`
	Last  time.Time       `json:"last"`
	Gaps  [24]float64     `json:"gaps"`
	N     [24]int         `json:"n"`
	Total int             `json:"total"`
	Open  *schema.Finding `json:"open,omitempty"`
}

// Save writes the learned gaps (and open silences) to path when they
// changed since the last Save: written to a temporary file, synced and
// renamed, so a crash leaves the old or the new state.
func (s *Silence) Save(path string) error {
	s.mu.Lock()
	if !s.dirty {
		s.mu.Unlock()
		return nil
	}
	saved := make(map[string]savedSource, len(s.src))
	for name, st := range s.src {
		saved[name] = savedSource{First: st.first, Last: st.last, Gaps: st.gaps, N: st.n, Total: st.total, Open: st.open}
	}
	s.dirty = false
	s.mu.Unlock()
	b, err := json.Marshal(saved)
	if err == nil {
		err = writeFileAtomic(path, b)
	}
	if err != nil {
		s.mu.Lock()
		s.dirty = true
		s.mu.Unlock()
		return fmt.Errorf("silence: save %s: %w", path, err)
	}
	return nil
}

// Load restores what Save wrote (no file: nothing learned yet), so a
// restart keeps watching without a new learning period. The last arrival
// of each source counts from now at the latest: the time the process was
// down is neither a gap learned nor a silence.
func (s *Silence) Load(path string, now time.Time) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("silence: load: %w", err)
	}
	var saved map[string]savedSource
	if err := json.Unmarshal(b, &saved); err != nil {
		return fmt.Errorf("silence: load %s: %w", path, err)
	}
	got := make(map[string]*sourceState, len(saved))
	for name, v := range saved {
		if len(got) >= maxSources {
			break
		}
		st := &sourceState{first: v.First, last: v.Last, gaps: v.Gaps, n: v.N, total: v.Total, open: v.Open}
		for h := range st.gaps {
			if st.n[h] < 0 || !(st.gaps[h] >= 0) {
				return fmt.Errorf("silence: load %s: source %.64q: bad gap at hour %d", path, name, h)
			}
		}
		if st.last.Before(now) {
			st.last = now
		}
		if st.first.After(st.last) {
			st.first = st.last
		}
		got[name] = st
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, st := range got {
		s.src[name] = st
	}
	return nil
}

// writeFileAtomic writes b to path through a synced temporary file.
func writeFileAtomic(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

func copyAttrs(a map[string]string, kv ...string) map[string]string {
	out := make(map[string]string, len(a)+len(kv)/2)
	for k, v := range a {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// DecodeSilence decodes, defaults and validates the `silence:` section.
func DecodeSilence(n *yaml.Node) (SilenceConfig, error) {
	var c SilenceConfig
	if n != nil && n.Kind != 0 {
		if err := n.Decode(&c); err != nil {
			return c, fmt.Errorf("silence: %w", err)
		}
	}
	c.SetDefaults()
	return c, c.Validate()
}
