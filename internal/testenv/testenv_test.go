package testenv

import (
	"os"
	"path/filepath"
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
