package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"auditwatch/alert/slack/slacktest"
	"auditwatch/alert/syslog/syslogtest"
	"auditwatch/schema"
)

// TestDeliverySlackHangAndSIGKILL runs `auditwatch run` with a Slack
// output (bot mode, against a local Slack Web API) and a syslog output (a
// real rsyslogd) while a generated stream with anomalies is appended. The
// Slack API hangs — accepts connections and never answers, sometimes
// after having accepted the message — for AUDITWATCH_FAULT_SLACK_HANG
// (default 20s from the start; the figure is 2m) while findings flow, and the
// process is SIGKILLed AUDITWATCH_FAULT_KILLS times (default 8) at random
// points during and after the hang. Checked:
//   - during the hang, syslog receives every finding the findings file had
//     a few seconds before (a hung output delays only itself);
//   - at the end, every finding revision of an uninterrupted replay is in
//     syslog (0 lost) and posted to Slack exactly once (0 lost, 0
//     duplicates), found by the message metadata Slack stores.
//
// The run's secrets, the Slack bot token among them, appear nowhere
// (faultRun.GrepSecrets).
//
// The Slack output's attempt timeout is config-driven (2s here) so that
// the hang costs wall time only once.
func TestDeliverySlackHangAndSIGKILL(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("fault test builds and kills the binary; not run with -short")
	}
	hang := 20 * time.Second
	if v := os.Getenv("AUDITWATCH_FAULT_SLACK_HANG"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("AUDITWATCH_FAULT_SLACK_HANG: %v", err)
		}
		hang = d
	}
	kills := 8
	if v := os.Getenv("AUDITWATCH_FAULT_KILLS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("AUDITWATCH_FAULT_KILLS: %v", err)
		}
		kills = n
	}
	rs := syslogtest.Start(t)
	const token = "xoxb-fault-test"
	srv := slacktest.New(token)
	defer srv.Close()
	var hanging atomic.Bool
	var hmu sync.Mutex
	release := make(chan struct{})
	firstPost := true
	srv.Hang = func(method string) (<-chan struct{}, bool) {
		if !hanging.Load() {
			return nil, false
		}
		hmu.Lock()
		defer hmu.Unlock()
		// The first post of the hang is accepted before its answer is
		// lost (the ambiguous case); later ones are accepted or not at
		// random.
		accept := rand.IntN(2) == 0
		if method == "chat.postMessage" && firstPost {
			firstPost, accept = false, true
		}
		return release, accept
	}
	f := newFaultRun(t, faultStream{Seed: 23, Events: 12000, Machines: 20, Humans: 8, Duration: "5h"})
	if f.LearnUntil == "" {
		t.Fatal("generate names no learning end")
	}
	f.SecretEnv("AW_FAULT_SLACK_TOKEN", token)
	// The smoke run's Slack output gives up an attempt after 2 s and
	// posts without a rate limit, so the hang costs wall time once;
	// AUDITWATCH_FAULT_SHIPPED=1 (make fault) keeps the shipped retry
	// policy (15 s attempt timeout) and rate limit instead.
	slackTuning := "\n      retry: {attempt_timeout: 2s}"
	slackRate := ", min_interval: 10ms"
	shipped := os.Getenv("AUDITWATCH_FAULT_SHIPPED") != ""
	if shipped {
		slackTuning, slackRate = "", ""
	}
	f.WriteConfig(faultConfig{
		State: "checkpoint_interval: 150ms, checkpoint_events: 2000",
		Outputs: fmt.Sprintf(`    - name: slack
      type: slack%s
      slack: {mode: bot, token: {env: AW_FAULT_SLACK_TOKEN}, channel: %s, api_url: %q%s}
    - name: siem
      type: syslog
      syslog: {address: %q}
`, slackTuning, slacktest.ChannelID, srv.APIURL(), slackRate, rs.TCPAddr),
		DefaultOutputs: []string{"slack", "siem"},
		Extra:          "detectors:\n  learn_until: " + f.LearnUntil,
	})
	findings, httpAddr := f.Findings, f.HTTPAddr
	want := f.Replay()
	if len(want) < 10 {
		t.Fatalf("replay raised only %d findings", len(want))
	}
	key := func(id string, rev int) string { return id + "/" + strconv.Itoa(rev) }
	wantKeys := map[string]bool{}
	for _, f := range want {
		wantKeys[key(f.ID, f.Revision)] = true
	}

	// The hang starts with the process; the stream is appended in 50 ms
	// steps over the hang but its last 10 s (at least 12 s).
	hanging.Store(true)
	hangStart := time.Now()
	hangEnd := hangStart.Add(hang)
	appended := f.Append(max(240, int((hang-10*time.Second)/(50*time.Millisecond))))
	// When each finding revision shows in the findings file and in
	// syslog, during the hang: syslog's delay behind the file.
	var arr arrivals
	stopPoll := make(chan struct{})
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		pollOutputs(t, &arr, findings, nil, rs.Out, stopPoll)
	}()
	f.Start()
	killed := 0
	// SIGKILLs during the hang, at random points, leaving its last 6 s
	// for the syslog check.
	killed += f.KillRandomly(kills/2, 300*time.Millisecond, 1500*time.Millisecond,
		func() bool { return time.Until(hangEnd) > 8*time.Second })
	// Findings must flow during the hang: on a loaded machine the
	// restarts may need longer than the hang, which is then extended.
	for len(readFindings(t, findings)) == 0 && time.Now().Before(hangEnd.Add(90*time.Second)) {
		time.Sleep(200 * time.Millisecond)
	}
	if time.Until(hangEnd) < 6*time.Second {
		hangEnd = time.Now().Add(6 * time.Second)
	}
	time.Sleep(time.Until(hangEnd.Add(-5 * time.Second)))
	seenBefore := findingKeys(readFindings(t, findings))
	time.Sleep(time.Until(hangEnd))
	close(stopPoll)
	<-polled
	var delays []time.Duration
	for k := range seenBefore {
		fa, okF := arr.at("file", k)
		sa, okS := arr.at("syslog", k)
		if okF && okS {
			delays = append(delays, max(sa.Sub(fa), 0))
		}
	}
	if len(delays) > 0 {
		slices.Sort(delays)
		over := len(delays) - sort.Search(len(delays), func(i int) bool { return delays[i] > time.Second })
		t.Logf("syslog delay behind the findings file during the Slack hang (%d findings, polled every 10 ms; a finding raised just before a SIGKILL reaches syslog after the restart): p50 %v, p90 %v, p99 %v, max %v; %d over 1 s",
			len(delays), pct(delays, 0.5).Round(time.Millisecond), pct(delays, 0.9).Round(time.Millisecond), pct(delays, 0.99).Round(time.Millisecond),
			delays[len(delays)-1].Round(time.Millisecond), over)
	}
	got := syslogKeys(t, rs.Out)
	missing := 0
	for k := range seenBefore {
		if got[k] == 0 {
			missing++
		}
	}
	t.Logf("during the Slack hang: %d findings in the file 5 s before its end, %d of them not yet in syslog; slack posts %d",
		len(seenBefore), missing, len(srv.Posts()))
	if len(seenBefore) == 0 {
		t.Error("no findings were raised during the Slack hang: the hang held detection")
	}
	if missing > 0 {
		t.Errorf("syslog lacked %d of %d findings during the Slack hang: a hung output delayed another", missing, len(seenBefore))
	}
	// The backlog is visible: /readyz detail and the outbox metrics.
	ready := httpGet(t, "http://"+httpAddr+"/readyz")
	metrics := f.Scrape()
	slackLine := regexp.MustCompile(`alert output slack: (\w+), backlog (\d+)`).FindStringSubmatch(ready)
	if slackLine == nil || slackLine[2] == "0" || !strings.Contains(ready, "alert output siem: ") {
		t.Errorf("/readyz during the Slack hang does not show its backlog:\n%s", ready)
	}
	if !regexp.MustCompile(`auditwatch_alert_outbox_backlog\{output="slack"\} [1-9]`).MatchString(metrics) {
		t.Errorf("/metrics during the Slack hang lacks the Slack backlog")
	}
	t.Logf("/readyz during the hang:\n%s", ready)
	hmu.Lock()
	hanging.Store(false)
	close(release)
	hmu.Unlock()
	hang = time.Since(hangStart).Round(time.Second)
	killed += f.KillRandomly(kills-killed, 300*time.Millisecond, 1500*time.Millisecond, nil)
	<-appended
	slackKeys := func() map[string]int {
		out := map[string]int{}
		for _, m := range srv.Posts() {
			for _, r := range m.Revisions() {
				id, rev, _ := strings.Cut(r, "/")
				n, _ := strconv.Atoi(rev)
				out[key(id, n)]++
			}
		}
		return out
	}
	// The shipped rate limit posts about one a second after a burst of 10.
	deadline := time.Now().Add(240 * time.Second)
	for time.Now().Before(deadline) {
		if len(slackKeys()) >= len(wantKeys) && len(syslogKeys(t, rs.Out)) >= len(wantKeys) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	time.Sleep(3 * time.Second) // anything extra would show now
	var posts strings.Builder
	for _, m := range srv.Posts() {
		fmt.Fprintf(&posts, "%s %s %s\n", m.Text, m.Blocks, m.Metadata)
	}
	syslogOut, _ := os.ReadFile(rs.Out)
	f.Stop(map[string]string{"Slack posts": posts.String(), "syslog": string(syslogOut)})

	posted, logged := slackKeys(), syslogKeys(t, rs.Out)
	dups := 0
	for k, n := range posted {
		if n > 1 {
			dups++
			t.Errorf("finding %s posted to Slack %d times", k, n)
			// where: each message carrying it, and what the processes logged of it
			id, _, _ := strings.Cut(k, "/")
			for _, m := range srv.Posts() {
				if slices.Contains(m.Revisions(), k) {
					t.Logf("  message ts %s thread %q revisions %v", m.TS, m.ThreadTS, m.Revisions())
				}
			}
			for i, p := range f.procs {
				for _, line := range strings.Split(p.stderr.String(), "\n") {
					if strings.Contains(line, id) || strings.Contains(line, "slack") && strings.Contains(line, "WARN") {
						t.Logf("  process %d: %s", i+1, line)
					}
				}
			}
		}
		if !wantKeys[k] {
			t.Errorf("Slack post of %s, which the uninterrupted replay did not raise", k)
		}
	}
	lostSlack, lostSyslog := 0, 0
	for k := range wantKeys {
		if posted[k] == 0 {
			lostSlack++
			t.Errorf("finding %s never posted to Slack", k)
		}
		if logged[k] == 0 {
			lostSyslog++
			t.Errorf("finding %s never reached syslog", k)
		}
	}
	t.Logf("shipped Slack retry policy and rate limit: %v", shipped)
	t.Logf("%d SIGKILLs, Slack hung %s: %d finding revisions; Slack %d posts (%d duplicate, %d lost); syslog %d distinct (%d lost); %d Slack requests",
		killed, hang, len(wantKeys), len(srv.Posts()), dups, lostSlack, len(logged), lostSyslog, srv.Requests())
}

func findingKeys(fs []schema.Finding) map[string]bool {
	out := map[string]bool{}
	for _, f := range fs {
		out[f.ID+"/"+strconv.Itoa(f.Revision)] = true
	}
	return out
}

var (
	cefID  = regexp.MustCompile(`externalId=(\S+)`)
	cefRev = regexp.MustCompile(`cn1=(\d+)`)
)

// syslogKeys counts the finding revisions in rsyslog's output file (CEF
// bodies: externalId and cn1 = revision).
func syslogKeys(t testing.TB, path string) map[string]int {
	t.Helper()
	out := map[string]int{}
	b, err := os.ReadFile(path)
	if err != nil {
		if os.IsNotExist(err) {
			return out
		}
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec struct {
			Msg string `json:"msg"`
		}
		if json.Unmarshal(sc.Bytes(), &rec) != nil {
			continue
		}
		id, rev := cefID.FindStringSubmatch(rec.Msg), cefRev.FindStringSubmatch(rec.Msg)
		if id != nil && rev != nil {
			out[id[1]+"/"+rev[1]]++
		}
	}
	return out
}

// httpGet returns the body of url, retrying for a few seconds while the
// (restarted) process comes up.
func httpGet(t *testing.T, url string) string {
	t.Helper()
	var last error
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get(url)
		if err != nil {
			last = err
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return string(b)
		}
		last = fmt.Errorf("%s: %s", resp.Status, b)
	}
	t.Errorf("GET %s: %v", url, last)
	return ""
}
