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

	"go.yaml.in/yaml/v3"
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

// A credential written in the config itself is refused without quoting
// any of it (the decoder's own message showed its first characters);
// the map forms decode strictly, with every problem reported by line.
func TestYAMLNeverQuotesAnInlineValue(t *testing.T) {
	type cfg struct {
		Token Secret  `yaml:"token"`
		Pass  *Secret `yaml:"pass"`
		Other int     `yaml:"other"`
	}
	decode := func(doc string) (cfg, error) {
		var c cfg
		dec := yaml.NewDecoder(strings.NewReader(doc))
		dec.KnownFields(true)
		err := dec.Decode(&c)
		return c, err
	}
	c, err := decode("token: {env: SLACK_BOT_TOKEN}\npass: {file: /run/secrets/p}\n")
	if err != nil || c.Token != (Secret{Env: "SLACK_BOT_TOKEN"}) || c.Pass == nil || *c.Pass != (Secret{File: "/run/secrets/p"}) {
		t.Fatalf("map forms: %+v, %v", c, err)
	}
	if c, err := decode("token: null\nother: 1\n"); err != nil || !c.Token.IsZero() || c.Other != 1 {
		t.Fatalf("null: %+v, %v", c, err)
	}
	tests := []struct{ doc, want string }{
		{"token: xoxb-INLINE-123456789\nother: x\n", "line 1: cannot unmarshal !!str into a secret"},
		{"token: 1234567890123\n", "line 1: cannot unmarshal !!int into a secret"},
		{"token: {env: A, value: xoxb-INLINE-123456789}\n", "line 1: field value not found in type secret.Secret"},
		{"token:\n  file: [xoxb-INLINE-123456789]\n", "line 2: cannot unmarshal !!seq into a secret's file"},
		{"token: [xoxb-INLINE-123456789]\n", "line 1: cannot unmarshal !!seq into a secret"},
	}
	for _, tt := range tests {
		_, err := decode(tt.doc)
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			t.Errorf("%q: err = %v, want a *yaml.TypeError (the rest of the document is still checked)", tt.doc, err)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: err = %v, want %q", tt.doc, err, tt.want)
		}
		for _, part := range []string{"xoxb", "INLINE", "123456"} {
			if strings.Contains(err.Error(), part) {
				t.Errorf("%q: err = %v quotes the value", tt.doc, err)
			}
		}
	}
	// the rest of the document is still decoded and checked
	if _, err := decode("token: xoxb-INLINE-123456789\nother: x\n"); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("other problems not reported beside the secret's: %v", err)
	}
}
