package alert

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"auditwatch/alert/notify/notifytest"
	"auditwatch/alert/slack"
	"auditwatch/alert/slack/slacktest"
	"auditwatch/alert/syslog"
	"auditwatch/alert/syslog/syslogtest"
	"auditwatch/internal/secret"
	"auditwatch/schema"
)

// BenchmarkSyslogDelayDuringSlackHang measures how long a finding takes
// from the router's WriteFindings to a real rsyslogd's output file, with
// the shipped alert defaults (on-disk outbox, default retry policy) and a
// Slack output (bot mode) beside it, once while the Slack API answers
// (healthy: the baseline) and once while it hangs (accepts connections,
// never answers). Findings are written one every 10 ms. Reports p50 and
// p99 of the delay; run with -benchtime=300x.
func BenchmarkSyslogDelayDuringSlackHang(b *testing.B) {
	for _, hung := range []bool{false, true} {
		name := "slack-healthy"
		if hung {
			name = "slack-hung"
		}
		b.Run(name, func(b *testing.B) { benchSyslogDelay(b, hung) })
	}
}

var benchIDRe = regexp.MustCompile(`externalId=(\S+)`)

func benchSyslogDelay(b *testing.B, hung bool) {
	rs := syslogtest.Start(b)
	srv := slacktest.New("xoxb-bench")
	never := make(chan struct{})
	defer func() { close(never); srv.Close() }()
	if hung {
		srv.Hang = func(string) (<-chan struct{}, bool) { return never, false }
	}
	b.Setenv("AW_BENCH_SLACK_TOKEN", "xoxb-bench")
	cfg := Defaults()
	cfg.Outputs = []OutputConfig{
		{Name: "slack", Type: TypeSlack, Slack: &slack.Config{Token: secret.Secret{Env: "AW_BENCH_SLACK_TOKEN"}, Channel: slacktest.ChannelID, APIURL: srv.APIURL()}},
		{Name: "siem", Type: TypeSyslog, Syslog: &syslog.Config{Address: rs.TCPAddr}},
	}
	cfg.DefaultOutputs = []string{"slack", "siem"}
	cfg.DefaultPaths(b.TempDir())
	r, err := New(cfg, nil, prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()

	var mu sync.Mutex
	seen := map[string]time.Time{}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // follow rsyslogd's output file
		defer close(done)
		var f *os.File
		var rd *bufio.Reader
		for {
			select {
			case <-stop:
				if f != nil {
					f.Close()
				}
				return
			case <-time.After(2 * time.Millisecond):
			}
			if f == nil {
				if f, err = os.Open(rs.Out); err != nil {
					f = nil
					continue
				}
				rd = bufio.NewReader(f)
			}
			for {
				line, err := rd.ReadString('\n')
				if err != nil {
					if len(line) > 0 { // torn: read it again
						_, _ = f.Seek(-int64(len(line)), 1)
						rd.Reset(f)
					}
					break
				}
				var rec struct {
					Msg string `json:"msg"`
				}
				if json.Unmarshal([]byte(line), &rec) == nil {
					if m := benchIDRe.FindStringSubmatch(rec.Msg); m != nil {
						mu.Lock()
						if _, ok := seen[m[1]]; !ok {
							seen[m[1]] = time.Now()
						}
						mu.Unlock()
					}
				}
			}
		}
	}()
	sent := make(map[string]time.Time, b.N)
	prefix := filepath.Base(b.TempDir())
	b.ResetTimer()
	for i := range b.N {
		f := notifytest.Finding()
		f.ID = fmt.Sprintf("%s-%06d", prefix, i)
		f.DedupeKey = f.ID
		sent[f.ID] = time.Now()
		if err := r.WriteFindings(context.Background(), []schema.Finding{f}); err != nil {
			b.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		mu.Lock()
		n := 0
		for id := range sent {
			if _, ok := seen[id]; ok {
				n++
			}
		}
		mu.Unlock()
		if n == len(sent) {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("syslog received %d of %d findings", n, len(sent))
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.StopTimer()
	close(stop)
	<-done
	delays := make([]float64, 0, len(sent))
	mu.Lock()
	for id, t0 := range sent {
		delays = append(delays, seen[id].Sub(t0).Seconds()*1000)
	}
	mu.Unlock()
	slices.Sort(delays)
	q := func(p float64) float64 { return delays[min(len(delays)-1, int(p*float64(len(delays))))] }
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(delays[len(delays)-1], "max-ms")
	if hung && len(srv.Posts()) != 0 {
		b.Errorf("the hung Slack API accepted %d posts", len(srv.Posts()))
	}
}
