package configcheck

import (
	"fmt"
	"strings"
	"testing"
)

// TestTrailAndWatchSections: the trail:, silence: and canary: sections
// are checked with the other sections, problems named by path and line.
func TestTrailAndWatchSections(t *testing.T) {
	doc := `sources:
  - name: d
    type: dir
    dir: {path: /tmp}
trail:
  listed_grace: -1m
silence:
  factor: 0.5
canary:
  vault:
    address: nope
`
	probs := Check([]byte(doc))
	var got []string
	for _, p := range probs {
		got = append(got, fmt.Sprintf("%d %s: %s", p.Line, p.Path, p.Msg))
	}
	all := strings.Join(got, "\n")
	for _, want := range []string{"trail.listed_grace", "silence.factor", "canary.vault.address", "canary.vault.token"} {
		if !strings.Contains(all, want) {
			t.Errorf("no problem at %s in:\n%s", want, all)
		}
	}
	if probs := Check([]byte("sources:\n  - name: d\n    type: dir\n    dir: {path: /tmp}\ntrail: {public_keys_file: k.json}\ncanary: {interval: 30s}\n")); len(probs) != 0 {
		t.Errorf("valid sections reported: %+v", probs)
	}
}
