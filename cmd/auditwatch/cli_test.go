package main

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestEverySubcommandHelp: `auditwatch NAME -h` exits 0 for every
// subcommand, starts with its usage line, and lists every flag the command
// defines with its default; the top-level help lists every subcommand with
// its one-line summary.
func TestEverySubcommandHelp(t *testing.T) {
	code, _, top := runCmd(t, "-h")
	if code != 0 {
		t.Fatalf("auditwatch -h: exit %d", code)
	}
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	slices.Sort(names)
	if len(names) < 10 {
		t.Fatalf("only %d commands registered", len(names))
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			c := commands[name]
			if c.summary == "" || strings.Contains(c.summary, "\n") {
				t.Errorf("summary %q: want one line", c.summary)
			}
			if !strings.Contains(top, "  "+name+" ") || !strings.Contains(top, c.summary) {
				t.Errorf("top-level help lacks %s and its summary:\n%s", name, top)
			}
			flagSets.Delete(name)
			code, stdout, stderr := runCmd(t, name, "-h")
			if code != 0 {
				t.Fatalf("%s -h: exit %d\n%s", name, code, stderr)
			}
			help := stdout + stderr
			if !strings.HasPrefix(help, "usage: auditwatch "+name) {
				t.Errorf("%s -h does not start with its usage line:\n%s", name, help)
			}
			// A command with subcommands (rules check, trail verify)
			// names them in its usage; each one's -h lists its flags.
			subs := map[string]string{}
			for _, m := range regexp.MustCompile(`auditwatch `+regexp.QuoteMeta(name)+` ([a-z][a-z-]+)`).FindAllStringSubmatch(help, -1) {
				subs[name+" "+m[1]] = m[1]
			}
			if len(subs) == 0 {
				checkFlagsListed(t, name, help)
				return
			}
			for full, sub := range subs {
				flagSets.Delete(full)
				code, stdout, stderr := runCmd(t, name, sub, "-h")
				if code != 0 {
					t.Errorf("%s -h: exit %d\n%s", full, code, stderr)
					continue
				}
				checkFlagsListed(t, full, stdout+stderr)
			}
		})
	}
}

// checkFlagsListed checks that help lists every flag of the flag set the
// command name made, with its default.
func checkFlagsListed(t *testing.T, name, help string) {
	t.Helper()
	v, ok := flagSets.Load(name)
	if !ok {
		t.Errorf("%s does not build its flags with newFlagSet", name)
		return
	}
	v.(*flag.FlagSet).VisitAll(func(f *flag.Flag) {
		if !strings.Contains(help, "  -"+f.Name) {
			t.Errorf("%s -h does not list -%s:\n%s", name, f.Name, help)
		}
		if zero := map[string]bool{"": true, "0": true, "false": true, "0s": true}; !zero[f.DefValue] &&
			!strings.Contains(help, "(default "+f.DefValue) && !strings.Contains(help, `(default "`+f.DefValue+`")`) {
			t.Errorf("%s -h does not show -%s's default %q:\n%s", name, f.Name, f.DefValue, help)
		}
	})
}

func TestVersionFlag(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"-version"}, {"version"}} {
		code, stdout, _ := runCmd(t, args...)
		// the version line, then the attribution the network data's
		// licence (CC BY 4.0) asks for
		lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
		if code != 0 || len(lines) != 2 || !strings.HasPrefix(lines[0], "auditwatch ") || !strings.Contains(lines[1], "CC BY 4.0") {
			t.Errorf("%v: exit %d, stdout %q; want a line starting with auditwatch, then the network data's attribution", args, code, stdout)
		}
	}
}

// badConfig is a config with one decoding and two validation problems,
// the storage section included.
const badConfig = `stream: {type: embedded}
storage:
  backend: tape
logging: {format: xml}
http: {listn: ":1"}
`

// TestConfigErrorsAsCheckConfig: run, ingest, detect and alert print a
// bad config's problems exactly as check-config does, as file:line:
// path: message, and exit 1 without starting anything.
func TestConfigErrorsAsCheckConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(path, []byte(badConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	code, want, _ := runCmd(t, "check-config", path)
	if code != 1 {
		t.Fatalf("check-config: exit %d", code)
	}
	for _, line := range []string{
		path + `:3: storage.backend: "tape" is not chdb, clickhouse or off`,
		path + `:4: logging.format: want json or text, got "xml"`,
		path + `:5: http.listn: unknown field`,
	} {
		if !strings.Contains(want, line+"\n") {
			t.Errorf("check-config output lacks %q:\n%s", line, want)
		}
	}
	for _, name := range []string{"run", "ingest", "detect", "alert"} {
		code, _, stderr := runCmd(t, name, "--config", path)
		if code != 1 {
			t.Errorf("%s: exit %d, want 1\n%s", name, code, stderr)
		}
		if !strings.HasPrefix(stderr, want) {
			t.Errorf("%s does not report the problems as check-config does:\n got %s\nwant %s", name, stderr, want)
		}
	}
}

// TestConfigDiscovery: without --config, every command that takes a
// config uses $AUDITWATCH_CONFIG, else ./auditwatch.yaml; a named file
// that does not exist is an error naming it, and nothing is created.
func TestConfigDiscovery(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	t.Setenv("AUDITWATCH_CONFIG", "")
	envFile := filepath.Join(t.TempDir(), "env.yaml")
	if err := os.WriteFile(envFile, []byte(badConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("auditwatch.yaml", []byte("stream: {type: embedded}\nlogging: {level: loud}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"run", "ingest", "detect", "alert", "check-config"} {
		code, stdout, stderr := runCmd(t, name)
		if code != 1 || !strings.Contains(stdout+stderr, "auditwatch.yaml:2: logging.level: ") {
			t.Errorf("%s in a directory with auditwatch.yaml: exit %d\n%s%s", name, code, stdout, stderr)
		}
	}
	t.Setenv("AUDITWATCH_CONFIG", envFile)
	for _, name := range []string{"run", "check-config"} {
		code, stdout, stderr := runCmd(t, name)
		if code != 1 || !strings.Contains(stdout+stderr, envFile+":3: storage.backend") {
			t.Errorf("%s with $AUDITWATCH_CONFIG: exit %d\n%s%s", name, code, stdout, stderr)
		}
	}
	// query and migrate load the same file: its problems stop them.
	for _, args := range [][]string{{"query", "findings"}, {"migrate"}} {
		code, stdout, stderr := runCmd(t, args...)
		if code == 0 || !strings.Contains(stdout+stderr, envFile+":3: storage.backend") {
			t.Errorf("%v with $AUDITWATCH_CONFIG: exit %d\n%s%s", args, code, stdout, stderr)
		}
	}
	missing := filepath.Join(dir, "absent.yaml")
	t.Setenv("AUDITWATCH_CONFIG", missing)
	for _, args := range [][]string{{"run"}, {"check-config"}, {"query", "findings"}, {"replay", "x.log"}} {
		code, stdout, stderr := runCmd(t, args...)
		if code != 2 || !strings.Contains(stdout+stderr, missing+" (from $AUDITWATCH_CONFIG)") {
			t.Errorf("%v with $AUDITWATCH_CONFIG naming a missing file: exit %d\n%s%s", args, code, stdout, stderr)
		}
	}
	code, _, stderr := runCmd(t, "run", "--config", missing)
	if code != 2 || !strings.Contains(stderr, missing+" (from --config)") {
		t.Errorf("run --config missing: exit %d\n%s", code, stderr)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("commands created files in the working directory: %v", names)
	}
}

// TestNoConfigAnywhere: a command that needs a config says where it
// looked.
func TestNoConfigAnywhere(t *testing.T) {
	// The machine's own /etc/auditwatch/config.yaml must not count.
	noConfigAnywhere(t)
	local, etc := configSearch[0], configSearch[1]
	for _, name := range []string{"run", "check-config"} {
		code, _, stderr := runCmd(t, name)
		if code != 2 || !strings.Contains(stderr, "no config file: pass --config FILE, set $AUDITWATCH_CONFIG, or create "+local+" or "+etc) {
			t.Errorf("%s with no config anywhere: exit %d\n%s", name, code, stderr)
		}
	}
}
