package sigma

import (
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"auditwatch/schema"
)

// TestWordAtATimeAgrees checks isASCII and Record.lower, which read
// eight bytes at a time, against a byte-by-byte reading, on strings of
// every length up to 40 built from bytes around the letters' bounds and
// the top bit, and on every single byte at every position.
func TestWordAtATimeAgrees(t *testing.T) {
	naiveASCII := func(s string) bool {
		for i := 0; i < len(s); i++ {
			if s[i] >= utf8.RuneSelf {
				return false
			}
		}
		return true
	}
	naiveLower := func(s string) string {
		b := []byte(s)
		for i, c := range b {
			b[i] = lowerASCII(c)
		}
		return string(b)
	}
	var r Record
	check := func(s string) {
		t.Helper()
		if got, want := isASCII(s), naiveASCII(s); got != want {
			t.Fatalf("isASCII(%q) = %v, want %v", s, got, want)
		}
		if got, want := r.lower(s), naiveLower(s); got != want {
			t.Fatalf("lower(%q) = %q, want %q", s, got, want)
		}
	}
	edge := []byte{0, '@', 'A', 'B', 'Y', 'Z', '[', '`', 'a', 'z', '{', 0x7f, 0x80, 0xc3, 0xff, ':', '/'}
	rng := rand.New(rand.NewPCG(1, 2))
	for n := 0; n <= 40; n++ {
		for k := 0; k < 300; k++ {
			b := make([]byte, n)
			for i := range b {
				b[i] = edge[rng.IntN(len(edge))]
			}
			check(string(b))
		}
	}
	base := strings.Repeat("arn:aws:sts::1", 3)
	for c := 0; c < 256; c++ {
		for i := 0; i < len(base); i++ {
			b := []byte(base)
			b[i] = byte(c)
			check(string(b))
		}
	}
	// the upper-case letters are found in any of a word's bytes
	if upperBits(word("abcdefgZ", 0)) == 0 || upperBits(word("Abcdefgh", 0)) == 0 || upperBits(word("@[`{azAZ", 0)) != 0x8080000000000000 {
		t.Fatal("upperBits misses an upper-case letter or finds one that is not")
	}
}

// TestMatchEventSkipsSourceWithoutRules: with CloudTrail rules only, a
// Vault event is not read at all (not even searched for escapes): no hit,
// no record, no error, even when its record is malformed; the CloudTrail
// rule still matches a CloudTrail event, with or without escapes.
func TestMatchEventSkipsSourceWithoutRules(t *testing.T) {
	r := compileRule(t, "selection:\n  userIdentity.type: Root\ncondition: selection")
	s, err := Build([]*Rule{r}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var p Parser
	for _, raw := range []string{
		`{"type":"request","request":{"path":"secret/x","operation":"read"}}`,
		`{"type":"request","request":{"path":"secret/\u0078"`,
		`not json \`,
	} {
		ev := schema.Event{Source: schema.SourceVault, Action: "vault:read", Resource: "secret/x", Raw: []byte(raw)}
		hits, rec, err := s.MatchEvent(&ev, &p, nil)
		if len(hits) != 0 || rec != nil || err != nil {
			t.Fatalf("%s: hits %v, record %v, error %v; want none", raw, hits, rec != nil, err)
		}
		if s.Wants(&ev, ev.Raw) {
			t.Fatalf("%s: Wants keeps a Vault record no rule reads", raw)
		}
	}
	for _, raw := range []string{
		`{"eventVersion":"1.08","userIdentity":{"type":"Root"},"eventName":"ListBuckets"}`,
		`{"eventVersion":"1.08","userIdentity":{"type":"R\u006fot"},"eventName":"ListBuckets"}`,
	} {
		ev := schema.Event{Source: schema.SourceCloudTrail, Action: "s3:ListBuckets", Raw: []byte(raw)}
		hits, _, err := s.MatchEvent(&ev, &p, nil)
		if err != nil || len(hits) != 1 || hits[0].Rule != r {
			t.Fatalf("%s: hits %v, error %v; want the rule", raw, hits, err)
		}
	}
	// a malformed CloudTrail record (with escapes) is still reported
	ev := schema.Event{Source: schema.SourceCloudTrail, Action: "s3:ListBuckets", Raw: []byte(`{"userIdentity":{"type":"R\u006fot"`)}
	if _, _, err := s.MatchEvent(&ev, &p, nil); err == nil {
		t.Fatal("a malformed CloudTrail record read by a rule gives no error")
	}
}
