package configcheck

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"auditwatch/config"
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
			[]Problem{{Path: "alerts.group_window", Line: 2, Msg: "cannot unmarshal !!seq into a duration (want 90s, 15m, 36h, 7d)"}}},
		{"validation", "logging:\n  format: xml\n",
			[]Problem{{Path: "logging.format", Line: 2, Msg: `want json or text, got "xml"`}}},
		{"quarantine section", "quarantine:\n  path: /srv/q/\n  max_bytes: -1\n",
			[]Problem{{Path: "quarantine.path", Line: 2, Msg: "names a directory; want a file (or off)"},
				{Path: "quarantine.max_bytes", Line: 3, Msg: "must be between 1 and 17179869184"}}},
		{"unknown key in the quarantine section", "quarantine:\n  max_size: 5\n",
			[]Problem{{Path: "quarantine.max_size", Line: 2, Msg: "unknown field"}}},
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
		{Problem{Path: "a.b", Line: 3, Msg: "required"}, "c.yaml:3: a.b: required"},
		{Problem{Path: "a.b", Msg: "required"}, "c.yaml: a.b: required"},
		{Problem{Msg: "did not find expected node content", Line: 1}, "c.yaml:1: did not find expected node content"},
		{Problem{Path: "x", Msg: "bad \x1b[31m"}, `c.yaml: x: bad \x1B[31m`},
		// internal/escape's terminal context: bidi and zero-width
		// characters become visible codes too
		{Problem{Path: "x", Msg: "bad \u202egpj.exe\u200b"}, `c.yaml: x: bad \u{202E}gpj.exe\u{200B}`},
	} {
		if got := tc.p.In("c.yaml"); got != tc.want {
			t.Errorf("%+v: got %q, want %q", tc.p, got, tc.want)
		}
	}
	if got, want := (Problem{Path: "a.b", Line: 3, Msg: "required"}).String(), "line 3: a.b: required"; got != want {
		t.Errorf("String: got %q, want %q", got, want)
	}
}

// TestLoad: Load returns every section decoded from a valid file, and an
// *Error listing every problem as file:line: path: message otherwise, the
// storage section included.
func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := dir + "/good.yaml"
	os.WriteFile(good, []byte("stream: {type: embedded}\ndetectors: {allowed_lateness: 2m}\nstorage: {backend: off}\n"), 0o644)
	l, err := Load(good)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if l.Detectors.AllowedLateness.D() != 2*time.Minute || l.Storage == nil || l.Storage.Backend != "off" || l.Alerts != nil {
		t.Errorf("sections not decoded: detectors %+v storage %+v alerts %+v", l.Detectors.AllowedLateness, l.Storage, l.Alerts)
	}
	if l.ShutdownTimeout == 0 {
		t.Error("root defaults not applied")
	}
	bad := dir + "/bad.yaml"
	os.WriteFile(bad, []byte("stream: {type: embedded}\nstorage:\n  backend: tape\n  batch: {max_rows: -1}\nlogging: {format: xml}\n"), 0o644)
	_, err = Load(bad)
	var ce *Error
	if !errors.As(err, &ce) || !errors.Is(err, config.ErrInvalid) {
		t.Fatalf("Load = %v, want an *Error wrapping config.ErrInvalid", err)
	}
	for _, want := range []string{
		bad + `:3: storage.backend: "tape" is not chdb, clickhouse or off`,
		bad + ":4: storage.batch.max_rows: ",
		bad + `:5: logging.format: want json or text, got "xml"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%s", want, err)
		}
	}
}

func TestSectionPath(t *testing.T) {
	for in, want := range map[string]string{
		"storage.backend: bad":   "storage.backend: bad",
		"backend: bad":           "storage.backend: bad",
		"outputs[1].url: bad":    "storage.outputs[1].url: bad",
		"something went wrong":   "storage: something went wrong",
		"storage: general issue": "storage: general issue",
	} {
		if got := sectionPath("storage", errors.New(in)).Error(); got != want {
			t.Errorf("sectionPath(%q) = %q, want %q", in, got, want)
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
