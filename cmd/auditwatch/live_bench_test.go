package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"auditwatch/alert/slack/slacktest"
	"auditwatch/alert/syslog/syslogtest"
)

// BenchmarkAppendToOutput measures append→output latency of `auditwatch
// run` with deploy/run.example.yaml as shipped (paths changed only) plus
// a Slack output (bot mode, local Slack Web API) and a syslog output (a
// real rsyslogd): a generated Vault log's learning period is learned with
// `auditwatch baseline`, then the rest, with its labelled anomalies, is
// appended to the tailed audit file at 1,000 and 10,000 events/s (a
// Vault event is a request and a response line). For every finding
// revision: the time from the append of its latest evidence event to its
// first appearance in the findings file, in Slack and in rsyslog's file
// (polled every 10 ms). Slack's shipped rate limit (about one post a
// second per channel, bursts of 10) holds posts beyond it, so Slack is
// also reported for the first post of each incident.
//
//	go test -run '^$' -bench BenchmarkAppendToOutput -benchtime 1x ./cmd/auditwatch
//
// Each rate appends for 60 s (1,000 events/s) or 15 s (10,000 events/s,
// about 430 MB of audit log); AUDITWATCH_BENCH_APPEND_SECONDS sets one
// duration for both.
func BenchmarkAppendToOutput(b *testing.B) {
	override := 0
	if v := os.Getenv("AUDITWATCH_BENCH_APPEND_SECONDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			b.Fatalf("AUDITWATCH_BENCH_APPEND_SECONDS=%q", v)
		}
		override = n
	}
	bin := buildBinary(b)
	for _, rate := range []int{1000, 10000} {
		seconds := map[int]int{1000: 60, 10000: 15}[rate]
		if override > 0 {
			seconds = override
		}
		b.Run(fmt.Sprintf("events_per_s=%d", rate), func(b *testing.B) {
			for range b.N {
				benchAppendToOutput(b, bin, rate, seconds)
			}
		})
	}
}

func benchAppendToOutput(b *testing.B, bin string, rate, seconds int) {
	work := b.TempDir()
	// The learning period is a fifth of the log: the rest is `seconds`
	// of appends; about one anomaly per 3 s of appends (each raises one
	// to a few finding revisions), so findings stay near Slack's one post
	// a second per channel.
	events := rate * seconds * 5 / 4
	anomalies := max(seconds/3, 2)
	in := loadLiveInput(b, work, true, []string{"--events", strconv.Itoa(events), "--anomaly-count", strconv.Itoa(anomalies)}, 0)
	rs := syslogtest.Start(b)
	// Comparison only: AUDITWATCH_BENCH_SLACK_BATCH=1 posts every update
	// on its own (the shipped max_batch is 10).
	slackExtra := ""
	if v := os.Getenv("AUDITWATCH_BENCH_SLACK_BATCH"); v != "" {
		slackExtra = ", max_batch: " + v
	}
	const token = "xoxb-bench"
	srv := slacktest.New(token)
	defer srv.Close()
	b.Setenv("AW_BENCH_SLACK_TOKEN", token)
	outputs := fmt.Sprintf(`alerts:
  outputs:
    - name: slack
      type: slack
      slack: {mode: bot, token: {env: AW_BENCH_SLACK_TOKEN}, channel: %s, api_url: %q%s}
    - name: siem
      type: syslog
      syslog: {address: %q}
  default_outputs: [slack, siem]
`, slacktest.ChannelID, srv.APIURL(), slackExtra, rs.TCPAddr)
	cfgPath, metrics := writeExampleConfig(b, work, outputs)
	if os.Getenv("AUDITWATCH_BENCH_NO_STORAGE") != "" {
		// Diagnosis only: the same run without the embedded store, to see
		// what storing every event costs.
		raw, err := os.ReadFile(cfgPath)
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(cfgPath, bytes.Replace(raw, []byte("backend: chdb"), []byte("backend: off"), 1), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	if v := os.Getenv("AUDITWATCH_BENCH_CHECKPOINT"); v != "" {
		// Comparison only: the same run with another detect checkpoint
		// interval (the stored block per checkpoint; docs/PERFORMANCE.md).
		raw, err := os.ReadFile(cfgPath)
		if err != nil {
			b.Fatal(err)
		}
		out := bytes.Replace(raw, []byte("checkpoint_interval: 3s"), []byte("checkpoint_interval: "+v), 1)
		if bytes.Equal(out, raw) {
			b.Fatal("AUDITWATCH_BENCH_CHECKPOINT: the config has no checkpoint_interval: 3s to replace")
		}
		if err := os.WriteFile(cfgPath, out, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	if v := os.Getenv("AUDITWATCH_BENCH_STORE_INTERVAL"); v != "" {
		// Comparison only: the same run with another
		// storage.batch.max_interval (how long the writer gathers events
		// into one block; docs/PERFORMANCE.md).
		raw, err := os.ReadFile(cfgPath)
		if err != nil {
			b.Fatal(err)
		}
		out := bytes.Replace(raw, []byte("  backend: chdb\n"), []byte("  backend: chdb\n  batch: {max_interval: "+v+"}\n"), 1)
		if bytes.Equal(out, raw) {
			b.Fatal("AUDITWATCH_BENCH_STORE_INTERVAL: the config has no chdb storage to set it on")
		}
		if err := os.WriteFile(cfgPath, out, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	m := startLiveMonitor(b, bin, work, cfgPath, metrics, in.history)
	// Wait until the monitor is up (its metrics listener answers).
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get("http://" + metrics + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("auditwatch run not ready after 60s:\n%s", m.stderr.String())
		}
	}
	var arr arrivals
	stopPoll := make(chan struct{})
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		pollOutputs(b, &arr, m.findings, srv, rs.Out, stopPoll)
	}()
	app := newAppender()
	b.ResetTimer()
	start := time.Now()
	cpu0 := procCPU(b, m.cmd.Process.Pid)
	n := app.run(b, m.audit, in.rest, 2*rate, nil)
	took := time.Since(start)
	// Until the detect stage has taken every appended event (a Vault
	// event is two lines): on a loaded machine it may lag the appends.
	var taken float64
	for deadline := time.Now().Add(10 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		if resp, err := http.Get("http://" + metrics + "/metrics"); err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if mm := metricLine("auditwatch_detect_stage_events_total").FindSubmatch(body); mm != nil {
				taken, _ = strconv.ParseFloat(string(mm[1]), 64)
			}
		}
		if taken >= float64(n/2)*0.99 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("the detect stage took %.0f of %d events in 10 minutes", taken, n/2)
		}
	}
	processed := time.Since(start)
	time.Sleep(time.Second) // the last events' findings reach the file
	// Drain: every finding revision of the file in Slack and syslog.
	for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		fs, _ := findingsByKey(b, m.findings)
		posted, logged := slackPostKeys(srv), syslogKeys(b, rs.Out)
		all := len(fs) > 0
		for k := range fs {
			all = all && posted[k] > 0 && logged[k] > 0
		}
		if all {
			break
		}
	}
	close(stopPoll)
	<-polled
	// What storing cost the detect stage and how the store kept up.
	var storeLine string
	if resp, err := http.Get("http://" + metrics + "/metrics"); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		val := func(name string) float64 {
			if mm := metricLine(name).FindSubmatch(body); mm != nil {
				v, _ := strconv.ParseFloat(string(mm[1]), 64)
				return v
			}
			return -1
		}
		wait := val("auditwatch_detect_stage_store_wait_seconds_total")
		blocks, secs := val("auditwatch_store_insert_seconds_count"), val("auditwatch_store_insert_seconds_sum")
		rows := val(`auditwatch_store_rows_inserted_total{table="events"}`)
		storeLine = fmt.Sprintf("detect stage waited %.3f s on the store queue; store wrote %.0f event blocks (%.0f rows each, %.0f ms each)",
			wait, blocks, rows/max(blocks, 1), 1000*secs/max(blocks, 1))
		b.ReportMetric(wait, "detect_store_wait_s")
	}
	cpu := procCPU(b, m.cmd.Process.Pid) - cpu0
	wall := time.Since(start)
	b.StopTimer()
	m.stop(b)
	fs, _ := findingsByKey(b, m.findings)
	lat := map[string][]time.Duration{}
	firstOfIncident := map[string]time.Time{} // dedupe key -> earliest Slack arrival
	incidentAppend := map[string]time.Time{}
	for k, f := range fs {
		at := app.appendedAt(f)
		if at.IsZero() {
			continue
		}
		for _, out := range []string{"file", "slack", "syslog"} {
			if got, ok := arr.at(out, k); ok {
				lat[out] = append(lat[out], max(got.Sub(at), 0))
			} else {
				b.Errorf("finding %s never reached %s", k, out)
			}
		}
		// The router's group: the correlated incident, else the dedupe key.
		group := f.DedupeKey
		if f.IncidentID != "" {
			group = "incident:" + f.IncidentID
		}
		if got, ok := arr.at("slack", k); ok {
			if cur, seen := firstOfIncident[group]; !seen || got.Before(cur) {
				firstOfIncident[group], incidentAppend[group] = got, at
			}
		}
	}
	for key, got := range firstOfIncident {
		lat["slack_first"] = append(lat["slack_first"], max(got.Sub(incidentAppend[key]), 0))
	}
	// The appender's own rate, from its first write to its last: the
	// figures below hold only for the asked rate.
	got := app.rate() / 2
	b.Logf("%d events/s asked: %d lines appended at %.0f events/s (%s including set-up), all taken by detection after %s, %d finding revisions, %d incidents",
		rate, n, got, took.Round(time.Millisecond), processed.Round(time.Millisecond), len(fs), len(firstOfIncident))
	b.ReportMetric(got, "appended_events/s")
	if got < 0.95*float64(rate) || n < len(in.rest) {
		b.Errorf("the appender fell short: %d of %d lines at %.0f events/s, asked %d events/s (more than 5%% short: the latencies below are not at the asked rate)",
			n, len(in.rest), got, rate)
	}
	// What the run process cost: CPU time per event, and the share of a
	// core the asked rate needs; on a shared machine latency follows
	// whether that CPU was there, this does not.
	perS := float64(n) / 2 / cpu.Seconds()
	b.Logf("  auditwatch run: %.1f CPU-s over %s wall: %.0f events per CPU-second; %d events/s needs %.2f cores",
		cpu.Seconds(), wall.Round(time.Millisecond), perS, rate, float64(rate)/perS)
	b.ReportMetric(perS, "events/cpu-s")
	if storeLine != "" {
		b.Logf("  %s", storeLine)
	}
	for _, out := range []string{"file", "syslog", "slack", "slack_first"} {
		d := lat[out]
		slices.Sort(d)
		if len(d) == 0 {
			b.Errorf("no latency samples for %s", out)
			continue
		}
		p50, p99 := pct(d, 0.50), pct(d, 0.99)
		b.Logf("  append→%-11s p50 %6.0f ms  p99 %6.0f ms  max %6.0f ms  (%d)", out, ms(p50), ms(p99), ms(d[len(d)-1]), len(d))
		b.ReportMetric(ms(p50), out+"_p50_ms")
		b.ReportMetric(ms(p99), out+"_p99_ms")
	}
}

func pct(sorted []time.Duration, q float64) time.Duration {
	i := int(float64(len(sorted))*q+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// procCPU is the user+system CPU time process pid has used
// (/proc/<pid>/stat, clock ticks of 1/100 s).
func procCPU(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}
