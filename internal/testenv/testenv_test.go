package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRepoRootHoldsGoMod(t *testing.T) {
	root := RepoRoot(t)
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("RepoRoot %s has no go.mod: %v", root, err)
	}
	if _, err := os.Stat(filepath.Join(root, "internal", "testenv", "testenv.go")); err != nil {
		t.Fatalf("RepoRoot %s is not this repository: %v", root, err)
	}
}

func TestRequired(t *testing.T) {
	t.Setenv(RequireEnv, "")
	if Required() {
		t.Fatal("Required with the variable empty")
	}
	t.Setenv(RequireEnv, "1")
	if !Required() {
		t.Fatal("not Required with the variable set")
	}
}

func TestCorpusRequiredIsSeparateFromIntegration(t *testing.T) {
	t.Setenv(RequireEnv, "1")
	t.Setenv(RequireCorpusEnv, "")
	if CorpusRequired() {
		t.Fatal("the integration flag made the corpus required")
	}
	t.Setenv(RequireEnv, "")
	t.Setenv(RequireCorpusEnv, "1")
	if !CorpusRequired() || Required() {
		t.Fatalf("CorpusRequired=%v Required=%v with only the corpus flag set", CorpusRequired(), Required())
	}
}

// TestMissingCorpusSkipsUnderIntegrationFlag runs SharedTestdata from a
// copy of go.mod in a temporary directory (no ../shared beside it) with
// only the integration flag set: the test must skip, naming the directory.
func TestMissingCorpusSkipsUnderIntegrationFlag(t *testing.T) {
	tmp := t.TempDir()
	repo := filepath.Join(tmp, "clone")
	if err := os.MkdirAll(repo, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(repo, "go.mod"), []byte("module x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(repo)
	t.Setenv(RequireEnv, "1")
	t.Setenv(RequireCorpusEnv, "")
	rec := &recordTB{TB: t}
	func() {
		defer func() { _ = recover() }()
		SharedTestdata(rec)
	}()
	if rec.failed || !rec.skipped {
		t.Fatalf("failed=%v skipped=%v, want a skip", rec.failed, rec.skipped)
	}
	if !strings.Contains(rec.msg, filepath.Join(repo, "..", "shared", "testdata")) {
		t.Fatalf("skip reason %q does not name the missing directory", rec.msg)
	}

	t.Setenv(RequireCorpusEnv, "1")
	rec = &recordTB{TB: t}
	func() {
		defer func() { _ = recover() }()
		SharedTestdata(rec)
	}()
	if !rec.failed {
		t.Fatalf("with %s set a missing corpus did not fail the test", RequireCorpusEnv)
	}
}

// recordTB records Skip/Fatal instead of stopping the real test; it
// panics to unwind like runtime.Goexit would.
type recordTB struct {
	testing.TB
	failed, skipped bool
	msg             string
}

func (r *recordTB) Helper() {}
func (r *recordTB) Fatalf(format string, args ...any) {
	r.failed, r.msg = true, fmt.Sprintf(format, args...)
	panic("fatal")
}
func (r *recordTB) Fatal(args ...any) {
	r.failed, r.msg = true, fmt.Sprint(args...)
	panic("fatal")
}
func (r *recordTB) Skipf(format string, args ...any) {
	r.skipped, r.msg = true, fmt.Sprintf(format, args...)
	panic("skip")
}
func (r *recordTB) Skip(args ...any) {
	r.skipped, r.msg = true, fmt.Sprint(args...)
	panic("skip")
}
func (r *recordTB) Logf(string, ...any) {}
