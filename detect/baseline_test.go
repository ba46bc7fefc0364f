package detect

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"auditwatch/schema"
)

func TestPastWindows(t *testing.T) {
	var p pastWindows
	// Windows 10..14 with 2 each, then nothing until 17, with zeros.
	for w := int64(10); w <= 14; w++ {
		p.roll(w, true)
		p.Cur += 2
	}
	p.roll(17, true)
	p.Cur = 50 // the window being judged is not in the baseline
	med, mad, n := p.stats()
	// Past: 10..14 (2 each) and 15 (0); 16 (0) is pending, 17 current.
	if n != 6 || med != 2 || mad != 0 {
		t.Fatalf("median %g MAD %g over %d, want 2, 0 over 6", med, mad, n)
	}
	if p.roll(16, true) {
		t.Fatal("a late window rolled the baseline back")
	}
	// A burst straddling a boundary: the window before the one judged is
	// not in the baseline either.
	var b pastWindows
	for w := int64(1); w <= 30; w++ {
		b.roll(w, true)
		b.Cur = 1
	}
	b.Cur = 4 // window 30: the burst's first part
	b.roll(31, true)
	b.Cur = 8
	if med, _, _ := b.stats(); med != 1 {
		t.Fatalf("median %g while judging window 31, want 1 (window 30 pending)", med)
	}
	b.markAnomalous()
	b.roll(32, true)
	b.roll(33, true)
	for _, r := range b.Past {
		if r.V == 4 || r.V == 8 {
			t.Fatalf("a burst window joined the baseline: %v", b.Past)
		}
	}
	// Without zeros, only active windows count.
	var q pastWindows
	q.roll(1, false)
	q.Cur = 3
	q.roll(1000, false)
	if med, _, n := q.stats(); n != 1 || med != 3 {
		t.Fatalf("active-only baseline %g over %d", med, n)
	}
	// Bounded, zero runs compact.
	for w := int64(2000); w < 2100; w++ {
		q.roll(w, true)
	}
	if _, _, n := q.stats(); n != baselineWindows || len(q.Past) > 2 {
		t.Fatalf("%d past windows in %d runs kept, want %d in at most 2", n, len(q.Past), baselineWindows)
	}
	if l := baselineLimit(2, 1, 10, 3, 1, 6); l != 10 {
		t.Fatalf("limit %g, want the floor 10", l)
	}
	if l := baselineLimit(8, 3, 10, 3, 1, 6); math.Abs(l-26) > 1e-9 {
		t.Fatalf("limit %g, want 26 (8 + 6 x 3)", l)
	}
}

// The volume baseline never learns the burst it judges, nor an earlier
// burst: a bulk read is found however gradually it ramps up, twice.
func TestVolumeBaselineExcludesTheBurst(t *testing.T) {
	var evs []schema.Event
	// History: 3 distinct secrets in each 5-minute window for 100 minutes.
	for w := 0; w < 20; w++ {
		for i := 0; i < 3; i++ {
			evs = append(evs, vev(fmt.Sprintf("h%d-%d", w, i), time.Duration(w)*5*time.Minute+time.Duration(i)*time.Second, "app", "10.0.0.1", "read", fmt.Sprintf("secret/data/app/%d", i)))
		}
	}
	// Two bulk reads, an hour apart, each ramping up one new secret every
	// 10 s to 14 distinct (every read is also sampled by an EWMA).
	for b, at := range []time.Duration{3 * time.Hour, 4 * time.Hour} {
		for i := 0; i < 14; i++ {
			evs = append(evs, vev(fmt.Sprintf("b%d-%d", b, i), at+time.Duration(i)*10*time.Second, "app", "10.0.0.1", "read", fmt.Sprintf("secret/data/other/%d-%d", b, i)))
		}
	}
	cfg := testConfig(learnEnd)
	cfg.FirstTimeAccess.Enabled = boolp(false)
	fs, _ := run(t, cfg, evs)
	var opened []schema.Finding
	for _, f := range ofDetector(fs, schema.DetectorAccessVolumeSpike) {
		if f.Revision == 0 {
			opened = append(opened, f)
		}
	}
	if len(opened) != 2 {
		t.Fatalf("%d bursts found, want 2: %+v", len(opened), opened)
	}
	for _, f := range opened {
		if !strings.Contains(f.Reason, "baseline of 3.0 secrets per window") || f.Attributes["baseline"] != "3.0" {
			t.Errorf("reason does not state the broken baseline: %q %v", f.Reason, f.Attributes)
		}
	}
}
