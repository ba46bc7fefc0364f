package detect

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"auditwatch/schema"
)

// TestGroupingLosesNoPair interleaves new principal/secret pairs of three
// principals whose first_time_access groups are all open, and crashes the
// engine (closed without a checkpoint, as SIGKILL leaves it) at random
// points, replaying from the last checkpoint as a restart does. Every new
// pair is reported by a finding naming it, and the findings (by id, a
// replayed one being the same finding) are those of an uninterrupted run.
func TestGroupingLosesNoPair(t *testing.T) {
	principals := []string{"p1", "p2", "p3"}
	var evs []schema.Event
	// History: each principal reads its own secret.
	for i, p := range principals {
		evs = append(evs, vev(fmt.Sprint("h", i), time.Duration(i)*time.Minute, p, "10.0.0.1", "read", "secret/data/own/"+p))
	}
	// After learning: 30 new pairs, interleaved, 10 s apart (all inside
	// one group window).
	var want []string
	for k := 0; k < 30; k++ {
		p := principals[(k*7)%3]
		res := fmt.Sprintf("secret/data/new/%d", k)
		evs = append(evs, vev(fmt.Sprint("n", k), 3*time.Hour+time.Duration(k)*10*time.Second, p, "10.0.0.1", "read", res))
		want = append(want, p+"|secret/new/"+strconv.Itoa(k))
	}
	cfg := testConfig(learnEnd)
	cfg.UnexpectedIP.Enabled = boolp(false)
	cfg.AccessVolumeSpike.Enabled = boolp(false)

	pairs := func(fs []schema.Finding) []string {
		var out []string
		for _, f := range fs {
			if f.Detector == schema.DetectorFirstTimeAccess {
				out = append(out, f.Principal+"|"+f.Resource)
			}
		}
		slices.Sort(out)
		return out
	}
	ids := func(fs []schema.Finding) []string {
		var out []string
		for _, f := range fs {
			out = append(out, f.ID)
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	whole, _ := run(t, cfg, evs)
	slices.Sort(want)
	if got := pairs(whole); !slices.Equal(got, want) {
		t.Fatalf("uninterrupted run reported pairs\n%v\nwant\n%v", got, want)
	}

	for trial := 0; trial < 20; trial++ {
		rng := rand.New(rand.NewPCG(uint64(trial), 1))
		dir := t.TempDir()
		var got []schema.Finding
		next := 0 // events handed to the engine so far in this life
		for next < len(evs) {
			st := openStore(t, dir)
			e := newEngine(t, cfg, st, nil)
			meta, err := e.Meta()
			if err != nil {
				t.Fatal(err)
			}
			pos := 0
			if v, ok := meta["pos"]; ok {
				pos, _ = strconv.Atoi(string(v))
			}
			crashAt := pos + 1 + rng.IntN(len(evs)-pos)
			for i := pos; i < len(evs) && i < crashAt; i++ {
				got = append(got, e.Process(evs[i])...)
				if rng.IntN(4) == 0 {
					if err := e.Checkpoint(map[string][]byte{"pos": []byte(strconv.Itoa(i + 1))}); err != nil {
						t.Fatal(err)
					}
				}
			}
			next = crashAt
			if next >= len(evs) {
				if err := e.Checkpoint(map[string][]byte{"pos": []byte(strconv.Itoa(len(evs)))}); err != nil {
					t.Fatal(err)
				}
			}
			// SIGKILL: nothing after the last checkpoint survives.
			e.Close()
			st.Close()
		}
		// Outputs are at-least-once with the finding id: dedupe by id.
		seen := map[string]bool{}
		var uniq []schema.Finding
		for _, f := range got {
			if !seen[f.ID] {
				seen[f.ID] = true
				uniq = append(uniq, f)
			}
		}
		if g := pairs(uniq); !slices.Equal(g, want) {
			t.Fatalf("trial %d: reported pairs\n%v\nwant\n%v", trial, g, want)
		}
		if !slices.Equal(ids(uniq), ids(whole)) {
			t.Fatalf("trial %d: finding ids differ from an uninterrupted run", trial)
		}
	}
}
