package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRecordErrorsCapped: normalize and replay over a file with 1,000 bad
// records between good ones print the first 20 errors (with file and
// line), then one line counting the rest, and still use every good record.
func TestRecordErrorsCapped(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mixed.json")
	var b strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&b, "not json %d\n", i)
		if i%100 == 0 {
			b.WriteString(strings.Replace(normCT, "@@", fmt.Sprintf("ev%d", i), 1) + "\n")
		}
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		good string // what shows every good record was used
	}{
		{"normalize", []string{"normalize", path}, `"id":"ev900"`},
		{"replay", []string{"replay", path}, "1010 records, 10 events"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Chdir(dir) // no ./auditwatch.yaml: replay runs on the defaults
			t.Setenv("AUDITWATCH_CONFIG", "")
			code, stdout, stderr := runCmd(t, tc.args...)
			if code != 2 {
				t.Fatalf("exit %d, want 2 (records rejected)\n%s", code, stderr)
			}
			if !strings.Contains(stdout+stderr, tc.good) {
				t.Errorf("good records not all used (want %q):\nstdout %s\nstderr %s", tc.good, stdout, stderr)
			}
			errLines := strings.Count(stderr, path+":")
			if errLines != maxRecordErrors {
				t.Errorf("%d record errors printed, want %d:\n%s", errLines, maxRecordErrors, stderr)
			}
			if !strings.Contains(stderr, path+":1: ") {
				t.Errorf("the first error does not name file and line:\n%s", stderr)
			}
			if want := fmt.Sprintf("%s: %d more record errors not shown", tc.name, 1000-maxRecordErrors); !strings.Contains(stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, stderr)
			}
			if n := strings.Count(stderr, "\n"); n > maxRecordErrors+5 {
				t.Errorf("stderr has %d lines for 1,000 bad records", n)
			}
		})
	}
}

func TestCappedWriter(t *testing.T) {
	var buf bytes.Buffer
	c := newCappedWriter(&buf, "x", 2)
	for i := range 5 {
		fmt.Fprintf(c, "e%d\n", i)
	}
	c.Summary()
	if got, want := buf.String(), "e0\ne1\nx: 3 more record errors not shown (the first 2 are above)\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	buf.Reset()
	c = newCappedWriter(&buf, "x", 2)
	fmt.Fprintf(c, "only\n")
	c.Summary()
	if buf.String() != "only\n" {
		t.Errorf("under the limit: got %q", buf.String())
	}
}

// loadStream's per-line errors go through the same cap in runLoad; its
// positions are checked here on the writer it is given.
func TestLoadStreamErrorsNamePosition(t *testing.T) {
	var errb bytes.Buffer
	c := newCappedWriter(&errb, "auditwatch load", maxRecordErrors)
	in := strings.Repeat("{bad\n", 30)
	_, rej, err := loadStream(context.Background(), nil, strings.NewReader(in), "in.jsonl", c)
	c.Summary()
	if err != nil || rej != 30 {
		t.Fatalf("loadStream = %d rejected, %v", rej, err)
	}
	if !strings.Contains(errb.String(), "in.jsonl:1: ") || strings.Count(errb.String(), "in.jsonl:") != maxRecordErrors ||
		!strings.Contains(errb.String(), "auditwatch load: 10 more record errors not shown") {
		t.Errorf("stderr:\n%s", errb.String())
	}
}
