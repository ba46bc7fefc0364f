package secret

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValueFromEnvAndFile(t *testing.T) {
	t.Setenv("AW_TEST_TOKEN", "xoxb-from-env\n")
	v, err := Secret{Env: "AW_TEST_TOKEN"}.Value()
	if err != nil || v != "xoxb-from-env" {
		t.Fatalf("env: %q, %v", v, err)
	}
	p := filepath.Join(t.TempDir(), "tok")
	if err := os.WriteFile(p, []byte("hec-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err = Secret{File: p}.Value()
	if err != nil || v != "hec-from-file" {
		t.Fatalf("file: %q, %v", v, err)
	}
}

func TestUnsetAndInvalid(t *testing.T) {
	if _, err := (Secret{Env: "AW_TEST_DEFINITELY_UNSET"}).Value(); !errors.Is(err, ErrUnset) {
		t.Fatalf("unset env: err = %v", err)
	}
	if _, err := (Secret{}).Value(); !errors.Is(err, ErrUnset) {
		t.Fatalf("zero: err = %v", err)
	}
	if err := (Secret{Env: "A", File: "b"}).Validate(); err == nil {
		t.Fatal("both sources accepted")
	}
}

func TestNeverPrintsValue(t *testing.T) {
	t.Setenv("AW_TEST_TOKEN", "super-secret-value")
	s := Secret{Env: "AW_TEST_TOKEN"}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("cfg", "token", s)
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %+v %#v", s, s, s), buf.String()} {
		if strings.Contains(out, "super-secret-value") {
			t.Fatalf("secret value leaked: %s", out)
		}
		if !strings.Contains(out, "AW_TEST_TOKEN") {
			t.Fatalf("source not named: %s", out)
		}
	}
}
