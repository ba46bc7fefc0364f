package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"auditwatch/alert/slack/slacktest"
	"auditwatch/detect"
	"auditwatch/gen"
	"auditwatch/ingest"
	"auditwatch/internal/kafkatest"
	"auditwatch/internal/testenv"
	"auditwatch/schema"
	"auditwatch/store/chtest"
)

const slackToken = "xoxb-e2e-test-token"

// TestPipelineEndToEnd runs the Kafka deployment as separate processes on
// generated traffic with 20 labelled anomalies and checks what reached
// each destination:
//
//   - every labelled anomaly raised a finding of its detector (or one it
//     also matches), and every finding is explained by a label;
//   - Slack: one top-level message per incident (dedupe key), every other
//     finding of the incident a reply in that thread, no finding posted
//     twice;
//   - SIEM: at least one CEF record per finding in rsyslog's file, no
//     finding id delivered twice;
//   - ClickHouse: the runbook queries (`auditwatch query`) answer from the
//     stored events exactly what the generated logs hold.
func TestPipelineEndToEnd(t *testing.T) {
	if _, err := chtest.ServerBinary(); err != nil {
		testenv.Missing(t, "clickhouse-server (scripts/setup/20-clickhouse.sh installs it): %v", err)
	}
	root := testenv.RepoRoot(t)
	bin := buildBinary(t, root)
	work := t.TempDir()

	// The traffic: 12,000 client requests over 6 h of event time, mixed
	// CloudTrail and Vault/OpenBao, 20 labelled anomalies after the
	// learning period.
	genOut := filepath.Join(work, "generated.log")
	labelsPath := filepath.Join(work, "labels.jsonl")
	f, err := os.Create(genOut)
	if err != nil {
		t.Fatal(err)
	}
	var genErr bytes.Buffer
	// With secret rollouts: the ingest stage publishes each rollout write
	// to every partition as a note, so the readers' engines (keyed by
	// their own principals) judge their first reads against it.
	cmd := exec.Command(bin, "generate", "--format", "mixed", "--seed", "5", "--events", "12000", "--machines", "24",
		"--humans", "10", "--duration", "6h", "--out", "-", "--labels", labelsPath)
	cmd.Stdout, cmd.Stderr = f, &genErr
	if err := cmd.Run(); err != nil {
		t.Fatalf("generate: %v\n%s", err, genErr.String())
	}
	f.Close()
	m := regexp.MustCompile(`learning period ends (\S+)`).FindStringSubmatch(genErr.String())
	if m == nil {
		t.Fatalf("generate names no learning end: %s", genErr.String())
	}
	learnUntil := m[1]
	labels := readLabels(t, labelsPath)
	if len(labels) != 20 {
		t.Fatalf("%d labels, want 20", len(labels))
	}
	truth := readEvents(t, genOut)

	// The peers.
	brokers := kafkatest.NewCluster(t, 3, "events", "events-by-ip", "findings")
	sl := slacktest.New(slackToken)
	t.Cleanup(sl.Close)
	rs := startRsyslog(t)
	ch := chtest.StartServer(t)

	drop := filepath.Join(work, "drop")
	if err := os.MkdirAll(drop, 0o755); err != nil {
		t.Fatal(err)
	}
	findingsPath := filepath.Join(work, "findings.jsonl")
	kafka := fmt.Sprintf(`stream:
  type: kafka
  kafka:
    brokers: [%q]
    events_topic: events
    events_by_ip_topic: events-by-ip
    findings_topic: findings
    batch_timeout: 5ms
    commit_interval: 200ms
`, brokers[0])
	storage := fmt.Sprintf(`storage:
  backend: clickhouse
  database: e2e
  clickhouse: {addr: [%q]}
  batch: {max_interval: 200ms}
`, ch.Addr)
	common := "logging: {level: info, format: text}\nshutdown_timeout: 20s\n"
	addrs := map[string]string{"ingest": freeAddr(t), "detect": freeAddr(t), "alert": freeAddr(t)}
	configs := map[string]string{
		"ingest": fmt.Sprintf(`sources:
  - name: generated
    type: dir
    format: auto
    dir: {path: %q, poll_interval: 200ms, settle_time: 100ms}
%sstate: {dir: %q, checkpoint_interval: 200ms}
http: {listen: %q}
%s`, drop, kafka, filepath.Join(work, "state-ingest"), addrs["ingest"], common),
		"detect": fmt.Sprintf(`%sstate: {dir: %q, checkpoint_interval: 200ms, idle_drain: 1s}
detectors:
  learn_until: %s
%shttp: {listen: %q}
%s`, kafka, filepath.Join(work, "state-detect"), learnUntil, storage, addrs["detect"], common),
		"alert": fmt.Sprintf(`%sstate: {dir: %q, checkpoint_interval: 200ms}
alerts:
  outputs:
    - name: security-slack
      type: slack
      slack:
        channel: "#security-alerts"
        token: {env: AUDITWATCH_E2E_SLACK_TOKEN}
        api_url: %q
        min_interval: 5ms
    - name: siem
      type: syslog
      syslog: {address: %q, format: cef, hostname: e2e}
  default_outputs: [security-slack, siem]
%sfiles: {findings: %q}
http: {listen: %q}
%s`, kafka, filepath.Join(work, "state-alert"), sl.APIURL(), rs.addr, storage, findingsPath, addrs["alert"], common),
	}
	procs := map[string]*proc{}
	// detect first and then alert, each ready (storage migrated) before the
	// next starts; ingest last.
	for _, name := range []string{"detect", "alert", "ingest"} {
		path := filepath.Join(work, name+".yaml")
		if err := os.WriteFile(path, []byte(configs[name]), 0o644); err != nil {
			t.Fatal(err)
		}
		procs[name] = startProc(t, name, bin, []string{"AUDITWATCH_E2E_SLACK_TOKEN=" + slackToken}, name, "--config", path)
		procs[name].waitReady(t, addrs[name])
	}
	dumpLogs := func() {
		for _, name := range []string{"ingest", "detect", "alert"} {
			t.Logf("--- %s log:\n%s", name, procs[name].log)
		}
	}
	// Drop the logs in atomically.
	if err := os.Rename(genOut, filepath.Join(drop, "generated.log")); err != nil {
		t.Fatal(err)
	}

	// Wait until every label is found, every finding is in Slack and in
	// rsyslog's file, and nothing has changed for 3 s.
	deadline := time.Now().Add(300 * time.Second) // a guard only: the machine may be shared
	var fs []schema.Finding
	lastN, changed := -1, time.Now()
	for {
		for name, p := range procs {
			if err, ok := p.exited(); ok {
				dumpLogs()
				t.Fatalf("%s exited early: %v", name, err)
			}
		}
		fs = readFindings(t, findingsPath)
		posts := len(slackPosts(sl))
		siem := len(rs.records(t))
		if n := len(fs)*1_000_000 + posts*1000 + siem; n != lastN {
			lastN, changed = n, time.Now()
		}
		if len(fs) > 0 && allFound(labels, fs) && posts >= len(fs) && siem >= len(fs) && time.Since(changed) > 3*time.Second {
			break
		}
		if time.Now().After(deadline) {
			for name, p := range procs {
				t.Logf("--- %s metrics:\n%s", name, scrapeDetectMetrics(addrs[name]))
				p.dumpStacks() // a stalled stage's goroutines, into its log
			}
			dumpLogs()
			checkLabels(t, labels, fs) // names the labels not found
			t.Fatalf("after 300s: %d findings (every label found: %v), %d Slack posts, %d SIEM records", len(fs), allFound(labels, fs), posts, siem)
		}
		time.Sleep(200 * time.Millisecond)
	}
	checkStreams(t, addrs)
	for _, name := range []string{"ingest", "detect", "alert"} {
		procs[name].stop(t)
	}
	if t.Failed() {
		dumpLogs()
		t.FailNow()
	}
	fs = readFindings(t, findingsPath)
	t.Logf("%d findings for %d labels", len(fs), len(labels))

	byID := map[string]schema.Finding{}
	for _, f := range fs {
		if _, dup := byID[f.ID]; dup {
			t.Errorf("finding %s written twice to the findings file", f.ID)
		}
		byID[f.ID] = f
	}
	checkLabels(t, labels, fs)
	checkSlack(t, sl, byID, labels)
	checkSIEM(t, rs.records(t), byID)
	checkQueries(t, bin, ch.Addr, labels, truth, fs)
}

// explains reports whether finding f is label l's anomaly: f's detector is
// the label's (or one it also matches) and its evidence includes one of
// the label's events.
func explains(l gen.Label, f schema.Finding) bool {
	if f.Detector != l.Detector && !slices.Contains(l.AlsoMatches, f.Detector) {
		return false
	}
	for _, id := range f.EventIDs {
		if slices.Contains(l.EventIDs, id) {
			return true
		}
	}
	return false
}

func allFound(labels []gen.Label, fs []schema.Finding) bool {
	for _, l := range labels {
		if !slices.ContainsFunc(fs, func(f schema.Finding) bool { return explains(l, f) }) {
			return false
		}
	}
	return true
}

func checkLabels(t *testing.T, labels []gen.Label, fs []schema.Finding) {
	t.Helper()
	for _, l := range labels {
		if !slices.ContainsFunc(fs, func(f schema.Finding) bool { return explains(l, f) }) {
			t.Errorf("label %s (%s %s, %s): no finding", l.ID, l.Source, l.Kind, l.Detector)
		}
	}
	// A finding resolved by a later revision (a first read its secret's
	// rollout write explains) does not alert.
	for _, f := range detect.Unresolved(fs) {
		if !slices.ContainsFunc(labels, func(l gen.Label) bool { return explains(l, f) }) {
			t.Errorf("finding on normal traffic: %s %s %q %s: %s", f.ID, f.Detector, f.Principal, f.SourceIP, f.Summary)
		}
	}
}

var slackFindingRE = regexp.MustCompile("finding `([0-9a-f]+)` rev ([0-9]+)")

type slackPost struct {
	slacktest.Message
	id  string
	rev int
}

// slackPosts are the accepted chat.postMessage calls with the finding each
// one carries (parent edits by chat.update are not posts).
func slackPosts(sl *slacktest.Server) []slackPost {
	var out []slackPost
	for _, m := range sl.Messages() {
		if m.Method != "chat.postMessage" {
			continue
		}
		if revs := m.Revisions(); len(revs) > 1 {
			// several queued updates of one incident in one post
			for _, r := range revs {
				id, rev, _ := strings.Cut(r, "/")
				n, _ := strconv.Atoi(rev)
				out = append(out, slackPost{Message: m, id: id, rev: n})
			}
			continue
		}
		p := slackPost{Message: m}
		if sm := slackFindingRE.FindStringSubmatch(m.Blocks); sm != nil {
			p.id = sm[1]
			p.rev, _ = strconv.Atoi(sm[2])
		}
		out = append(out, p)
	}
	return out
}

// threadKey is the incident a finding's Slack thread belongs to: its
// incident id (the correlation stage joins the findings of one attack),
// else its dedupe key, as the alert router threads.
func threadKey(f schema.Finding) string {
	if f.IncidentID != "" {
		return f.IncidentID
	}
	return f.DedupeKey
}

func checkSlack(t *testing.T, sl *slacktest.Server, byID map[string]schema.Finding, labels []gen.Label) {
	t.Helper()
	posts := slackPosts(sl)
	parents := map[string]string{} // incident -> thread ts
	posted := map[string]int{}
	for _, p := range posts {
		if p.Channel != "#security-alerts" {
			t.Errorf("Slack post to channel %q", p.Channel)
		}
		f, ok := byID[p.id]
		if !ok {
			t.Errorf("Slack post for no known finding (id %q): %s", p.id, p.Text)
			continue
		}
		posted[p.id]++
		if p.ThreadTS != "" {
			continue
		}
		if ts, dup := parents[threadKey(f)]; dup && ts != p.TS {
			t.Errorf("incident %s has a second top-level Slack message (%s, first %s): %s", threadKey(f), p.TS, ts, p.Text)
			continue
		}
		parents[threadKey(f)] = p.TS
	}
	for _, p := range posts {
		f, ok := byID[p.id]
		if !ok || p.ThreadTS == "" {
			continue
		}
		if ts := parents[threadKey(f)]; p.ThreadTS != ts {
			t.Errorf("finding %s (rev %d) replied in thread %q, want its incident's thread %q", p.id, p.rev, p.ThreadTS, ts)
		}
	}
	for id, f := range byID {
		switch n := posted[id]; {
		case n == 0:
			t.Errorf("finding %s (%s, incident %s) never posted to Slack", id, f.Detector, threadKey(f))
		case n > 1:
			t.Errorf("finding %s posted to Slack %d times", id, n)
		}
		if _, ok := parents[threadKey(f)]; !ok {
			t.Errorf("incident %s has no top-level Slack message", threadKey(f))
		}
	}
	// Every labelled anomaly has its thread(s): one per incident it raised.
	threads := 0
	for _, l := range labels {
		keys := map[string]bool{}
		for _, f := range byID {
			if explains(l, f) {
				keys[threadKey(f)] = true
			}
		}
		if len(keys) == 0 {
			t.Errorf("label %s has no Slack thread", l.ID)
		}
		threads += len(keys)
	}
	replies := 0
	for _, p := range posts {
		if p.ThreadTS != "" {
			replies++
		}
	}
	t.Logf("Slack: %d posts, %d threads (one per incident), %d replies", len(posts), len(parents), replies)
}

var (
	cefIDRE  = regexp.MustCompile(`(?:^|\s)externalId=([0-9a-f]+)(?:\s|$)`)
	cefRevRE = regexp.MustCompile(`(?:^|\s)cn1=([0-9]+)(?:\s|$)`)
)

func checkSIEM(t *testing.T, msgs []string, byID map[string]schema.Finding) {
	t.Helper()
	seen := map[string]int{}
	for _, msg := range msgs {
		if !strings.HasPrefix(msg, "CEF:0|auditwatch|auditwatch|") {
			t.Errorf("SIEM record is not auditwatch CEF: %q", msg)
			continue
		}
		m := cefIDRE.FindStringSubmatch(msg)
		if m == nil {
			t.Errorf("CEF record without externalId: %q", msg)
			continue
		}
		f, ok := byID[m[1]]
		if !ok {
			t.Errorf("CEF record for no known finding %s", m[1])
			continue
		}
		if r := cefRevRE.FindStringSubmatch(msg); r == nil || r[1] != strconv.Itoa(f.Revision) {
			t.Errorf("CEF record of %s: revision %v, want %d", f.ID, r, f.Revision)
		}
		if !strings.Contains(msg, "|"+f.Detector+"|") {
			t.Errorf("CEF record of %s does not name detector %s: %q", f.ID, f.Detector, msg)
		}
		seen[m[1]]++
	}
	for id := range byID {
		switch n := seen[id]; {
		case n == 0:
			t.Errorf("finding %s has no SIEM record", id)
		case n > 1:
			t.Errorf("finding %s delivered to the SIEM %d times", id, n)
		}
	}
	t.Logf("SIEM: %d CEF records", len(msgs))
}

// truth is what the generated logs hold, read with the product's parser
// (independently of the pipeline under test).
type truth struct {
	start  time.Time
	events map[string]schema.Event // by id
}

func readEvents(t *testing.T, path string) truth {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := truth{events: map[string]schema.Event{}}
	r := ingest.NewReader(bufio.NewReaderSize(f, 1<<20), path, ingest.DefaultOptions())
	for {
		ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("generated log: %v", err)
		}
		if tr.start.IsZero() || ev.Time.Before(tr.start) {
			tr.start = ev.Time
		}
		tr.events[ev.ID] = ev
	}
	for _, ev := range r.Flush() {
		tr.events[ev.ID] = ev
	}
	if len(tr.events) == 0 {
		t.Fatal("generated log holds no events")
	}
	return tr
}

func readLabels(t *testing.T, path string) []gen.Label {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ls, err := gen.ReadLabels(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return ls
}

func readFindings(t *testing.T, path string) []schema.Finding {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		t.Fatal(err)
	}
	var fs []schema.Finding
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var f schema.Finding
		if err := json.Unmarshal(line, &f); err != nil {
			continue // the line being written
		}
		fs = append(fs, f)
	}
	return fs
}

// query runs `auditwatch query` against the server and decodes its JSON.
func query(t *testing.T, bin, addr string, args ...string) []map[string]any {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"query"}, append(args, "--backend", "clickhouse", "--addr", addr,
		"--database", "e2e", "--format", "json", "--limit", "100000")...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("auditwatch query %v: %v\n%s", args, err, errb.String())
	}
	var rows []map[string]any
	if err := json.Unmarshal(out.Bytes(), &rows); err != nil {
		t.Fatalf("auditwatch query %v: %v\n%s", args, err, out.String())
	}
	return rows
}

func num(v any) int {
	switch x := v.(type) {
	case float64:
		return int(x)
	case string:
		n, _ := strconv.Atoi(x)
		return n
	}
	return -1
}

func str(v any) string { s, _ := v.(string); return s }

// tally counts distinct events per group key.
type tally map[string]int

func (a tally) String() string {
	keys := make([]string, 0, len(a))
	for k := range a {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%d ", k, a[k])
	}
	return b.String()
}

func checkQueries(t *testing.T, bin, addr string, labels []gen.Label, tr truth, fs []schema.Finding) {
	t.Helper()
	since := tr.start.Add(-time.Minute).UTC().Format(time.RFC3339)
	compare := func(what string, got, want tally) {
		t.Helper()
		if len(want) == 0 {
			t.Errorf("%s: the generated logs hold nothing to compare", what)
			return
		}
		if got.String() != want.String() {
			t.Errorf("%s:\n got  %v\n want %v", what, got, want)
		}
	}
	ips, principals, resources := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, l := range labels {
		if l.SourceIP != "" {
			ips[l.SourceIP] = true
		}
		if l.Principal != "" {
			principals[l.Principal] = true
		}
		if l.Resource != "" {
			resources[l.Resource] = true
		}
	}
	// ip: every principal and resource seen from each anomaly's address.
	for ip := range ips {
		got, want := tally{}, tally{}
		for _, row := range query(t, bin, addr, "ip", "--ip", ip, "--since", since) {
			got[str(row["principal"])+" "+str(row["resource"])] += num(row["events"])
		}
		for _, ev := range tr.events {
			if ev.SourceIP == ip {
				want[ev.Principal+" "+ev.Resource]++
			}
		}
		compare("query ip --ip "+ip, got, want)
	}
	// principal: everything each anomaly's principal did.
	for p := range principals {
		got, want := tally{}, tally{}
		for _, row := range query(t, bin, addr, "principal", "--principal", p, "--since", since) {
			got[str(row["action"])+" "+str(row["resource"])] += num(row["events"])
			got["failures "+str(row["action"])+" "+str(row["resource"])] += num(row["failures"])
		}
		for _, ev := range tr.events {
			if ev.Principal == p {
				want[ev.Action+" "+ev.Resource]++
				k := "failures " + ev.Action + " " + ev.Resource
				want[k] += 0
				if ev.Failed() {
					want[k]++
				}
			}
		}
		compare("query principal --principal "+p, got, want)
	}
	// who-accessed: principals and addresses that touched each anomaly's
	// first resource.
	for res := range resources {
		got, want := tally{}, tally{}
		for _, row := range query(t, bin, addr, "who-accessed", "--resource", res, "--since", since) {
			got[str(row["principal"])+" "+str(row["source_ip"])] += num(row["events"])
		}
		for _, ev := range tr.events {
			if ev.Resource == res {
				want[ev.Principal+" "+ev.SourceIP]++
			}
		}
		compare("query who-accessed --resource "+res, got, want)
	}
	// failures: every failing principal and address.
	got, want := tally{}, tally{}
	for _, row := range query(t, bin, addr, "failures", "--since", since) {
		got[str(row["principal"])+" "+str(row["source_ip"])] += num(row["failures"])
	}
	for _, ev := range tr.events {
		if ev.Failed() {
			want[ev.Principal+" "+ev.SourceIP]++
		}
	}
	compare("query failures", got, want)
	// findings: the latest revision of each incident.
	keys := map[string]int{}
	for _, f := range fs {
		keys[f.DedupeKey] = max(keys[f.DedupeKey], f.Revision)
	}
	rows := query(t, bin, addr, "findings", "--since", since)
	gotKeys := map[string]int{}
	for _, row := range rows {
		gotKeys[str(row["dedupe_key"])] = num(row["revision"])
	}
	if fmt.Sprint(gotKeys) != fmt.Sprint(keys) {
		t.Errorf("query findings: incidents and latest revisions\n got  %v\n want %v", gotKeys, keys)
	}
	t.Logf("runbook queries checked: %d addresses, %d principals, %d resources, failures, %d incidents", len(ips), len(principals), len(resources), len(keys))
}

// checkStreams checks that every record a stage put on a topic was read
// by the stage after it: a partition reader that stopped receiving shows
// here by name, not as missing findings.
func checkStreams(t *testing.T, addrs map[string]string) {
	t.Helper()
	for _, c := range []struct{ topic, from, to string }{
		{"events", "ingest", "detect"},
		{"events-by-ip", "ingest", "detect"},
		{"findings", "detect", "alert"},
	} {
		produced := metricValue(t, addrs[c.from], `auditwatch_stream_produced_total{topic="`+c.topic+`"}`)
		consumed := metricValue(t, addrs[c.to], `auditwatch_stream_consumed_total{topic="`+c.topic+`"}`)
		if produced <= 0 || consumed < produced {
			t.Errorf("topic %s: %s produced %v records, %s read %v", c.topic, c.from, produced, c.to, consumed)
		}
		t.Logf("topic %s: %v produced, %v read, %v reader errors", c.topic, produced, consumed,
			metricValue(t, addrs[c.to], `auditwatch_stream_read_errors_total{topic="`+c.topic+`"}`))
	}
}

// metricValue is the value of one series of a stage's /metrics (0 when
// the series is absent).
func metricValue(t *testing.T, addr, series string) float64 {
	t.Helper()
	for _, l := range strings.Split(scrapeDetectMetrics(addr), "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("metric %s of %s: %v", series, addr, err)
			}
			return f
		}
	}
	return 0
}

// scrapeDetectMetrics returns the auditwatch_ lines of a stage's /metrics
// (progress counters for a failure report), or why it could not.
func scrapeDetectMetrics(addr string) string {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "auditwatch_") && !strings.Contains(l, "_bucket{") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
