package sigma

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"sync/atomic"

	"auditwatch/schema"
)

// DetectorName is the detector of findings raised by Sigma rules.
const DetectorName = schema.DetectorSigma

// Finding attributes.
const (
	AttrRuleID     = "rule_id"
	AttrRuleTitle  = "rule_title"
	AttrAuthor     = "author"
	AttrLicense    = "license"
	AttrReferences = "references"
	AttrTags       = "tags"
	AttrTechniques = "techniques"
	AttrLevel      = "level"
	AttrCorrType   = "correlation"
	AttrGroup      = "group"
)

// Severity maps a Sigma level to a finding severity.
func Severity(level string) schema.Severity {
	switch level {
	case "informational":
		return schema.SeverityInfo
	case "low":
		return schema.SeverityLow
	case "high":
		return schema.SeverityHigh
	case "critical":
		return schema.SeverityCritical
	}
	return schema.SeverityMedium
}

// maxAttr bounds one attribute value.
const maxAttr = 512

func clip(s string) string {
	if len(s) <= maxAttr {
		return s
	}
	cut := maxAttr
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + "…"
}

func attributes(r *Rule) map[string]string {
	a := map[string]string{
		AttrRuleTitle: clip(r.Title),
		AttrRuleID:    clip(r.Key()),
	}
	set := func(k, v string) {
		if v != "" {
			a[k] = clip(v)
		}
	}
	set(AttrAuthor, r.Author)
	set(AttrLicense, r.License)
	set(AttrLevel, r.Level)
	if len(r.References) > 0 {
		refs := r.References
		if len(refs) > 5 {
			refs = refs[:5]
		}
		set(AttrReferences, strings.Join(refs, " "))
	}
	set(AttrTags, strings.Join(r.Tags, ","))
	set(AttrTechniques, strings.Join(r.Techniques(), ","))
	return a
}

// Evaluator runs a Set over events: single-event rules on every event's
// original record, correlation rules on their hits. Not safe for
// concurrent use (one per partition).
type Evaluator struct {
	set  *Set
	p    Parser
	corr *Correlator
	hits []Hit
	// Unparsed counts events whose raw record could not be read; NoRaw
	// those that carried none.
	Unparsed, NoRaw atomic.Int64
}

// NewEvaluator returns an Evaluator with empty correlation state.
func NewEvaluator(s *Set) *Evaluator {
	return &Evaluator{set: s, corr: NewCorrelator(s)}
}

// Set is the evaluator's rule set.
func (e *Evaluator) Set() *Set { return e.set }

// Correlator is the evaluator's correlation state.
func (e *Evaluator) Correlator() *Correlator { return e.corr }

// Process evaluates ev (its Raw record) and appends the findings to out.
func (e *Evaluator) Process(ev *schema.Event, out []schema.Finding) []schema.Finding {
	if hits, ok := e.set.marks.decode(ev.Mark, e.hits[:0]); ok {
		// matched when read (Set.Wants), the hits written on the event,
		// the findings made of the event alone (bareOK), the print of
		// its id with them
		e.hits = hits
		e.corr.print, e.corr.printed = ev.Mark.More, true
		out = e.emit(ev, nil, out)
		e.corr.printed = false
		return out
	}
	if len(ev.Raw) == 0 {
		if hits, ok := e.set.bare.take(ev, e.hits[:0]); ok {
			// matched when read (Set.Wants), the findings made of the
			// event alone (bareOK): the record was not kept
			e.hits = hits
			return e.emit(ev, nil, out)
		}
		e.NoRaw.Add(1)
		return out
	}
	hits, ok := e.set.bare.take(ev, e.hits[:0])
	if !ok {
		hits, ok = e.set.memo.take(ev.Raw, e.hits[:0])
	}
	if ok {
		// evaluated when the record was read (Set.Wants): the record is
		// read only for what the findings need
		e.hits = hits
		var rec *Record
		if ev.Time.IsZero() || e.feedsAny() {
			var err error
			if rec, err = e.p.record(ev.Raw, ev.Source); err != nil {
				e.Unparsed.Add(1)
				return out
			}
		}
		return e.emit(ev, rec, out)
	}
	hits, rec, err := e.set.MatchEvent(ev, &e.p, e.hits[:0])
	e.hits = hits
	if err != nil {
		e.Unparsed.Add(1)
		return out
	}
	if len(hits) == 0 {
		return out
	}
	return e.emit(ev, rec, out)
}

// feedsAny reports whether some hit feeds a correlation.
func (e *Evaluator) feedsAny() bool {
	for _, h := range e.hits {
		if len(e.set.feeds[h.Rule]) > 0 {
			return true
		}
	}
	return false
}

// ProcessRecord is Process for a record already parsed.
func (e *Evaluator) ProcessRecord(ev *schema.Event, rec *Record, out []schema.Finding) []schema.Finding {
	e.hits = e.set.Match(rec, e.hits[:0])
	if len(e.hits) == 0 {
		return out
	}
	return e.emit(ev, rec, out)
}

// emit turns the hits of one record into findings and feeds the
// correlations.
func (e *Evaluator) emit(ev *schema.Event, rec *Record, out []schema.Finding) []schema.Finding {
	t := ev.Time
	if t.IsZero() {
		t = rec.EventTime()
	}
	evID := ev.ID
	if evID == "" {
		sum := sha256.Sum256(ev.Raw)
		evID = hex.EncodeToString(sum[:8])
	}
	for _, h := range e.hits {
		if h.Standalone {
			if f, ok := e.corr.repeat(h.Rule, ev, evID, t); ok {
				out = append(out, f)
			}
		}
		// (a rule with a bit in this set's marks feeds nothing: no map
		// lookup for the common hit)
		if !e.set.marks.has(h.Rule) && len(e.set.feeds[h.Rule]) > 0 {
			for _, fr := range e.corr.Feed(h.Rule, rec, t, evID) {
				if !fr.Rule.referenced || fr.Rule.generated {
					out = append(out, correlated(&fr, ev))
				}
			}
		}
	}
	return out
}

func base(r *Rule, ev *schema.Event) schema.Finding {
	return schema.Finding{
		Detector:      DetectorName,
		Severity:      Severity(r.Level),
		Time:          ev.Time,
		Principal:     ev.Principal,
		PrincipalName: ev.PrincipalName,
		Resource:      ev.Resource,
		SourceIP:      ev.SourceIP,
		Source:        ev.Source,
		Account:       ev.Account,
		Attributes:    attributes(r),
	}
}

func single(r *Rule, ev *schema.Event, evID string) schema.Finding {
	f := base(r, ev)
	f.ID = schema.MakeID(DetectorName, r.Key(), evID)
	f.DedupeKey = f.ID
	f.Count = 1
	f.EventIDs = []string{evID}
	f.FirstTime, f.LastTime = ev.Time, ev.Time
	who := ev.PrincipalName
	if who == "" {
		who = ev.Principal
	}
	f.Summary = clip(fmt.Sprintf("Sigma rule %q (by %s): %s by %s", r.Title, authorOr(r), ev.Action, orDash(who)))
	f.Reason = clip(firstLine(r.Description))
	return f
}

func correlated(fr *Firing, ev *schema.Event) schema.Finding {
	r := fr.Rule
	f := base(r, ev)
	f.ID = schema.MakeID(DetectorName, fr.key()...)
	f.DedupeKey = f.ID
	f.Count = int(fr.Count)
	f.EventIDs = fr.EventIDs
	f.FirstTime, f.LastTime = fr.First, fr.Last
	f.Attributes[AttrCorrType] = r.Correlation.Type
	var g []string
	for _, k := range sortedGroupKeys(fr.Group) {
		g = append(g, k+"="+fr.Group[k])
	}
	if len(g) > 0 {
		f.Attributes[AttrGroup] = clip(strings.Join(g, " "))
	}
	f.Summary = clip(fmt.Sprintf("Sigma correlation %q (by %s): %s %d within %s (%s)", r.Title, authorOr(r), r.Correlation.Type, fr.Count, r.Correlation.Timespan, strings.Join(g, " ")))
	f.Reason = clip(firstLine(r.Description))
	return f
}

func authorOr(r *Rule) string {
	if r.Author == "" {
		return "unknown author"
	}
	return r.Author
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return strings.TrimSpace(s[:i])
	}
	return s
}
