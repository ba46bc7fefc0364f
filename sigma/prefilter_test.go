package sigma

import (
	"bytes"
	"encoding/json"
	"io"
	"path/filepath"
	"testing"

	"auditwatch/ingest"
	"auditwatch/internal/testenv"
	"auditwatch/schema"
)

// events normalizes records as the pipeline does, keeping each original.
func events(t testing.TB, lines [][]byte) []schema.Event {
	opts := ingest.DefaultOptions()
	opts.KeepRaw = true
	r := ingest.NewReader(bytes.NewReader(bytes.Join(lines, []byte("\n"))), "test", opts)
	var out []schema.Event
	for {
		ev, err := r.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			continue
		}
		out = append(out, ev)
	}
}

// TestMatchEventAgreesWithMatch: the index on normalized fields and the
// literal prefilter never drop a rule that matches. Over generated
// traffic and over records built to match (and not) each SigmaHQ rule and
// each rule of the pack, MatchEvent's hits equal those of a full parse.
func TestMatchEventAgreesWithMatch(t *testing.T) {
	paths := []string{filepath.Join(testenv.RepoRoot(t), "rules")}
	if dir, ok := testenv.LookupSharedTestdata(t); ok {
		paths = append(paths, filepath.Join(dir, "sigma", "cloudtrail"))
	}
	set, err := Load(paths, Options{})
	if err != nil {
		t.Fatal(err)
	}
	lines := benchRecords(t, 8000)
	for _, r := range set.single {
		for _, want := range []bool{true, false} {
			b, _ := json.Marshal(buildRecord(t, r, want))
			lines = append(lines, b)
		}
	}
	var p1, p2 Parser
	hitsTotal, skipped := 0, 0
	for _, ev := range events(t, lines) {
		rec, err := p1.Parse(ev.Raw, ev.Source)
		if err != nil {
			t.Fatal(err)
		}
		want := set.Match(rec, nil)
		got, r2, err := set.MatchEvent(&ev, &p2, nil)
		if err != nil {
			t.Fatal(err)
		}
		if r2 == nil {
			skipped++
		}
		if len(want) > 0 && !set.Wants(&ev, nil) {
			t.Fatalf("%s: %d hits, but Wants (index) says no rule can match", ev.Raw, len(want))
		}
		if w := set.Wants(&ev, ev.Raw); w != (len(want) > 0) {
			t.Fatalf("%s: %d hits, but Wants (record) says %v", ev.Raw, len(want), w)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: MatchEvent %d hits, Match %d", ev.Raw, len(got), len(want))
		}
		for i := range got {
			if got[i].Rule != want[i].Rule {
				t.Fatalf("%s: hit %d: %s vs %s", ev.Raw, i, got[i].Rule.Title, want[i].Rule.Title)
			}
		}
		hitsTotal += len(want)
	}
	if hitsTotal == 0 {
		t.Errorf("%d hits: the test exercises nothing", hitsTotal)
	}
	t.Logf("%d hits; %d records skipped without parsing", hitsTotal, skipped)
}

func TestLowerAll(t *testing.T) {
	var all []byte
	for c := 0; c < 256; c++ {
		all = append(all, byte(c))
	}
	all = append(all, "Hello, WORLD: Zz@[`{ÄÖ"...)
	for n := 0; n <= len(all); n++ {
		got, _ := lowerAll(nil, all[:n])
		for i, c := range all[:n] {
			want := c
			if c >= 'A' && c <= 'Z' {
				want = c + 32
			}
			if got[i] != want {
				t.Fatalf("n=%d byte %d (%#x): got %#x, want %#x", n, i, c, got[i], want)
			}
		}
	}
}

func TestContainsLit(t *testing.T) {
	for _, c := range []struct {
		text, lit string
		want      bool
	}{
		{"abc", "abc", true}, {"xabcx", "bc", true}, {"ab", "abc", false}, {"aaaab", "aab", true},
		{"trufflehog/3", "trufflehog", true}, {"truffle hog", "trufflehog", false}, {"qz", "z", true},
		{"zzq", "zq", true}, {"", "ab", false}, {"abab", "bab", true},
	} {
		if got := containsLit(c.text, c.lit); got != c.want {
			t.Errorf("containsLit(%q, %q) = %v", c.text, c.lit, got)
		}
	}
}
