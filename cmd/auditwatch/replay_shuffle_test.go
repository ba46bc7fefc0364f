package main

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
	"time"

	"auditwatch/detect"
	"auditwatch/detect/state"
	"auditwatch/gen"
	"auditwatch/ingest"
	"auditwatch/schema"

	"github.com/prometheus/client_golang/prometheus"
)

// TestDecideOnArrivalShuffledCloudTrail runs the shipped detector
// defaults over generated traffic twice: in event-time order, and as a
// live pipeline receives it, with every CloudTrail event delivered up to
// 15 minutes late (uniformly at random) while Vault events arrive at once.
// Both runs leave the same incidents open after the learning period (the
// rollout rule included: reads that arrived before their secret's write
// are resolved by a revision when it arrives), every labelled anomaly is found in both, and no
// event counts as late (all within CloudTrail's shipped lateness).
func TestDecideOnArrivalShuffledCloudTrail(t *testing.T) {
	g, err := gen.New(gen.Config{Seed: 7, Events: 60_000, Anomalies: true, CloudTrailShare: -1}.Defaults())
	if err != nil {
		t.Fatal(err)
	}
	var raw bytes.Buffer
	var buf []byte
	for {
		var ok bool
		if buf, _, ok = g.Next(buf[:0]); !ok {
			break
		}
		raw.Write(buf)
	}
	r := ingest.NewReader(bytes.NewReader(raw.Bytes()), "gen", ingest.DefaultOptions())
	var evs []schema.Event
	for {
		ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("generated record rejected: %v", err)
		}
		evs = append(evs, ev)
	}
	r.Flush()
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].Time.Before(evs[j].Time) })

	// Arrival order: CloudTrail delayed by up to 15 minutes.
	rng := rand.New(rand.NewPCG(1, 2))
	type arrival struct {
		at time.Time
		ev schema.Event
	}
	arr := make([]arrival, len(evs))
	nCT := 0
	for i, ev := range evs {
		at := ev.Time
		if ev.Source == schema.SourceCloudTrail {
			at = at.Add(time.Duration(rng.Int64N(int64(15 * time.Minute))))
			nCT++
		}
		arr[i] = arrival{at, ev}
	}
	sort.SliceStable(arr, func(i, j int) bool { return arr[i].at.Before(arr[j].at) })
	shuffled := make([]schema.Event, len(arr))
	moved := 0
	for i := range arr {
		shuffled[i] = arr[i].ev
		if shuffled[i].ID != evs[i].ID {
			moved++
		}
	}
	if nCT == 0 || moved < len(evs)/10 {
		t.Fatalf("%d CloudTrail events, %d of %d moved: the shuffle did not reorder", nCT, moved, len(evs))
	}

	learn := g.LearningEnd()
	run := func(in []schema.Event, cfg detect.Config) ([]schema.Finding, detect.Stats) {
		st, err := state.Open(state.Config{Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		cfg.LearnUntil = learn
		eng, err := detect.New(cfg, st, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		var fs []schema.Finding
		for i, ev := range in {
			fs = append(fs, eng.Process(ev)...)
			if i%5000 == 4999 {
				if err := eng.Checkpoint(nil); err != nil {
					t.Fatal(err)
				}
			}
		}
		return fs, eng.Stats()
	}
	inOrder, s1 := run(evs, detect.Config{})
	live, s2 := run(shuffled, detect.Config{})
	if s2.Late != 0 || s1.Late != 0 {
		t.Errorf("late events: in order %d, shuffled %d; want 0 within the 15-minute CloudTrail lateness", s1.Late, s2.Late)
	}
	a, b := detect.Incidents(detect.Unresolved(inOrder)), detect.Incidents(detect.Unresolved(live))
	// The same open incidents whatever the arrival order, the rollout rule
	// included: a first read is reported on arrival, and a write of its
	// secret arriving after it (dated within the grace before it) resolves
	// that finding with a revision.
	if len(a) == 0 || !slices.Equal(a, b) {
		for _, x := range b {
			if !slices.Contains(a, x) {
				t.Errorf("incident %s only when shuffled", x)
			}
		}
		for _, x := range a {
			if !slices.Contains(b, x) {
				t.Errorf("incident %s of the in-order run missing when shuffled", x)
			}
		}
	}
	noRollout := detect.Config{}
	noRollout.FirstTimeAccess.RolloutGrace = -1
	ra, _ := run(evs, noRollout)
	if x := detect.Incidents(detect.Unresolved(ra)); len(x) <= len(a) {
		t.Errorf("rollout rule off: %d incidents, rule on: %d; the generated rollouts should raise incidents without it", len(x), len(a))
	}
	for _, l := range g.Labels() {
		for name, fs := range map[string][]schema.Finding{"in order": inOrder, "shuffled": live} {
			found := false
			for _, f := range fs {
				found = found || genLabelFound(l, f, l.Detector)
			}
			if !found {
				t.Errorf("%s: label %s (%s): no %s finding %+v", name, l.ID, l.Kind, l.Detector, l)
				for _, f := range fs {
					if f.Principal == l.Principal {
						t.Logf("  %s %s %s %v", f.Detector, f.Time, f.Summary, f.EventIDs)
					}
				}
			}
		}
	}
	t.Logf("%d events (%d CloudTrail, %d out of place), %d incidents, findings %d in order / %d shuffled; first-seen revised by late events: %d",
		len(evs), nCT, moved, len(a), len(inOrder), len(live), s2.FirstSeenRevised)
}
