package sigma

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

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
	hitsTotal, skipped, markedTotal := 0, 0, 0
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
		// a hit keeps the record, or is written on the event (its
		// mark), or is remembered by the event, or both kept and
		// remembered when a hit feeds a correlation (which reads the
		// record)
		w := set.Wants(&ev, ev.Raw)
		bare, inBare := set.bare.take(&ev, nil)
		marked, isMarked := set.marks.decode(ev.Mark, nil)
		if isMarked && (w || inBare || !set.bareOK(&ev, want) || !sameRules(marked, want)) {
			t.Fatalf("%s: hits %v written on the event, Match %v; Wants says %v, remembered by the event %v", ev.Raw, marked, want, w, inBare)
		}
		if !isMarked && ev.Mark != (schema.Mark{}) {
			t.Fatalf("%s: a mark %v that is not the set's", ev.Raw, ev.Mark)
		}
		if isMarked {
			markedTotal++
		} else if w && inBare && set.bareOK(&ev, want) || !w && !inBare && len(want) > 0 || (w || inBare) && len(want) == 0 {
			t.Fatalf("%s: %d hits, but Wants (record) says %v, remembered by the event %v", ev.Raw, len(want), w, inBare)
		}
		if w && !inBare {
			// kept and remembered by its text: the evaluator takes it
			set.memo.take(ev.Raw, nil)
		}
		if inBare && !sameRules(bare, want) {
			t.Fatalf("%s: remembered hits %v, Match %v", ev.Raw, bare, want)
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
	if hitsTotal == 0 || markedTotal == 0 {
		t.Errorf("%d hits, %d records with their hits written on the event: the test exercises little", hitsTotal, markedTotal)
	}
	t.Logf("%d hits (%d records marked); %d records skipped without parsing", hitsTotal, markedTotal, skipped)
}

func TestASCIIText(t *testing.T) {
	var all []byte
	for c := 0; c < 128; c++ {
		all = append(all, byte(c))
	}
	all = append(all, all...)
	for n := 0; n <= len(all); n++ {
		if !asciiText(all[:n]) {
			t.Fatalf("n=%d: ASCII text reported non-ASCII", n)
		}
		// one high byte anywhere is found (each position of each stride)
		for i := 0; i < n; i++ {
			b := append([]byte(nil), all[:n]...)
			b[i] = 0x80 | byte(i)
			if asciiText(b) {
				t.Fatalf("n=%d: byte %#x at %d not found", n, b[i], i)
			}
		}
	}
}

// TestNonASCIILowercasing pins the fact holdsOne relies on: the only
// non-ASCII characters that Unicode lowercasing or simple case folding
// (regular expressions' (?i)) take to ASCII are U+0130 (to i), U+017F (to
// s) and U+212A (to k); literals without i, k and s are searched in the
// raw text of any record.
func TestNonASCIILowercasing(t *testing.T) {
	got := map[rune]bool{}
	for r := rune(utf8.RuneSelf); r <= unicode.MaxRune; r++ {
		for _, c := range strings.ToLower(string(r)) {
			if c < utf8.RuneSelf {
				got[r] = true
			}
		}
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if f < utf8.RuneSelf {
				got[r] = true
			}
		}
	}
	want := map[rune]bool{0x130: true, 0x17f: true, 0x212a: true}
	if fmt.Sprint(runesOf(got)) != fmt.Sprint(runesOf(want)) {
		t.Errorf("non-ASCII characters lowercasing or folding to ASCII: %U, want %U", runesOf(got), runesOf(want))
	}
	for r := range want {
		if !strings.ContainsAny(strings.ToLower(string(r))+string(unicode.SimpleFold(r))+string(unicode.SimpleFold(unicode.SimpleFold(r))), "iks") {
			t.Errorf("%U does not lowercase or fold to i, k or s", r)
		}
	}
}

func runesOf(m map[rune]bool) []rune {
	var out []rune
	for r := range m {
		out = append(out, r)
	}
	slices.Sort(out)
	return out
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

// TestAnchorPlan: literals searched in groups sharing an anchor byte
// (one pass per group) are found exactly when some literal is in the
// folded text, over literals sharing bytes or not, planted in random case
// at every position, and across rules sharing literals within a record.
func TestAnchorPlan(t *testing.T) {
	lits := []string{"cloudfox", "pacu_session", "stratus-red-team", "uu", "xux", "q", "zz-top", "red", "k1"}
	s := &Set{lits: lits}
	rules := [][]int{{0, 1, 2}, {3, 4}, {5}, {6, 7, 2}, {0, 1, 2, 3, 4, 5, 6, 7}, {8}}
	s.pre = rules
	for _, pre := range rules {
		s.plan = append(s.plan, planAnchors(pre, s.lits))
		unsafe := false
		for _, k := range pre {
			unsafe = unsafe || strings.ContainsAny(lits[k], "iks")
		}
		s.unsafe = append(s.unsafe, unsafe)
	}
	if g := s.plan[0]; len(g) != 1 || g[0].c != 'u' {
		t.Errorf("cloudfox, pacu_session, stratus-red-team: plan %+v, want one pass for 'u'", g)
	}
	if g := s.plan[2]; len(g) != 1 || g[0].c != 'q' {
		t.Errorf("q: plan %+v", g)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	found, missed := 0, 0
	var p Parser
	for n := 0; n < 5000; n++ {
		b := []byte(strings.Repeat("u-eDx_", rng.IntN(10)))
		if rng.IntN(4) == 0 {
			// non-ASCII: the KELVIN SIGN lowercases to k
			b = append(b, "\u212a1"...)
		}
		for k := rng.IntN(3); k > 0; k-- {
			l := []byte(lits[rng.IntN(len(lits))])
			for i := range l {
				if rng.IntN(2) == 0 && 'a' <= l[i] && l[i] <= 'z' {
					l[i] -= 'a' - 'A'
				}
			}
			if rng.IntN(3) == 0 {
				l = l[1:] // almost
			}
			pos := rng.IntN(len(b) + 1)
			b = append(b[:pos], append(l, b[pos:]...)...)
		}
		p.found = make([]uint8, len(lits))
		p.ascii = 0
		// the rules in random order share the per-record table
		for _, i := range rng.Perm(len(rules)) {
			want := false
			for _, k := range rules[i] {
				want = want || strings.Contains(strings.ToLower(string(b)), lits[k])
			}
			got, known := s.holdsOne(&p, i, b, "")
			if !known {
				// only a literal with i, k or s in a non-ASCII record
				if !s.unsafe[i] || asciiText(b) {
					t.Fatalf("%q rule %d %v: not known", b, i, rules[i])
				}
				got = want
			}
			if got != want {
				t.Fatalf("%q rule %d %v: %v, want %v", b, i, rules[i], got, want)
			}
			if want {
				found++
			} else {
				missed++
			}
		}
	}
	if found < 1000 || missed < 1000 {
		t.Errorf("found %d, missed %d: the texts exercise too little", found, missed)
	}
}
