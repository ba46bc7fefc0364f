package detect

import (
	"fmt"
	"strconv"
	"time"

	"auditwatch/schema"
)

// volume raises a finding when a principal, past its learning period,
// reads far more distinct secrets within a short window than it usually
// does: at least floor and more than factor x its baseline (the median of
// the distinct secrets it read in its past windows with reads, never the
// window being judged) and mad_factor MADs above it; with fewer than
// min_history such windows the floor alone judges.
// A principal still learning has no baseline and alerts only at
// learning_floor. Denied reads count; a bulk call (BatchGetSecretValue by
// filter) counts as bulk_weight secrets. One finding per burst; updates
// when the count grows by half.
type volume struct {
	e    *Engine
	cfg  *AccessVolumeSpikeConfig
	t    *table[volState]
	h    hasher
	bulk *globMemo // cfg.BulkActions
}

type seenRes struct {
	K key   `json:"k"`
	T int64 `json:"t"`
}

type volState struct {
	Seen []seenRes   `json:"s,omitempty"`
	H    pastWindows `json:"h"` // distinct secrets per past window with reads
	Last int64       `json:"l"` // last in-scope read
	B    burst       `json:"b"`
}

func newVolume(e *Engine) *volume {
	cfg := &e.cfg.AccessVolumeSpike
	return &volume{e: e, cfg: cfg, h: e.newHasher(), bulk: newGlobMemo(cfg.BulkActions),
		t: newTable(schema.DetectorAccessVolumeSpike, cfg.MaxPrincipals, e.cfg.MaxSpill, e.st, codec[volState](jsonCodec[volState]{}), e.log, e.m).
			expire(max(cfg.LearningPeriod, e.cfg.FirstTimeAccess.ForgetAfter).D(), func(v *volState) int64 { return max(v.Last, v.B.Last) })}
}

func (d *volume) tables() []tableStats { return []tableStats{d.t} }

func (d *volume) process(ev *schema.Event, c *evalCtx, out []schema.Finding) []schema.Finding {
	if !c.hasPrincipal || ev.Action == "vault:list" {
		return out
	}
	if ev.Failed() && ev.FailureKind != schema.FailurePermissionDenied {
		return out
	}
	res, ok := c.scope(ev)
	if !ok {
		return out
	}
	t := ev.Time.UnixNano()
	win := d.cfg.Window.D().Nanoseconds()
	n, _ := d.t.get(c.principalKey(ev), true)
	d.t.touch(n)
	s := &n.v
	s.Last = max(s.Last, t)
	// A bulk call reads an unknown number of secrets: it weighs BulkWeight
	// distinct ones (keys derived from its event id).
	weight := 1
	if d.bulk.match(ev.Action) {
		weight = d.cfg.BulkWeight
	}
	// Drop reads that left the window; refresh or add this one.
	have := false
	for w := 0; w < weight; w++ {
		var k key
		if weight == 1 {
			k = d.h.sum(res)
		} else {
			k = d.h.sum(res, ev.ID, strconv.Itoa(w))
		}
		kept := s.Seen[:0]
		found := false
		for _, x := range s.Seen {
			// Reads are kept for the window plus the largest lateness: a
			// late read still counts in its own window.
			if s.Last-x.T > win+d.e.maxLate {
				continue
			}
			if x.K == k {
				found = true
				if t > x.T {
					x.T = t
				}
			}
			kept = append(kept, x)
		}
		s.Seen = kept
		if !found {
			if len(s.Seen) >= d.cfg.MaxTracked {
				oldest := 0
				for i := range s.Seen {
					if s.Seen[i].T < s.Seen[oldest].T {
						oldest = i
					}
				}
				s.Seen = append(s.Seen[:oldest], s.Seen[oldest+1:]...)
			}
			s.Seen = append(s.Seen, seenRes{K: k, T: t})
		}
		have = have || found
	}
	distinct, first := windowDistinct(s.Seen, t, win)
	current := s.H.roll(t/win, false)
	// The limit is never below the floor: under it, no baseline is needed.
	var med, mad float64
	var nh int
	limit := float64(d.cfg.Floor)
	trusted := true
	if distinct >= d.cfg.Floor || s.B.Key != "" {
		med, mad, nh = s.H.stats()
		limit = baselineLimit(med, mad, d.cfg.Floor, d.cfg.Factor, d.cfg.MinBaseline, d.cfg.MADFactor)
		if trusted = nh >= d.cfg.MinHistory; !trusted {
			// Too little history for a baseline: the floor alone judges.
			limit = float64(d.cfg.Floor)
		}
	}
	learning := c.history || !c.learned(ev.Time, d.cfg.LearningPeriod.D())
	if learning && !c.history {
		// No baseline of its own yet: only a bulk read this large counts.
		limit = float64(d.cfg.LearningFloor)
	}
	max := d.e.cfg.MaxEvidence
	b := &s.B
	if b.open(t, d.cfg.Cooldown.D()) {
		s.H.markAnomalous()
		// The burst goes on while reads stay above the alert level; the
		// principal's routine reads neither extend nor grow it (so it ends
		// a cool-down after the spike).
		if have || float64(distinct) < limit {
			return out
		}
		b.Count += weight
		b.addID(ev.ID, max)
		b.addItem(res, max)
		b.extend(t)
		if c.history || 2*b.Count < 3*b.Reported {
			return out
		}
		b.Rev++
		b.Reported = b.Count
		return append(out, d.finding(ev, c, s, distinct, fmt.Sprintf("burst continues: %d distinct secrets since it began", b.Count)))
	}
	if c.history || float64(distinct) < limit {
		// Normal reads build the baseline; the window being judged joins
		// it only once it is over.
		if current && uint32(distinct) > s.H.Cur {
			s.H.Cur = uint32(distinct)
		}
		return out
	}
	s.H.markAnomalous()
	*b = burst{Key: schema.MakeID(schema.DetectorAccessVolumeSpike, ev.Principal, ev.ID), Count: distinct, Reported: distinct, First: min(first, t), Last: max64(t, s.Last)}
	b.addID(ev.ID, max)
	b.addItem(res, max)
	reason := fmt.Sprintf("%d distinct secrets within %s vs %s with reads (alert above %.0f: floor %d, %g x baseline, baseline + %g MAD)",
		distinct, d.cfg.Window.D(), describeBaseline(med, mad, nh, "secrets per window"), limit, d.cfg.Floor, d.cfg.Factor, d.cfg.MADFactor)
	if !trusted {
		reason = fmt.Sprintf("%d distinct secrets within %s reached the floor of %d; the principal has %d past windows with reads, fewer than the %d a baseline needs",
			distinct, d.cfg.Window.D(), d.cfg.Floor, nh, d.cfg.MinHistory)
	}
	if learning {
		reason = fmt.Sprintf("%d distinct secrets within %s by a principal still in its learning period (alert at %d)",
			distinct, d.cfg.Window.D(), d.cfg.LearningFloor)
	}
	if weight > 1 {
		reason += fmt.Sprintf("; each %s call counts as %d secrets", ev.Action, weight)
	}
	return append(out, d.finding(ev, c, s, distinct, reason))
}

func (d *volume) finding(ev *schema.Event, c *evalCtx, s *volState, distinct int, reason string) schema.Finding {
	b := &s.B
	f := d.e.finding(schema.DetectorAccessVolumeSpike, d.cfg.Severity, ev, c)
	b.fill(&f, schema.DetectorAccessVolumeSpike, ev.ID)
	f.Resource = ""
	f.Summary = fmt.Sprintf("%s read %d distinct secrets within %s", nameOf(ev), b.Count, d.cfg.Window.D())
	f.Reason = reason
	f.Attributes["in_window"] = fmt.Sprint(distinct)
	med, mad, nh := s.H.stats()
	f.Attributes["baseline"] = fmt.Sprintf("%.1f", med)
	f.Attributes["baseline_mad"] = fmt.Sprintf("%.1f", mad)
	f.Attributes["baseline_windows"] = fmt.Sprint(nh)
	f.Attributes["first_seen"] = time.Unix(0, b.First).UTC().Format(time.RFC3339Nano)
	return f
}

// windowDistinct returns how many resources of seen (each at its latest
// read) fall in the fullest window of width win that contains t, and
// where that window's first read is. Windows ending at t and at every
// later read up to t+win are tried, so a late read counts in the window it
// completes.
func windowDistinct(seen []seenRes, t, win int64) (int, int64) {
	best, first := 0, t
	try := func(end int64) {
		n, f := 0, end
		for _, x := range seen {
			if x.T <= end && end-x.T <= win {
				n++
				f = min(f, x.T)
			}
		}
		if n > best {
			best, first = n, f
		}
	}
	try(t)
	for _, x := range seen {
		if x.T > t && x.T-t <= win {
			try(x.T)
		}
	}
	return best, first
}
