package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"auditwatch/alert/slack"
	"auditwatch/ingest"
	"auditwatch/internal/resname"
	"auditwatch/internal/testenv"
	"auditwatch/schema"
	"auditwatch/store/chsql"
)

// monitor is `auditwatch run --config deploy/run.example.yaml` (paths
// moved into a scratch directory) over the OpenBao scenario and the
// runbook's CloudTrail records, kept running.
type monitor struct {
	bin, work, cfg string
	metrics        string // http.listen
	cmd            *exec.Cmd
	stderr         *lockedWriter
	done           chan error
	events         []schema.Event
}

func buildBinary(tb testing.TB) string {
	tb.Helper()
	return sharedBinary(tb)
}

func startMonitor(tb testing.TB) *monitor { return startMonitorWith(tb, nil) }

// startMonitorWith starts the monitor with edit applied to the config
// text after the path changes (nil: the shipped example as is).
func startMonitorWith(tb testing.TB, edit func(cfg string) string) *monitor {
	tb.Helper()
	if lib := os.Getenv("CHDB_LIB_PATH"); lib == "" {
		testenv.Missing(tb, "CHDB_LIB_PATH is not set: libchdb.so (embedded storage) not available")
	}
	root := testenv.RepoRoot(tb)
	m := &monitor{bin: buildBinary(tb), work: tb.TempDir(), stderr: &lockedWriter{w: &bytes.Buffer{}}, done: make(chan error, 1)}
	raw, err := os.ReadFile(filepath.Join(root, "deploy", "run.example.yaml"))
	if err != nil {
		tb.Fatal(err)
	}
	// Paths only: the scenario from the repository, state under work,
	// the metrics listener on a free port.
	cfg := strings.ReplaceAll(string(raw), "path: testdata/openbao-scenario", "path: "+filepath.Join(root, "testdata", "openbao-scenario"))
	m.metrics = freeAddrTB(tb)
	cfg = strings.ReplaceAll(cfg, "127.0.0.1:9464", m.metrics)
	if edit != nil {
		cfg = edit(cfg)
	}
	m.cfg = filepath.Join(m.work, "run.yaml")
	if err := os.WriteFile(m.cfg, []byte(cfg), 0o644); err != nil {
		tb.Fatal(err)
	}
	ctDir := filepath.Join(m.work, "auditwatch-state", "cloudtrail")
	if err := os.MkdirAll(ctDir, 0o755); err != nil {
		tb.Fatal(err)
	}
	ct, err := os.ReadFile(filepath.Join("testdata", "runbook", "cloudtrail.jsonl"))
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ctDir, "cloudtrail.jsonl"), ct, 0o644); err != nil {
		tb.Fatal(err)
	}
	m.events = append(readEvents(tb, filepath.Join(root, "testdata", "openbao-scenario", "audit.log")),
		readEvents(tb, filepath.Join("testdata", "runbook", "cloudtrail.jsonl"))...)

	m.cmd = exec.Command(m.bin, "run", "--config", m.cfg)
	m.cmd.Dir = m.work
	m.cmd.Stdout = io.Discard
	m.cmd.Stderr = m.stderr
	if err := m.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() { m.done <- m.cmd.Wait() }()
	tb.Cleanup(func() {
		if m.cmd.ProcessState == nil {
			m.cmd.Process.Kill()
			<-m.done
		}
	})
	return m
}

func freeAddrTB(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func readEvents(tb testing.TB, path string) []schema.Event {
	tb.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	r := ingest.NewReader(bytes.NewReader(raw), path, ingest.DefaultOptions())
	var evs []schema.Event
	for {
		ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err == nil {
			evs = append(evs, ev)
		}
	}
	return evs
}

// alive fails when the monitor has exited.
func (m *monitor) alive(tb testing.TB) {
	tb.Helper()
	select {
	case err := <-m.done:
		m.done <- err
		tb.Fatalf("auditwatch run exited (%v):\n%s", err, m.stderr.w.String())
	default:
	}
}

func (m *monitor) stop(tb testing.TB) {
	tb.Helper()
	m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-m.done:
		if err != nil {
			tb.Fatalf("auditwatch run exited with %v:\n%s", err, m.stderr.w.String())
		}
	case <-time.After(30 * time.Second):
		tb.Fatalf("auditwatch run did not stop within 30s")
	}
}

// exec runs `auditwatch ARGS` as a person would in the monitor's working
// directory with $AUDITWATCH_CONFIG naming its config.
func (m *monitor) exec(args ...string) (string, string, error) {
	cmd := exec.Command(m.bin, args...)
	cmd.Dir = m.work
	cmd.Env = append(os.Environ(), "AUDITWATCH_CONFIG="+m.cfg)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	return o.String(), e.String(), err
}

// runbookCommands returns every `auditwatch …` line of the sh blocks of
// docs/RUNBOOK.md, split into words as a POSIX shell would (quotes,
// trailing comments).
func runbookCommands(tb testing.TB) [][]string {
	tb.Helper()
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(tb), "docs", "RUNBOOK.md"))
	if err != nil {
		tb.Fatal(err)
	}
	var out [][]string
	for _, blk := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(string(raw), -1) {
		for _, line := range strings.Split(blk[1], "\n") {
			if !strings.HasPrefix(line, "auditwatch ") {
				continue
			}
			w, err := shellWords(line)
			if err != nil {
				tb.Fatalf("RUNBOOK.md: %q: %v", line, err)
			}
			out = append(out, w)
		}
	}
	if len(out) < 8 {
		tb.Fatalf("RUNBOOK.md has %d auditwatch commands, want at least 8", len(out))
	}
	return out
}

func shellWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	in, quote := false, byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			} else {
				cur.WriteByte(c)
			}
		case c == '\'' || c == '"':
			quote, in = c, true
		case c == ' ' || c == '\t':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		case c == '#' && !in:
			return words, nil
		case c == '\\' || c == '$' || c == '`' || c == '|' || c == ';' || c == '&' || c == '<' || c == '>':
			return nil, fmt.Errorf("shell syntax %q the test does not interpret", c)
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if quote != 0 {
		return nil, errors.New("unterminated quote")
	}
	if in {
		words = append(words, cur.String())
	}
	return words, nil
}

func flagValue(args []string, name string) string {
	for i, a := range args {
		if a == "--"+name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
	}
	return ""
}

// expected is the model's answer to a runbook command, computed from the
// events the monitor was fed (and the findings it wrote): the set of
// "key|count" lines of the JSON answer.
func (m *monitor) expected(tb testing.TB, args []string) (cols []string, want []string) {
	tb.Helper()
	since, err := time.Parse(time.RFC3339, flagValue(args, "since"))
	if err != nil {
		tb.Fatalf("%v: the runbook examples use an RFC 3339 --since (they must answer in any year): %v", args, err)
	}
	count := map[string]map[string]bool{}
	add := func(key, id string) {
		if count[key] == nil {
			count[key] = map[string]bool{}
		}
		count[key][id] = true
	}
	var evs []schema.Event
	for _, ev := range m.events {
		if !ev.Time.Before(since) {
			evs = append(evs, ev)
		}
	}
	switch name := args[2]; name {
	case "who-accessed":
		cols = []string{"principal", "source_ip", "events"}
		r := flagValue(args, "resource")
		names := resname.Candidates(r)
		for _, ev := range evs {
			n := resname.Name(&ev)
			if ev.Resource == r || contains(names, n) {
				add(ev.Principal+"|"+ev.SourceIP, ev.ID)
			}
		}
	case "principal":
		cols = []string{"action", "resource", "events"}
		for _, ev := range evs {
			if ev.Principal == flagValue(args, "principal") {
				add(ev.Action+"|"+ev.Resource, ev.ID)
			}
		}
	case "ip":
		cols = []string{"principal", "resource", "events"}
		lo, hi, err := chsql.IPRange(flagValue(args, "ip"))
		if err != nil {
			tb.Fatal(err)
		}
		for _, ev := range evs {
			ip := chsql.IP16(ev.SourceIP)
			if ev.SourceIP != "" && bytes.Compare(ip[:], lo[:]) >= 0 && bytes.Compare(ip[:], hi[:]) <= 0 {
				add(ev.Principal+"|"+ev.Resource, ev.ID)
			}
		}
	case "credentials":
		cols = []string{"kind", "value", "events"}
		for _, ev := range evs {
			if ev.Principal == flagValue(args, "principal") {
				if ev.AccessKey != "" {
					add("access_key|"+ev.AccessKey, ev.ID)
				}
				if ev.TokenAccessor != "" {
					add("token_accessor|"+ev.TokenAccessor, ev.ID)
				}
			}
		}
	case "failures":
		cols = []string{"principal", "source_ip", "failures"}
		for _, ev := range evs {
			if ev.Outcome == schema.OutcomeFailure {
				add(ev.Principal+"|"+ev.SourceIP, ev.ID)
			}
		}
	case "blast-radius":
		cols = []string{"kind", "value", "events"}
		key, principal := flagValue(args, "access-key"), flagValue(args, "principal")
		for _, ev := range evs {
			if (key != "" && ev.AccessKey == key) || (principal != "" && ev.Principal == principal) {
				add("resource|"+ev.Resource, ev.ID)
				add("source_ip|"+ev.SourceIP, ev.ID)
				add("action|"+ev.Action, ev.ID)
			}
		}
	case "findings":
		cols = []string{"id", "detector", "severity"}
		min := schema.Severity(flagValue(args, "severity")).Rank()
		latest := map[string]schema.Finding{}
		for _, f := range readFindings(tb.(*testing.T), filepath.Join(m.work, "auditwatch-state", "findings.jsonl")) {
			if l, ok := latest[f.DedupeKey]; !ok || f.Revision > l.Revision {
				latest[f.DedupeKey] = f
			}
		}
		for _, f := range latest {
			if !f.Time.Before(since) && f.Severity.Rank() >= min {
				want = append(want, f.ID+"|"+f.Detector+"|"+string(f.Severity))
			}
		}
		sort.Strings(want)
		return cols, want
	default:
		tb.Fatalf("RUNBOOK.md runs query %q the test has no model of", name)
	}
	for k, ids := range count {
		want = append(want, fmt.Sprintf("%s|%d", k, len(ids)))
	}
	sort.Strings(want)
	return cols, want
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

// answer runs a command with --format json and reduces it to the
// model's lines; blast-radius's failure and principal rows are left out
// (the model checks resources, addresses and actions).
func (m *monitor) answer(tb testing.TB, args []string, cols []string) ([]string, error) {
	a := append([]string{}, args[1:]...)
	for i := range a {
		if a[i] == "--format" && i+1 < len(a) {
			a = append(a[:i], a[i+2:]...)
			break
		}
	}
	out, errOut, err := m.exec(append(a, "--format", "json")...)
	if err != nil {
		return nil, fmt.Errorf("%v: %v\n%s", args, err, errOut)
	}
	var rows []map[string]any
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		return nil, fmt.Errorf("%v: %v\n%s", args, err, out)
	}
	var got []string
	for _, r := range rows {
		if k, _ := r["kind"].(string); k == "failure" || k == "principal" {
			continue
		}
		var parts []string
		for _, c := range cols {
			parts = append(parts, fmt.Sprint(r[c]))
		}
		got = append(got, strings.Join(parts, "|"))
	}
	sort.Strings(got)
	return got, nil
}

// TestRunbookWhileRunning starts `run` with deploy/run.example.yaml, feeds
// it the scenario, and while it keeps running executes every command of
// docs/RUNBOOK.md verbatim: each must exit 0 and print its rows, and the
// same query's JSON must equal the model's answer from the input events
// and the findings file.
func TestRunbookWhileRunning(t *testing.T) {
	// The binary, its store and ports of its own, no environment changes:
	// it runs beside the other parallel tests.
	t.Parallel()
	m := startMonitor(t)
	// A query issued while run is starting must not take the store from it.
	early, _, _ := m.exec("query", "failures", "--since", "2026-11-28T00:00:00Z")
	t.Logf("query during start-up printed %d bytes", len(early))
	cmds := runbookCommands(t)
	deadline := time.Now().Add(90 * time.Second)
	for _, args := range cmds {
		cols, want := m.expected(t, args)
		if len(want) == 0 {
			t.Errorf("%s: the model expects no rows: the example names nothing in the scenario", strings.Join(args, " "))
			continue
		}
		var got []string
		var err error
		for {
			m.alive(t)
			if got, err = m.answer(t, args, cols); err == nil && strings.Join(got, "\n") == strings.Join(want, "\n") {
				break
			}
			if time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Second)
			cols, want = m.expected(t, args)
		}
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s:\n got  %q\n want %q", strings.Join(args, " "), got, want)
			continue
		}
		t.Logf("%s: %d rows as expected", strings.Join(args, " "), len(want))
		// The command exactly as printed.
		out, errOut, err := m.exec(args[1:]...)
		if err != nil {
			t.Errorf("%s: %v\n%s", strings.Join(args, " "), err, errOut)
			continue
		}
		lines := strings.Split(strings.TrimRight(out, "\r\n"), "\n")
		switch flagValue(args, "format") {
		case "commands":
			n := 0
			for _, l := range lines {
				if strings.HasPrefix(l, "#") {
					continue
				}
				w, err := shellWords(l)
				if err != nil || len(w) < 3 || (w[0] != "aws" && w[0] != "vault" && w[0] != "auditwatch") {
					t.Errorf("%s: line %q is not a command (%v)", strings.Join(args, " "), l, err)
				}
				n++
			}
			for _, must := range map[string][]string{
				"credentials":  {"aws iam update-access-key --user-name 'deploy-bot' --access-key-id 'AKIAIOSFODNN7EXAMPLE' --status Inactive"},
				"blast-radius": {"aws secretsmanager rotate-secret --secret-id 'arn:aws:secretsmanager:us-east-1:123456789012:secret:prod-db-Xy12Ab'", "aws secretsmanager rotate-secret --secret-id 'prod-db'"},
			}[args[2]] {
				if !strings.Contains(out, must+"\n") {
					t.Errorf("%s: no line %q in\n%s", strings.Join(args, " "), must, out)
				}
			}
			if strings.Contains(out, "prod/payments/stripe") {
				t.Errorf("%s: rotates a secret it was only denied:\n%s", strings.Join(args, " "), out)
			}
			if n == 0 {
				t.Errorf("%s: printed no command:\n%s", strings.Join(args, " "), out)
			}
		case "csv":
			recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
			if err != nil || len(recs) != len(want)+1 {
				t.Errorf("%s: %d CSV records (%v), want header + %d", strings.Join(args, " "), len(recs), err, len(want))
			}
		case "", "table":
			rows := len(want)
			if args[2] == "blast-radius" {
				rows = len(lines) - 1 // also principal and failure rows
			}
			if len(lines) != rows+1 || strings.Contains(out, "(no rows)") {
				t.Errorf("%s: printed %d lines, want a header and %d rows:\n%s", strings.Join(args, " "), len(lines), rows, out)
			}
		}
	}
	// Slack's Investigate block for every finding the monitor raised:
	// each command, unescaped from Slack and split as the shell would,
	// answers with at least one row.
	latest := map[string]schema.Finding{}
	for _, f := range readFindings(t, filepath.Join(m.work, "auditwatch-state", "findings.jsonl")) {
		if l, ok := latest[f.DedupeKey]; !ok || f.Revision > l.Revision {
			latest[f.DedupeKey] = f
		}
	}
	if len(latest) == 0 {
		t.Fatal("the monitor wrote no findings")
	}
	ran := 0
	for _, f := range latest {
		for _, line := range strings.Split(html.UnescapeString(slack.Runbook(f)), "\n") {
			args, err := shellWords(line)
			if err != nil || len(args) < 3 || args[0] != "auditwatch" {
				t.Errorf("Investigate line %q: %v", line, err)
				continue
			}
			out, errOut, err := m.exec(append(args[1:], "--format", "json")...)
			var rows []map[string]any
			if err == nil {
				err = json.Unmarshal([]byte(out), &rows)
			}
			if err != nil || len(rows) == 0 {
				t.Errorf("finding %s (%s): %s: %d rows, %v\n%s", f.ID, f.Detector, line, len(rows), err, errOut)
			}
			ran++
		}
	}
	t.Logf("ran %d Investigate commands of %d findings", ran, len(latest))
	m.alive(t)
	m.stop(t)
}

// BenchmarkRunbookWhileRunning times every RUNBOOK command, as a person
// runs it (a new process asking the running monitor's query endpoint).
func BenchmarkRunbookWhileRunning(b *testing.B) {
	m := startMonitor(b)
	cmds := runbookCommands(b)
	// Wait until the last of the scenario is stored.
	deadline := time.Now().Add(90 * time.Second)
	for {
		out, _, err := m.exec("query", "findings", "--since", "2026-11-28T00:00:00Z", "--format", "json")
		if err == nil && strings.Contains(out, "privileged_use") && strings.Contains(out, "auth_failure_spike") {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("the scenario's findings were not stored within 90s: %v", err)
		}
		time.Sleep(time.Second)
	}
	// Baseline: starting the binary and printing its version, the part
	// of every answer that is not the query.
	b.Run("baseline-version", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, errOut, err := m.exec("version"); err != nil {
				b.Fatalf("version: %v\n%s", err, errOut)
			}
		}
	})
	for _, args := range cmds {
		name := args[2] + "/" + strings.Join(args[3:5], "=")
		b.Run(name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, errOut, err := m.exec(args[1:]...); err != nil {
					b.Fatalf("%v: %v\n%s", args, err, errOut)
				}
			}
		})
	}
	m.stop(b)
}
