package sigma

import (
	"bytes"
	"encoding/json"
	"io"
	"math/rand/v2"
	"path/filepath"
	"strings"
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

func TestFoldAll(t *testing.T) {
	var all []byte
	for c := 0; c < 128; c++ {
		all = append(all, byte(c))
	}
	all = append(all, all...)
	for n := 0; n <= len(all); n++ {
		got, ascii := foldAll(nil, all[:n])
		if !ascii {
			t.Fatalf("n=%d: ASCII text reported non-ASCII", n)
		}
		for i, c := range all[:n] {
			if got[i] != c|0x20 || ('A' <= c && c <= 'Z' && got[i] != c+'a'-'A') {
				t.Fatalf("n=%d byte %d (%#x): folded to %#x", n, i, c, got[i])
			}
		}
		// one high byte anywhere is found (each position of each stride)
		for i := 0; i < n; i++ {
			b := append([]byte(nil), all[:n]...)
			b[i] = 0x80 | byte(i)
			if _, ascii := foldAll(nil, b); ascii {
				t.Fatalf("n=%d: byte %#x at %d not found", n, b[i], i)
			}
		}
	}
}

// TestFoldedSearch: the prefilter's search (folded literal in the folded
// text) finds every literal the lowercased text holds, at every position
// and letter case, and only rarely a text without it (folding maps a few
// punctuation bytes onto others).
func TestFoldedSearch(t *testing.T) {
	lits := []string{"cloudfox", "pacu_session", "stratus-red-team", "x", "zq", "ab", "aab", "bab", "trufflehog", "_-", "q1", "{a", "@x"}
	texts := []string{"", "a", "ab", "AB", "aAaAb", "xX", "CloudFox", "pACU_SESSION", "stratus-RED-team", "STRATUS-RED-TEA",
		`{"userAgent":"Stratus-Red-Team_1"}`, "TruffleHog/3", "truffle hog", "zZq", "Q1", "bAbAb", "cloudfo", "loudfox", "[A", "`X"}
	// literals planted in random case at random places
	rng := rand.New(rand.NewPCG(1, 2))
	for _, lit := range lits {
		for k := 0; k < 50; k++ {
			b := []byte(strings.Repeat("ab_-xZ.", rng.IntN(8)))
			pos := rng.IntN(len(b) + 1)
			l := []byte(lit)
			for i := range l {
				if rng.IntN(2) == 0 && 'a' <= l[i] && l[i] <= 'z' {
					l[i] -= 'a' - 'A'
				}
			}
			if rng.IntN(4) == 0 && len(l) > 1 {
				l = l[:len(l)-1] // almost
			}
			texts = append(texts, string(b[:pos])+string(l)+string(b[pos:]))
		}
	}
	hits, extra := 0, 0
	for _, text := range texts {
		folded, _ := foldAll(nil, []byte(text))
		for _, lit := range lits {
			want := strings.Contains(strings.ToLower(text), lit)
			got := containsLit(string(folded), foldString(lit))
			switch {
			case want && !got:
				t.Errorf("%q holds %q: not found", text, lit)
			case got && !want:
				extra++
			case want:
				hits++
			}
		}
	}
	if hits < 100 {
		t.Errorf("only %d texts hold their literal: the test exercises little", hits)
	}
	// "[A" holds "{a" folded, "`X" holds "@x" folded: the superset is real
	if extra == 0 {
		t.Errorf("no text found holding a literal only after folding: folding is not exercised")
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
