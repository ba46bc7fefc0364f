package configcheck

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// EnvConfig names the environment variable that names the config file
// when --config is not given.
const EnvConfig = "AUDITWATCH_CONFIG"

// Search lists, in order, where a config file is looked for when neither
// --config nor $AUDITWATCH_CONFIG names one: the places the commands pass
// to Discover.
var Search = []string{"auditwatch.yaml", "/etc/auditwatch/config.yaml"}

// ErrNoConfig is Discover finding no config file.
var ErrNoConfig = errors.New("no config file")

// Discover returns the config file a command uses: flag (--config) when
// set, else $AUDITWATCH_CONFIG (read through getenv), else the first of
// search (the commands pass Search) that exists.
// from says which rule chose it. A file named by the flag or the
// environment must exist; when nothing is found the error (wrapping
// ErrNoConfig) lists every place looked at.
func Discover(flag string, getenv func(string) string, search []string) (path, from string, err error) {
	check := func(p, from string) (string, string, error) {
		if _, err := os.Stat(p); err != nil {
			return "", "", fmt.Errorf("config %s (from %s): %w", p, from, err)
		}
		return p, from, nil
	}
	if flag != "" {
		return check(flag, "--config")
	}
	if v := getenv(EnvConfig); v != "" {
		return check(v, "$"+EnvConfig)
	}
	for _, p := range search {
		st, err := os.Stat(p)
		if err == nil && !st.IsDir() {
			return p, p, nil
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", "", fmt.Errorf("config %s: %w", p, err)
		}
	}
	return "", "", fmt.Errorf("%w: pass --config FILE, set $%s, or create %s", ErrNoConfig, EnvConfig, strings.Join(search, " or "))
}
