package configcheck

import (
	"os"
	"strings"
	"testing"
)

func TestCheckPaths(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       []Problem
	}{
		{"valid", "stream: {type: embedded}\n", nil},
		{"unknown root key", "stream: {type: embedded}\nsauces: []\n",
			[]Problem{{Path: "sauces", Line: 2, Msg: "unknown field"}}},
		{"unknown key in a sequence item", "sources:\n  - name: a\n    type: dir\n    dir: {path: /x, patern: '*'}\n",
			[]Problem{{Path: "sources[0].dir.patern", Line: 4, Msg: "unknown field"}}},
		{"bad type in a section", "alerts:\n  group_window: [1]\n",
			[]Problem{{Path: "alerts.group_window", Line: 2, Msg: "cannot unmarshal !!seq into time.Duration"}}},
		{"validation", "logging:\n  format: xml\n",
			[]Problem{{Path: "logging.format", Line: 2, Msg: `want json or text, got "xml"`}}},
		{"validation of a defaulted field has no line", "stream: {type: kafka}\n",
			[]Problem{{Path: "stream.kafka.brokers", Msg: "at least one required"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Check([]byte(tc.body))
			if len(got) != len(tc.want) {
				t.Fatalf("got %d problems %v, want %v", len(got), got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("problem %d: got %+v, want %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestProblemString(t *testing.T) {
	for _, tc := range []struct {
		p    Problem
		want string
	}{
		{Problem{Path: "a.b", Line: 3, Msg: "required"}, "a.b: required (line 3)"},
		{Problem{Path: "a.b", Msg: "required"}, "a.b: required"},
		{Problem{Msg: "did not find expected node content", Line: 1}, "did not find expected node content (line 1)"},
	} {
		if got := tc.p.String(); got != tc.want {
			t.Errorf("%+v: got %q, want %q", tc.p, got, tc.want)
		}
	}
}

func TestFileMissing(t *testing.T) {
	if _, err := File(t.TempDir() + "/absent.yaml"); err == nil || !os.IsNotExist(unwrapAll(err)) {
		t.Fatalf("err = %v, want a not-exist error", err)
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}

// FuzzCheck feeds arbitrary documents: Check must never panic, and every
// problem it reports must render on one line.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{
		"{}",
		"sources: [{name: a, type: socket, socket: {listen: ':1'}}]",
		"alerts: {outputs: [{name: s, type: slack, slack: {chanel: x}}]}",
		"detectors: {allowed_lateness: 3d, unexpected_ip: {enabled: false}}",
		"a: &x {b: 1}\nc: *x\n",
		"- 1\n- 2\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, p := range Check(b) {
			if s := p.String(); strings.Contains(s, "\n") {
				t.Fatalf("problem spans lines: %q", s)
			}
		}
	})
}
