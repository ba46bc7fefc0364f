package sigma

import (
	"bytes"
	"path/filepath"
	"testing"

	"auditwatch/gen"
	"auditwatch/internal/testenv"
)

func benchRecords(b testing.TB, n int) [][]byte {
	g, err := gen.New(gen.Config{Events: n, CloudTrailShare: 0.5}.Defaults())
	if err != nil {
		b.Fatal(err)
	}
	var out [][]byte
	var buf []byte
	for {
		var ok bool
		buf, _, ok = g.Next(buf[:0])
		if !ok {
			break
		}
		for _, l := range bytes.Split(bytes.TrimSpace(buf), []byte("\n")) {
			out = append(out, append([]byte(nil), l...))
		}
	}
	return out
}

// BenchmarkMatch parses and matches generated CloudTrail and Vault
// records against SigmaHQ's CloudTrail rules and the project's pack.
func BenchmarkMatch(b *testing.B) {
	recs := benchRecords(b, 20000)
	evs := events(b, recs)
	sets := map[string][]string{
		"pack":    {filepath.Join(testenv.RepoRoot(b), "rules")},
		"sigmahq": {filepath.Join(testenv.SharedTestdata(b), "sigma", "cloudtrail")},
	}
	for name, paths := range sets {
		s, err := Load(paths, Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			var p Parser
			var hits []Hit
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				r, err := p.Parse(recs[i%len(recs)], "")
				if err != nil {
					b.Fatal(err)
				}
				hits = s.Match(r, hits[:0])
			}
		})
		b.Run(name+"-events-unfiltered", func(b *testing.B) {
			s.noPrefilter = true
			defer func() { s.noPrefilter = false }()
			var p Parser
			var hits []Hit
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				hits, _, _ = s.MatchEvent(&evs[i%len(evs)], &p, hits[:0])
			}
		})
		b.Run(name+"-events", func(b *testing.B) {
			var p Parser
			var hits []Hit
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				hits, _, _ = s.MatchEvent(&evs[i%len(evs)], &p, hits[:0])
			}
		})
	}
	b.Run("parse-only", func(b *testing.B) {
		var p Parser
		for i := 0; i < b.N; i++ {
			if _, err := p.Parse(recs[i%len(recs)], ""); err != nil {
				b.Fatal(err)
			}
		}
	})
}
