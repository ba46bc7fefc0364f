package configcheck

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDiscover(t *testing.T) {
	dir := t.TempDir()
	write := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("{}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	flagFile, envFile, local, etc := write("flag.yaml"), write("env.yaml"), write("local.yaml"), write("etc.yaml")
	missing := filepath.Join(dir, "absent.yaml")
	for _, tc := range []struct {
		name         string
		flag, env    string
		search       []string
		want, from   string
		wantErr      string
		wantNoConfig bool
	}{
		{"flag first", flagFile, envFile, []string{local, etc}, flagFile, "--config", "", false},
		{"then env", "", envFile, []string{local, etc}, envFile, "$AUDITWATCH_CONFIG", "", false},
		{"then ./auditwatch.yaml", "", "", []string{local, etc}, local, local, "", false},
		{"then /etc", "", "", []string{missing, etc}, etc, etc, "", false},
		{"nothing", "", "", []string{missing, missing}, "", "", "no config file: pass --config FILE, set $AUDITWATCH_CONFIG", true},
		{"flag names a missing file", missing, envFile, []string{local}, "", "", missing + " (from --config)", false},
		{"env names a missing file", "", missing, []string{local}, "", "", missing + " (from $AUDITWATCH_CONFIG)", false},
		{"a directory is not a config", "", "", []string{dir, etc}, etc, etc, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, from, err := Discover(tc.flag, func(k string) string {
				if k == EnvConfig {
					return tc.env
				}
				return ""
			}, tc.search)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Discover = %q, %v; want error containing %q", got, err, tc.wantErr)
				}
				if errors.Is(err, ErrNoConfig) != tc.wantNoConfig {
					t.Errorf("errors.Is(err, ErrNoConfig) = %v", !tc.wantNoConfig)
				}
				return
			}
			if err != nil || got != tc.want || from != tc.from {
				t.Fatalf("Discover = %q (%s), %v; want %q (%s)", got, from, err, tc.want, tc.from)
			}
		})
	}
}
