package main

import (
	"bytes"
	"fmt"
	iofs "io/fs"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"auditwatch/gen"
	"auditwatch/internal/testenv"
	"auditwatch/schema"
	"auditwatch/store/chtest"
	"auditwatch/trail/trailtest"
)

// splitGenerated generates traffic over days+1 days ending about an hour
// ago, learning fraction days/(days+1), and returns the history (before
// the learning end) and the next day's records, and the generator.
func splitGenerated(t *testing.T, seed int64, events, days int) ([]byte, []byte, *gen.Generator) {
	t.Helper()
	span := time.Duration(days+1) * 24 * time.Hour
	start := time.Now().UTC().Add(-span - time.Hour).Truncate(time.Hour)
	g, err := gen.New(gen.Config{Seed: seed, Events: events, Anomalies: true, CloudTrailShare: -1, Start: start, Duration: span,
		LearningFraction: float64(days) / float64(days+1)}.Defaults())
	if err != nil {
		t.Fatal(err)
	}
	hist, next := splitAtLearningEnd(t, g)
	return hist, next, g
}

// splitAtLearningEnd draws every record of g and returns those dated
// before its learning end (the history) and the rest.
func splitAtLearningEnd(t *testing.T, g *gen.Generator) (hist, next []byte) {
	t.Helper()
	var hb, nb bytes.Buffer
	var buf []byte
	for {
		var ok bool
		if buf, _, ok = g.Next(buf[:0]); !ok {
			break
		}
		m := recordTime.FindSubmatch(buf)
		if m == nil {
			t.Fatalf("record without a time: %.200s", buf)
		}
		at, err := time.Parse(time.RFC3339Nano, string(m[1]))
		if err != nil {
			t.Fatal(err)
		}
		if at.Before(g.LearningEnd()) {
			hb.Write(buf)
		} else {
			nb.Write(buf)
		}
	}
	return hb.Bytes(), nb.Bytes()
}

// labelCheck counts the labels no finding finds and the findings no
// label explains. A later revision of an explained finding (same dedupe
// key: a burst the attack opened, updated by an event from another
// address) is explained by it.
func labelCheck(t *testing.T, labels []gen.Label, fs []schema.Finding) (missed, unexplained int) {
	t.Helper()
	explainedKey := map[string]bool{}
	for _, f := range fs {
		for _, l := range labels {
			if genLabelFound(l, f, l.Detector) {
				explainedKey[f.DedupeKey] = true
			}
			for _, d := range l.AlsoMatches {
				if genLabelFound(l, f, d) {
					explainedKey[f.DedupeKey] = true
				}
			}
		}
	}
	for _, l := range labels {
		found := false
		for _, f := range fs {
			found = found || genLabelFound(l, f, l.Detector)
		}
		if !found {
			missed++
			t.Logf("missed: %s %s %s %s", l.ID, l.Detector, l.Principal, l.SourceIP)
		}
	}
	for _, f := range fs {
		ok := explainedKey[f.DedupeKey]
		for _, l := range labels {
			ok = ok || genLabelFound(l, f, l.Detector)
			for _, d := range l.AlsoMatches {
				ok = ok || genLabelFound(l, f, d)
			}
		}
		if !ok {
			unexplained++
			t.Logf("unexplained: %s %s %s %s rev %d: %s", f.Detector, f.Principal, f.SourceIP, f.Time, f.Revision, f.Reason)
		}
	}
	return missed, unexplained
}

// TestBaselineFromStoreThenRun is the cold-start acceptance: seven days of
// generated traffic are stored through the real path (normalize, then
// load into the configured store), `auditwatch baseline --from-store`
// learns them into run's detector state, and the built `run` binary then
// reads the eighth day: every injected anomaly of that day is found and
// no finding falls outside them (no learning-period findings). On the
// embedded store and on the ClickHouse 18.16 server. Every command and
// the run carry known secrets (secretRun) that appear nowhere they write.
func TestBaselineFromStoreThenRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary over a week of traffic; not run with -short")
	}
	// Processes, servers and files of its own, no environment changes:
	// it runs beside other parallel tests.
	t.Parallel()
	for _, backend := range []string{"chdb", "clickhouse"} {
		t.Run(backend, func(t *testing.T) {
			var storage string
			switch backend {
			case "chdb":
				if os.Getenv("CHDB_LIB_PATH") == "" {
					testenv.Missing(t, "CHDB_LIB_PATH is not set (scripts/setup/20-clickhouse.sh exports it): libchdb.so (embedded storage) not available")
				}
				storage = fmt.Sprintf("{backend: chdb, database: week, chdb: {path: %q}}", filepath.Join(t.TempDir(), "chdb"))
			case "clickhouse":
				srv := chtest.StartServer(t)
				storage = fmt.Sprintf("{backend: clickhouse, database: week, clickhouse: {addr: [%q]}}", srv.Addr)
			}
			baselineFromStoreThenRun(t, storage)
		})
	}
}

func baselineFromStoreThenRun(t *testing.T, storage string) {
	sec := newSecretRun(t)
	httpAddr := freeAddr(t)
	work := t.TempDir()
	hist, next, g := splitGenerated(t, 21, 90_000, 7)
	histPath := filepath.Join(work, "week.log")
	must(t, os.WriteFile(histPath, hist, 0o644))
	drop := filepath.Join(work, "drop")
	must(t, os.MkdirAll(drop, 0o755))
	findings := filepath.Join(work, "findings.jsonl")
	cfgPath := filepath.Join(work, "run.yaml")
	must(t, os.WriteFile(cfgPath, []byte(fmt.Sprintf(`sources:
  - {name: day8, type: dir, dir: {path: %q, poll_interval: 200ms, settle_time: 100ms}}
state: {dir: %q, checkpoint_interval: 200ms, idle_drain: 1s}
storage: %s
files: {findings: %q}
http: {listen: %q}
logging: {level: warn, format: text}
shutdown_timeout: 10s
%s`, drop, filepath.Join(work, "state"), storage, findings, httpAddr, sec.AlertsYAML(""))), 0o644))

	// Store the week the way events reach the store offline (the built
	// command: the in-process tests of normalize, load and baseline run
	// under the race detector, which would slow a week's events here).
	norm := filepath.Join(work, "week.jsonl")
	code, evs, errs := sec.Run("normalize", histPath)
	if code != 0 {
		t.Fatalf("normalize: exit %d: %s", code, errs)
	}
	must(t, os.WriteFile(norm, []byte(evs), 0o644))
	if code, _, errs := sec.Run("load", "--config", cfgPath, norm); code != 0 {
		t.Fatalf("load: exit %d: %s", code, errs)
	}
	code, out, errs := sec.Run("baseline", "--config", cfgPath, "--from-store", "--since", "30d")
	if code != 0 || !strings.Contains(out, "baseline: learned ") {
		t.Fatalf("baseline --from-store: exit %d: %s%s", code, out, errs)
	}
	t.Log(strings.TrimSpace(out))

	var labels []gen.Label
	for _, l := range g.Labels() {
		if !l.Time.Before(g.LearningEnd()) {
			labels = append(labels, l)
		}
	}
	if len(labels) < 5 {
		t.Fatalf("only %d anomalies on the next day", len(labels))
	}
	must(t, os.WriteFile(filepath.Join(drop, "day8.log"), next, 0o644))
	p := sec.Start("run", "--config", cfgPath)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("run stderr:\n%s", p.stderr)
		}
	})
	waitFindings(t, p, findings, len(labels), 5*time.Second, 120*time.Second)
	sec.WaitDeadLetters(work, 60*time.Second)
	sec.ScrapeMetrics(httpAddr)
	p.stop(t)
	// the normalized week is the test's input, not something the run wrote
	sec.Grep(map[string]string{}, work, cfgPath, norm)
	fs := readFindings(t, findings)
	if missed, unexplained := labelCheck(t, labels, fs); missed != 0 || unexplained != 0 {
		t.Errorf("run after baseline --from-store: %d of %d anomalies missed, %d unexplained findings (of %d); want 0 and 0",
			missed, len(labels), unexplained, len(fs))
	}
}

// TestBaselineFromS3Archive: the CloudTrail half of a day's history is
// archived in S3 as CloudTrail delivers it (gzip'd {"Records":[...]}
// objects under AWSLogs/…, digests beside them), served by a local S3
// endpoint; `baseline` learns from s3://bucket/prefix and the Vault half's
// file together, then a replay of the next day on that state finds every
// anomaly and nothing else.
func TestBaselineFromS3Archive(t *testing.T) {
	hist, next, g := splitGenerated(t, 11, 80_000, 1)
	work := t.TempDir()
	s3dir := filepath.Join(work, "s3")
	w := gen.NewS3Writer(s3dir, 3)
	var vault bytes.Buffer
	for _, line := range bytes.SplitAfter(hist, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if !bytes.Contains(line, []byte(`"eventTime"`)) {
			vault.Write(line)
			continue
		}
		m := recordTime.FindSubmatch(line)
		at, err := time.Parse(time.RFC3339Nano, string(m[1]))
		if err != nil {
			t.Fatal(err)
		}
		must(t, w.Add(bytes.TrimSpace(line), at, "111122223333", "eu-west-1"))
	}
	must(t, w.Close())
	tr := &trailtest.Trail{Bucket: "archive", Objects: map[string]*trailtest.Object{}}
	must(t, filepath.WalkDir(s3dir, func(p string, e iofs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(s3dir, p)
		tr.Objects["trails/"+filepath.ToSlash(rel)] = &trailtest.Object{Body: b}
		return nil
	}))
	if len(tr.Objects) < 10 {
		t.Fatalf("%d archive objects", len(tr.Objects))
	}
	// A digest and an object outside the prefix are not learned from.
	tr.Objects["trails/AWSLogs/111122223333/CloudTrail-Digest/eu-west-1/2026/01/01/x_CloudTrail-Digest_eu-west-1_t_20260101T0000Z.json.gz"] = &trailtest.Object{Body: []byte("not a log")}
	tr.Objects["other/junk.json.gz"] = &trailtest.Object{Body: []byte("not a log")}
	srv := httptest.NewServer(tr.S3())
	defer srv.Close()
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
	vaultPath := filepath.Join(work, "vault-audit.log")
	must(t, os.WriteFile(vaultPath, vault.Bytes(), 0o644))
	nextPath := filepath.Join(work, "next.log")
	must(t, os.WriteFile(nextPath, next, 0o644))

	state := filepath.Join(work, "state")
	code, out, errs := runCmd(t, "baseline", "--since", "30d", "--state", state, "--region", "eu-west-1",
		"--s3-endpoint", srv.URL, "--path-style", "s3://archive/trails/", vaultPath)
	if code != 0 || !strings.Contains(out, "baseline: learned ") {
		t.Fatalf("baseline from S3: exit %d: %s%s", code, out, errs)
	}
	t.Log(strings.TrimSpace(out))
	var labels []gen.Label
	for _, l := range g.Labels() {
		if !l.Time.Before(g.LearningEnd()) {
			labels = append(labels, l)
		}
	}
	fs, stderr, code := replayBin(t, "--state", state, nextPath)
	if code != 0 {
		t.Fatalf("replay: exit %d: %s", code, stderr)
	}
	if missed, unexplained := labelCheck(t, labels, fs); missed != 0 || unexplained != 0 {
		t.Errorf("after baseline from S3: %d of %d anomalies missed, %d unexplained findings; want 0 and 0", missed, len(labels), unexplained)
	}
	// Without the S3 half the CloudTrail principals are new: the same
	// replay misses what needs their history.
	code, _, errs = runCmd(t, "baseline", "--since", "30d", "--state", filepath.Join(work, "vault-only"), vaultPath)
	if code != 0 {
		t.Fatalf("baseline of the Vault half: exit %d: %s", code, errs)
	}
	fs, stderr, code = replayBin(t, "--state", filepath.Join(work, "vault-only"), nextPath)
	if code != 0 {
		t.Fatalf("replay: exit %d: %s", code, stderr)
	}
	if missed, unexplained := labelCheck(t, labels, fs); missed == 0 && unexplained == 0 {
		t.Error("without the S3 archive the replay is as good: the test does not show the archive was learned")
	}
}
