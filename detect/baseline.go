package detect

import (
	"fmt"
	"slices"
)

// baselineWindows bounds the past windows a baseline covers per key.
const baselineWindows = 120

// winRun is a run of N consecutive past windows with value V (runs keep a
// mostly idle key's zero windows small).
type winRun struct {
	V uint32 `json:"v"`
	N uint32 `json:"n"`
}

// pastWindows is a key's baseline: its value in each of its last finished
// tumbling windows, summarised by median and MAD, which one outlier window
// (an earlier burst) barely moves. Neither the current window nor the one
// just before it (which a sliding window ending now overlaps) is part of
// it, so a burst is never judged against itself, whichever window
// boundary it straddles; nor is any window that raised a finding.
type pastWindows struct {
	W    int64    `json:"w,omitempty"` // index of the current window
	Cur  uint32   `json:"c,omitempty"` // the current window's value
	Past []winRun `json:"p,omitempty"` // finished windows, oldest first
	// Pend is the value of window W-1 (HasPend), not yet in Past.
	Pend    uint32 `json:"pv,omitempty"`
	HasPend bool   `json:"ph,omitempty"`
	// Anomalous and PendAnomalous: the window raised a finding (or was
	// part of one); it never joins the past.
	Anomalous     bool `json:"a,omitempty"`
	PendAnomalous bool `json:"pa,omitempty"`
}

// markAnomalous keeps the current window and the one before it (a burst
// straddling the boundary) out of the baseline.
func (p *pastWindows) markAnomalous() { p.Anomalous, p.PendAnomalous = true, true }

// roll makes window w current. Finished windows join the past one window
// late; with zeros, the windows skipped in between count as 0 (nothing
// happened). An older w (a late event) leaves the windows as they are and
// reports false.
func (p *pastWindows) roll(w int64, zeros bool) bool {
	switch {
	case p.W == 0 && p.Cur == 0 && len(p.Past) == 0 && !p.HasPend:
		p.W = w
		return true
	case w == p.W:
		return true
	case w < p.W:
		return false
	}
	if p.HasPend && !p.PendAnomalous {
		p.push(p.Pend, 1)
	}
	switch {
	case w == p.W+1:
		p.Pend, p.HasPend, p.PendAnomalous = p.Cur, true, p.Anomalous
	case zeros:
		if !p.Anomalous {
			p.push(p.Cur, 1)
		}
		if gap := w - p.W - 2; gap > 0 {
			p.push(0, uint32(min(gap, baselineWindows)))
		}
		p.Pend, p.HasPend, p.PendAnomalous = 0, true, false
	default:
		if !p.Anomalous {
			p.push(p.Cur, 1)
		}
		p.Pend, p.HasPend, p.PendAnomalous = 0, false, false
	}
	p.W, p.Cur, p.Anomalous = w, 0, false
	return true
}

func (p *pastWindows) push(v, n uint32) {
	if k := len(p.Past); k > 0 && p.Past[k-1].V == v {
		p.Past[k-1].N += n
	} else {
		p.Past = append(p.Past, winRun{V: v, N: n})
	}
	total := uint32(0)
	for _, r := range p.Past {
		total += r.N
	}
	for total > baselineWindows {
		cut := min(total-baselineWindows, p.Past[0].N)
		p.Past[0].N -= cut
		total -= cut
		if p.Past[0].N == 0 {
			p.Past = append(p.Past[:0], p.Past[1:]...)
		}
	}
}

// stats returns the median and the median absolute deviation of the past
// windows, and how many there are.
func (p *pastWindows) stats() (median, mad float64, n int) {
	if len(p.Past) == 0 {
		return 0, 0, 0
	}
	xs := make([]winRun, len(p.Past))
	copy(xs, p.Past)
	median, n = weightedMedian(xs, func(r winRun) float64 { return float64(r.V) })
	mad, _ = weightedMedian(xs, func(r winRun) float64 {
		d := float64(r.V) - median
		if d < 0 {
			d = -d
		}
		return d
	})
	return median, mad, n
}

// weightedMedian is the median of the values val(x), each counted x.N
// times (xs is reordered).
func weightedMedian(xs []winRun, val func(winRun) float64) (float64, int) {
	slices.SortFunc(xs, func(a, b winRun) int {
		va, vb := val(a), val(b)
		switch {
		case va < vb:
			return -1
		case va > vb:
			return 1
		}
		return 0
	})
	total := 0
	for _, x := range xs {
		total += int(x.N)
	}
	if total == 0 {
		return 0, 0
	}
	at := func(k int) float64 { // the k-th value, 0-based
		for _, x := range xs {
			if k < int(x.N) {
				return val(x)
			}
			k -= int(x.N)
		}
		return val(xs[len(xs)-1])
	}
	if total%2 == 1 {
		return at(total / 2), total
	}
	return (at(total/2-1) + at(total/2)) / 2, total
}

// baselineLimit is the value above which a window is abnormal for a key
// whose past windows have this median and MAD: at least floor, more than
// factor x the median (not below minBase), and more than madFactor MADs
// above the median.
func baselineLimit(median, mad float64, floor int, factor, minBase, madFactor float64) float64 {
	return max(float64(floor), factor*max(median, minBase), median+madFactor*mad)
}

// describeBaseline states a baseline for a finding's reason.
func describeBaseline(median, mad float64, n int, unit string) string {
	if n == 0 {
		return "no past windows"
	}
	return fmt.Sprintf("a baseline of %.1f %s (median; MAD %.1f) over the %d past windows", median, unit, mad, n)
}
