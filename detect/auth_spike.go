package detect

import (
	"fmt"
	"strings"
	"time"

	"auditwatch/schema"
)

// authSpike counts failed authentications and denied calls in a sliding
// event-time window per principal and/or per source IP (config keys), and
// raises a finding when a key's count reaches the fixed threshold or is far
// above the key's own baseline (the median failures per window over its
// past windows, never the window being judged, and mad_factor MADs; with a
// minimum count). A burst is one finding: later failures update it (same
// DedupeKey, higher Revision and Count) each time the count doubles, until
// the key has been quiet for the cool-down. With both keys, an address
// burst opens only for anonymous failures or for two or more identities
// failing from the address: one identity's failures are its own burst.
type authSpike struct {
	e       *Engine
	cfg     *AuthFailureSpikeConfig
	kinds   map[string]bool
	byPrinc bool
	byIP    bool
	t       *table[spikeState]
	h       hasher
	bucket  int64 // ns per bucket
	keep    int64 // buckets kept: the window plus the largest lateness
}

const spikeBuckets = 12

type spikeState struct {
	// Buckets: failures per bucket (window/spikeBuckets of event time),
	// ascending, only non-empty ones, kept for the window plus the largest
	// source lateness so that a late event counts in its own window.
	Buckets []spikeBucket `json:"bk,omitempty"`
	// Newest and Counts: the ring of 12 buckets of stores written before
	// Buckets (read, converted on first use).
	Newest int64                 `json:"n,omitempty"`
	Counts *[spikeBuckets]uint32 `json:"c,omitempty"`
	// H: failures per past tumbling window (the baseline; the current
	// window is not part of it).
	H      pastWindows `json:"hw"`
	Recent []string    `json:"r,omitempty"`
	// Who: identities failing from this address within the window (ip
	// keys only, bounded).
	Who []whoSeen `json:"h,omitempty"`
	B   burst     `json:"b"`
}

type spikeBucket struct {
	I int64  `json:"i"` // bucket index: event time / bucket width
	N uint32 `json:"n"`
}

// newest is the index of the newest non-empty bucket (0: none).
func (s *spikeState) newest() int64 {
	if len(s.Buckets) == 0 {
		return 0
	}
	return s.Buckets[len(s.Buckets)-1].I
}

// upgrade converts the ring of older stores into Buckets.
func (s *spikeState) upgrade() {
	if s.Counts == nil {
		return
	}
	for i := s.Newest - spikeBuckets + 1; i <= s.Newest; i++ {
		if n := s.Counts[((i%spikeBuckets)+spikeBuckets)%spikeBuckets]; n > 0 {
			s.Buckets = append(s.Buckets, spikeBucket{I: i, N: n})
		}
	}
	s.Counts, s.Newest = nil, 0
}

// add counts one failure in bucket bi, drops buckets older than keep
// buckets before the newest, and returns the largest count of any window
// (spikeBuckets wide) that contains bi. ok is false when bi is older than
// the state kept (later than the allowed lateness and the window).
func (s *spikeState) add(bi, keep int64) (count int, ok bool) {
	newest := max(s.newest(), bi)
	if bi <= newest-keep {
		return 0, false
	}
	i := len(s.Buckets)
	for i > 0 && s.Buckets[i-1].I > bi {
		i--
	}
	if i > 0 && s.Buckets[i-1].I == bi {
		s.Buckets[i-1].N++
	} else {
		s.Buckets = append(s.Buckets, spikeBucket{})
		copy(s.Buckets[i+1:], s.Buckets[i:])
		s.Buckets[i] = spikeBucket{I: bi, N: 1}
	}
	drop := 0
	for drop < len(s.Buckets) && s.Buckets[drop].I <= newest-keep {
		drop++
	}
	if drop > 0 {
		s.Buckets = append(s.Buckets[:0], s.Buckets[drop:]...)
	}
	// Windows [j-spikeBuckets+1, j] for j from bi to bi+spikeBuckets-1.
	var w [2*spikeBuckets - 1]uint32 // buckets bi-spikeBuckets+1 .. bi+spikeBuckets-1
	lo := bi - spikeBuckets + 1
	for _, b := range s.Buckets {
		if b.I >= lo && b.I < lo+int64(len(w)) {
			w[b.I-lo] = b.N
		}
	}
	sum := 0
	for k := 0; k < spikeBuckets; k++ {
		sum += int(w[k])
	}
	count = sum
	for k := spikeBuckets; k < len(w); k++ {
		sum += int(w[k]) - int(w[k-spikeBuckets])
		count = max(count, sum)
	}
	return count, true
}

type whoSeen struct {
	K key   `json:"k"`
	T int64 `json:"t"`
}

const maxWho = 8

// identities records ev's principal in s.Who and returns how many distinct
// identities failed within the window (anonymous failures count none).
func (d *authSpike) identities(s *spikeState, ev *schema.Event, t, win int64) int {
	kept := s.Who[:0]
	for _, w := range s.Who {
		if t-w.T <= win {
			kept = append(kept, w)
		}
	}
	s.Who = kept
	if identity(ev) {
		k := d.h.sum("who", ev.Principal)
		found := false
		for i := range s.Who {
			if s.Who[i].K == k {
				s.Who[i].T, found = max(s.Who[i].T, t), true
			}
		}
		if !found {
			if len(s.Who) >= maxWho {
				s.Who = append(s.Who[:0], s.Who[1:]...)
			}
			s.Who = append(s.Who, whoSeen{K: k, T: t})
		}
	}
	return len(s.Who)
}

func newAuthSpike(e *Engine) *authSpike {
	cfg := &e.cfg.AuthFailureSpike
	d := &authSpike{e: e, cfg: cfg, h: e.newHasher(), kinds: map[string]bool{},
		bucket: cfg.Window.D().Nanoseconds() / spikeBuckets}
	if d.bucket <= 0 {
		d.bucket = 1
	}
	d.keep = spikeBuckets + (e.maxLate+d.bucket-1)/d.bucket
	// A key quiet this long has its burst closed and a baseline of only
	// idle windows: nothing to keep.
	quiet := time.Duration(baselineWindows) * cfg.Window.D()
	d.t = newTable(schema.DetectorAuthFailureSpike, cfg.MaxKeys, e.cfg.MaxSpill, e.st, codec[spikeState](jsonCodec[spikeState]{}), e.log, e.m).
		expire(max(cfg.Cooldown.D(), quiet), func(v *spikeState) int64 { return max(v.B.Last, v.newest()*d.bucket, v.Newest*d.bucket) })
	for _, k := range cfg.FailureKinds {
		d.kinds[k] = true
	}
	for _, k := range cfg.Keys {
		switch k {
		case "principal":
			d.byPrinc = true
		case "ip":
			d.byIP = true
		}
	}
	return d
}

func (d *authSpike) tables() []tableStats { return []tableStats{d.t} }

func (d *authSpike) counts(ev *schema.Event) bool {
	if !ev.Failed() {
		return false
	}
	if ev.Auth {
		return ev.FailureKind != schema.FailureThrottled
	}
	return d.kinds[ev.FailureKind]
}

func (d *authSpike) process(ev *schema.Event, c *evalCtx, out []schema.Finding) []schema.Finding {
	if !d.counts(ev) {
		return out
	}
	if d.byPrinc && c.hasPrincipal {
		out = d.key(ev, c, "principal", ev.Principal, out)
	}
	if d.byIP && ev.SourceIP != "" && !ev.SourceIsService && !ServiceInvoked(ev) {
		out = d.key(ev, c, "ip", ev.SourceIP, out)
	}
	return out
}

func (d *authSpike) key(ev *schema.Event, c *evalCtx, kind, val string, out []schema.Finding) []schema.Finding {
	n, _ := d.t.get(d.h.sum(kind, val), true)
	s := &n.v
	d.t.touch(n)
	t := ev.Time.UnixNano()
	win := d.cfg.Window.D().Nanoseconds()
	max := d.e.cfg.MaxEvidence

	// Baseline: failures per tumbling window (idle windows count as 0);
	// those before the current one are the past the key is judged against.
	if s.H.roll(t/win, true) {
		s.H.Cur++
	}

	// Sliding window count: a late event counts in its own window; the
	// count is that of the fullest window holding it, so the event that
	// completes a burst raises it whatever order the burst arrived in.
	s.upgrade()
	count, inWindow := s.add(t/d.bucket, d.keep)
	if len(s.Recent) >= max {
		s.Recent = append(s.Recent[:0], s.Recent[1:]...)
	}
	s.Recent = append(s.Recent, ev.ID)

	b := &s.B
	if b.open(t, d.cfg.Cooldown.D()) {
		s.H.markAnomalous()
		b.Count++
		b.extend(t)
		b.addID(ev.ID, max)
		b.addItem(principalOrAnon(ev), max)
		// A new kind of failure (bad passwords, then made-up tokens) is
		// news; so is a doubled count.
		newKind := b.addItem("kind:"+ev.FailureKind, max)
		if c.history || (!newKind && b.Count < 2*b.Reported) {
			return out
		}
		b.Rev++
		b.Reported = b.Count
		reason := "update"
		if newKind {
			reason = fmt.Sprintf("burst continues with a new kind of failure (%s): %d failures since it began", ev.FailureKind, b.Count)
		}
		return append(out, d.finding(ev, c, kind, val, s, count, reason))
	}
	if c.history || !inWindow {
		return out
	}
	if kind == "ip" && d.byPrinc && identity(ev) && d.identities(s, ev, t, win) < 2 {
		// One identity failing from one address is that identity's burst,
		// reported by its principal key; the address key speaks for
		// anonymous failures and for many identities from one address.
		return out
	}
	if count < d.cfg.MinCount && count < d.cfg.Threshold {
		return out
	}
	med, mad, nh := s.H.stats()
	fixed := count >= d.cfg.Threshold
	dynamic := count >= d.cfg.MinCount && float64(count) > baselineLimit(med, mad, 0, d.cfg.Factor, 0, d.cfg.MADFactor)
	if !fixed && !dynamic {
		return out
	}
	s.H.markAnomalous()
	*b = burst{Key: schema.MakeID(schema.DetectorAuthFailureSpike, kind, val, ev.ID), Count: count, Reported: count, Last: t}
	b.First = t
	for _, id := range s.Recent {
		b.addID(id, max)
	}
	b.addItem(principalOrAnon(ev), max)
	b.addItem("kind:"+ev.FailureKind, max)
	base := fmt.Sprintf("a baseline of %.1f per %s (median over the %d past windows of this %s; MAD %.1f)", med, d.cfg.Window.D(), nh, kind, mad)
	if nh == 0 {
		base = fmt.Sprintf("no earlier failures of this %s", kind)
	}
	reason := fmt.Sprintf("%d failures in %s vs %s: reached the threshold %d", count, d.cfg.Window.D(), base, d.cfg.Threshold)
	switch {
	case !fixed && nh == 0:
		reason = fmt.Sprintf("%d failures in %s by a %s with no earlier failures on record (alert at %d)", count, d.cfg.Window.D(), kind, d.cfg.MinCount)
	case !fixed:
		reason = fmt.Sprintf("%d failures in %s vs %s: more than %g x the baseline and %g MAD above it (minimum %d)",
			count, d.cfg.Window.D(), base, d.cfg.Factor, d.cfg.MADFactor, d.cfg.MinCount)
	}
	f := d.finding(ev, c, kind, val, s, count, reason)
	// The burst started within the window before this event.
	f.FirstTime = time.Unix(0, max64(t-d.cfg.Window.D().Nanoseconds(), 0)).UTC()
	return append(out, f)
}

func (d *authSpike) finding(ev *schema.Event, c *evalCtx, kind, val string, s *spikeState, inWindow int, reason string) schema.Finding {
	b := &s.B
	f := d.e.finding(schema.DetectorAuthFailureSpike, d.cfg.Severity, ev, c)
	b.fill(&f, schema.DetectorAuthFailureSpike, ev.ID)
	if reason == "update" {
		reason = fmt.Sprintf("burst continues: %d failures since it began (%d in the last %s)", b.Count, inWindow, d.cfg.Window.D())
	}
	f.Reason = reason
	who := "principal " + nameOf(ev)
	if kind == "ip" {
		who = "source address " + val
		f.SourceIP = val
		if !identity(ev) || b.principals() > 1 || len(s.Who) > 1 {
			// Unknown or many identities from one address: no single principal.
			f.Principal, f.PrincipalName = "", ""
		}
	}
	f.Summary = fmt.Sprintf("%d failed authentications or denied calls by %s", b.Count, who)
	f.Attributes["key"] = kind
	f.Attributes["failure_kind"] = ev.FailureKind
	f.Attributes["in_window"] = fmt.Sprint(inWindow)
	med, mad, nh := s.H.stats()
	f.Attributes["baseline"] = fmt.Sprintf("%.1f", med)
	f.Attributes["baseline_mad"] = fmt.Sprintf("%.1f", mad)
	f.Attributes["baseline_windows"] = fmt.Sprint(nh)
	f.Attributes["principals"] = fmt.Sprint(b.principals())
	return f
}

func principalOrAnon(ev *schema.Event) string {
	if identity(ev) {
		return ev.Principal
	}
	if ev.PrincipalName != "" {
		return "anonymous:" + ev.PrincipalName
	}
	return "anonymous"
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// principals counts the distinct identities in a burst's items.
func (b *burst) principals() int {
	n := 0
	for _, x := range b.Items {
		if !strings.HasPrefix(x, "kind:") {
			n++
		}
	}
	return n
}
