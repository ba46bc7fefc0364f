// Package testenv owns what tests need to find their surroundings: the
// repository root, the shared real-log corpus beside CI clones, and two
// fail-or-skip rules. An integration test whose peer is missing fails when
// AUDITWATCH_REQUIRE_INTEGRATION is set (as `make test` sets it) and
// otherwise skips, saying why. A test that needs the shared corpus fails
// when it is absent only when AUDITWATCH_REQUIRE_CORPUS is set (only
// .ci/run sets it, beside a CI clone); on a user's clone it skips with a
// one-line reason naming the missing directory.
package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// RequireEnv names the variable that turns a missing integration peer
// into a failure.
const RequireEnv = "AUDITWATCH_REQUIRE_INTEGRATION"

// RequireCorpusEnv names the variable that turns a missing shared corpus
// (../shared/testdata) into a failure. It is separate from RequireEnv so
// that `make test` on a user's clone, which has the peers but not the
// corpus, passes.
const RequireCorpusEnv = "AUDITWATCH_REQUIRE_CORPUS"

// Required reports whether integration peers must be present.
func Required() bool { return os.Getenv(RequireEnv) != "" }

// CorpusRequired reports whether the shared corpus must be present.
func CorpusRequired() bool { return os.Getenv(RequireCorpusEnv) != "" }

// Missing stops the test because a peer or input is absent: t.Fatal when
// Required, t.Skip otherwise, with the reason either way.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if Required() {
		t.Fatalf("%s (required: %s is set)", msg, RequireEnv)
	}
	t.Skip(msg)
}

// RepoRoot walks up from the test's directory to the one holding go.mod.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
}

// SharedTestdata returns the shared real-log corpus, ../shared/testdata
// beside the repository (present beside CI clones, not beside a user's
// clone; a checkout one level deeper is tried too). When it is absent the
// test stops through Missing, saying so plainly.
func SharedTestdata(t testing.TB) string {
	t.Helper()
	dir, ok := LookupSharedTestdata(t)
	if !ok {
		// LookupSharedTestdata has already failed the test when the corpus is required.
		t.Skipf("skipped: shared corpus ../shared/testdata not present at %s (set %s to require it)", dir, RequireCorpusEnv)
	}
	return dir
}

// LookupSharedTestdata is SharedTestdata for tests that still have work
// without the corpus (the repository's own samples): it reports whether
// the corpus is there instead of skipping, and fails the test when it is
// absent but CorpusRequired. dir is where it was looked for.
func LookupSharedTestdata(t testing.TB) (dir string, ok bool) {
	t.Helper()
	root := RepoRoot(t)
	dir = filepath.Join(root, "..", "shared", "testdata")
	if _, err := os.Stat(dir); err == nil {
		return dir, true
	}
	if alt := filepath.Join(root, "..", "..", "shared", "testdata"); alt != dir {
		if _, err := os.Stat(alt); err == nil {
			return alt, true
		}
	}
	if CorpusRequired() {
		t.Fatalf("shared corpus ../shared/testdata not present at %s (required: %s is set)", dir, RequireCorpusEnv)
	}
	t.Logf("../shared/testdata not present at %s (it sits beside CI clones only): checking the repository's own samples only", dir)
	return dir, false
}
