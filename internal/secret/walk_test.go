package secret

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWalkAndDescribe(t *testing.T) {
	type out struct {
		Token Secret `yaml:"token"`
	}
	cfg := struct {
		Outputs []out          `yaml:"outputs"`
		Pass    *Secret        `yaml:"password"`
		ByName  map[string]out `yaml:"by_name"`
		Skip    Secret         `yaml:"-"`
		Other   map[string]int `yaml:"other"`
	}{
		Outputs: []out{{Token: Secret{Env: "WALK_TEST_TOKEN"}}, {Token: Secret{Env: "WALK_TEST_UNSET"}}},
		Pass:    &Secret{File: filepath.Join(t.TempDir(), "pw")},
		ByName:  map[string]out{"hec": {Token: Secret{}}},
	}
	t.Setenv("WALK_TEST_TOKEN", "tok-value-1234567")
	os.WriteFile(cfg.Pass.File, []byte("pw-value-7654321\n"), 0o600)
	got := map[string]string{}
	Walk(cfg, func(p string, s Secret) { got[p] = s.Describe() })
	want := map[string]string{
		"outputs[0].token":  "set (from env WALK_TEST_TOKEN)",
		"outputs[1].token":  "NOT SET (env WALK_TEST_UNSET is empty or missing)",
		"password":          "set (from file " + cfg.Pass.File + ")",
		"by_name.hec.token": "not configured",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("walked %v", got)
	}
	for _, v := range got {
		if strings.Contains(v, "tok-value") || strings.Contains(v, "pw-value") {
			t.Errorf("Describe printed a value: %q", v)
		}
	}
}
