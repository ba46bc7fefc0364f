package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// TestCheckConfigFixtures runs check-config on every fixture: files under
// testdata/config/good must pass, files under testdata/config/bad must fail
// with exactly the problems in their .golden file.
func TestCheckConfigFixtures(t *testing.T) {
	for _, tc := range []struct {
		dir      string
		wantCode int
	}{
		{"good", 0},
		{"bad", 1},
	} {
		files, err := filepath.Glob(filepath.Join("testdata", "config", tc.dir, "*.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if len(files) == 0 {
			t.Fatalf("no fixtures in testdata/config/%s", tc.dir)
		}
		for _, f := range files {
			t.Run(tc.dir+"/"+filepath.Base(f), func(t *testing.T) {
				var stdout, stderr bytes.Buffer
				code := checkConfig(context.Background(), []string{f}, nil, &stdout, &stderr)
				if code != tc.wantCode {
					t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.wantCode, stdout.String(), stderr.String())
				}
				if tc.wantCode == 0 {
					// "FILE: ok", then one indented line per secret saying
					// where it comes from, never its value.
					want := f + ": ok\n"
					if !strings.HasPrefix(stdout.String(), want) {
						t.Fatalf("stdout %q, want it to start with %q", stdout.String(), want)
					}
					for _, l := range strings.Split(strings.TrimSuffix(strings.TrimPrefix(stdout.String(), want), "\n"), "\n") {
						if l != "" && (!strings.HasPrefix(l, "  ") || !(strings.Contains(l, ": set (from ") || strings.Contains(l, ": NOT SET"))) {
							t.Errorf("unexpected line after ok: %q", l)
						}
					}
					return
				}
				golden := strings.TrimSuffix(f, ".yaml") + ".golden"
				if *update {
					if err := os.WriteFile(golden, stdout.Bytes(), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatalf("%v (run go test -run TestCheckConfigFixtures -update)", err)
				}
				if stdout.String() != string(want) {
					t.Errorf("problems differ from %s\ngot:\n%s\nwant:\n%s", golden, stdout.String(), want)
				}
				n := strings.Count(stdout.String(), "\n")
				if !strings.Contains(stderr.String(), f+": ") || !strings.Contains(stderr.String(), " problem") {
					t.Errorf("stderr %q does not summarize %d problems", stderr.String(), n)
				}
			})
		}
	}
}

// TestCheckConfigEveryProblemHasAPath checks that a file with one mistake
// in each section reports each mistake under the path that names it.
func TestCheckConfigEveryProblemHasAPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	body := `sources:
  - {name: v, type: socket, socket: {listen: ":9090", spool_dir: /tmp/s, max_conns: -1}}
stream: {type: kafka, kafka: {brokers: ["k:9092"], batch_size: -1}}
detectors: {max_buffered: -1}
alerts:
  dead_letter: {path: /tmp/dl}
  outputs:
    - {name: s, type: slack, slack: {mode: bot, token: {env: T}}}
`
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := checkConfig(context.Background(), []string{path}, nil, &stdout, &stderr); code != 1 {
		t.Fatalf("exit %d, want 1; stdout:\n%s", code, stdout.String())
	}
	for _, want := range []string{
		path + ":2: sources[0].socket.max_conns: must be positive",
		path + ":3: stream.kafka.batch_size: must be positive",
		path + ":4: detectors.max_buffered: ",
		path + ": alerts.outputs[0].slack.channel: required",
	} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, stdout.String())
		}
	}
}

func TestCheckConfigUsage(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want int
	}{
		{"no file", nil, 2},
		{"two files", []string{"a.yaml", "b.yaml"}, 2},
		{"missing file", []string{filepath.Join(t.TempDir(), "absent.yaml")}, 2},
		{"unknown flag", []string{"-x", "a.yaml"}, 2},
		{"help", []string{"-h"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := checkConfig(context.Background(), tc.args, nil, &stdout, &stderr); code != tc.want {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, tc.want, stderr.String())
			}
			if tc.want == 2 && stderr.Len() == 0 {
				t.Error("nothing on stderr for a usage error")
			}
		})
	}
}
