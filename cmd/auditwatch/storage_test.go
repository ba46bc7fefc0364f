package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The binary must work without libchdb: nothing may load it at start-up.
// Build it, point CHDB_LIB_PATH at nothing, and run commands that do not
// need storage (every command's -h, version, normalize when present) and
// one that does (which must fail with a clear error, not a panic).
func TestBinaryRunsWithoutLibchdb(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	bin := sharedBinary(t)
	env := append(os.Environ(), "CHDB_LIB_PATH="+filepath.Join(dir, "missing", "libchdb.so"))
	runBin := func(stdin string, args ...string) (string, string, int) {
		cmd := exec.Command(bin, args...)
		cmd.Env, cmd.Dir = env, dir
		cmd.Stdin = strings.NewReader(stdin)
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(e.String(), "panic:") || strings.Contains(e.String(), "goroutine ") {
			t.Fatalf("auditwatch %v panicked:\n%s", args, e.String())
		}
		return o.String(), e.String(), code
	}
	if out, _, code := runBin("", "version"); code != 0 || !strings.HasPrefix(out, "auditwatch ") {
		t.Fatalf("version: exit %d, %q", code, out)
	}
	for name := range commands {
		runBin("", name, "-h")
	}
	if _, ok := commands["normalize"]; ok {
		if _, errOut, code := runBin("", "normalize", "-"); code != 0 {
			t.Errorf("normalize of empty input without libchdb: exit %d: %s", code, errOut)
		}
	}
	_, errOut, code := runBin("", "query", "failures", "--chdb-path", filepath.Join(dir, "db"))
	if code == 0 || !strings.Contains(errOut, "store does not exist: "+filepath.Join(dir, "db")) {
		t.Errorf("query of a missing store: exit %d, stderr %q", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "db")); err == nil {
		t.Error("query created the missing store's directory")
	}
	if err := os.Mkdir(filepath.Join(dir, "db"), 0o750); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = runBin("", "query", "failures", "--chdb-path", filepath.Join(dir, "db"))
	if code == 0 || !strings.Contains(errOut, "libchdb.so not found") {
		t.Errorf("query without libchdb: exit %d, stderr %q", code, errOut)
	}
	if out, _, code := runBin("", "migrate", "--backend", "off"); code != 0 || !strings.Contains(out, "storage is off") {
		t.Errorf("migrate --backend off: exit %d, %q", code, out)
	}
	deps, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(deps), "chdb-io/chdb-go") {
		t.Error("the binary links github.com/chdb-io/chdb-go, whose init panics without libchdb")
	}
}
