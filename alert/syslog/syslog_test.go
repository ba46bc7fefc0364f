package syslog

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"auditwatch/alert/notify"
	"auditwatch/alert/notify/notifytest"
	"auditwatch/alert/syslog/syslogtest"
	"auditwatch/schema"
)

type rsyslog struct {
	tcpAddr, tlsAddr, ca, out string
}

func startRsyslog(t *testing.T) rsyslog {
	r := syslogtest.Start(t)
	return rsyslog{tcpAddr: r.TCPAddr, tlsAddr: r.TLSAddr, ca: r.CA, out: r.Out}
}

type received struct {
	Pri, Timestamp, Hostname, App, ProcID, MsgID, SD, Msg, Input string
}

// readLines waits until out holds n JSON lines and decodes them.
func readLines(t *testing.T, out string, n int) []received {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		f, err := os.Open(out)
		if err == nil {
			var recs []received
			sc := bufio.NewScanner(f)
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			for sc.Scan() {
				var r struct {
					Pri       string `json:"pri"`
					Timestamp string `json:"timestamp"`
					Hostname  string `json:"hostname"`
					App       string `json:"app"`
					ProcID    string `json:"procid"`
					MsgID     string `json:"msgid"`
					SD        string `json:"sd"`
					Msg       string `json:"msg"`
					Input     string `json:"input"`
				}
				if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
					t.Fatalf("rsyslog output line %q: %v", sc.Text(), err)
				}
				recs = append(recs, received(r))
			}
			f.Close()
			if len(recs) >= n {
				return recs
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("rsyslog wrote fewer than %d messages to %s", n, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func extMap(t *testing.T, msg string) (map[string]string, []string) {
	t.Helper()
	header, ext, err := parseCEF(msg)
	if err != nil {
		t.Fatalf("rsyslog delivered an unparsable CEF record %q: %v", msg, err)
	}
	m := map[string]string{}
	for _, kv := range ext {
		if _, dup := m[kv[0]]; dup {
			t.Fatalf("CEF key %s appears twice (injected?) in %q", kv[0], msg)
		}
		m[kv[0]] = kv[1]
	}
	return m, header
}

// TestRsyslog sends findings (one ordinary, one hostile) and raw events in
// CEF over plain TCP and over TLS to a real rsyslogd and checks what it
// parsed and wrote.
func TestRsyslog(t *testing.T) {
	rs := startRsyslog(t)
	for _, mode := range []string{"tcp", "tls"} {
		t.Run(mode, func(t *testing.T) {
			cfg := Config{Address: rs.tcpAddr, Hostname: "aw-test-host"}
			if mode == "tls" {
				cfg.Address = rs.tlsAddr
				cfg.TLS = &TLSConfig{CAFile: rs.ca}
			}
			n, err := New(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close()
			ctx := context.Background()
			before := 0
			if _, err := os.Stat(rs.out); err == nil {
				before = len(readLines(t, rs.out, 0))
			}
			good := notifytest.Alert()
			hostile := notify.Alert{Finding: notify.BoundFinding(notifytest.HostileFinding(), 2048, 20, 32), Repeat: 2, GroupCount: 5, Update: true}
			for _, a := range []notify.Alert{good, hostile} {
				if err := n.Notify(ctx, a); err != nil {
					t.Fatal(err)
				}
			}
			ev := schema.Event{Time: good.Finding.Time, Source: schema.SourceVault, ID: "req-1", Principal: "ent-1",
				Action: "vault:read", Resource: "secret/data/prod/db", SourceIP: "10.0.0.9", Outcome: schema.OutcomeSuccess}
			if err := n.SendEvents(ctx, []schema.Event{ev, notify.BoundEvent(notifytest.HostileEvent(), 2048)}); err != nil {
				t.Fatal(err)
			}
			recs := readLines(t, rs.out, before+4)[before:]
			for _, r := range recs {
				if r.Input != mode {
					t.Errorf("message arrived on input %q, want %q", r.Input, mode)
				}
				if r.App != "auditwatch" || r.Hostname != "aw-test-host" || r.ProcID != strconv.Itoa(os.Getpid()) {
					t.Errorf("header = app %q host %q procid %q", r.App, r.Hostname, r.ProcID)
				}
			}
			// The ordinary finding: facility 13 (log audit), severity 3 (err) for high.
			r := recs[0]
			if r.Pri != strconv.Itoa(13*8+3) || r.MsgID != "finding" || !strings.HasPrefix(r.Timestamp, "2026-03-14T09:26:53") {
				t.Errorf("finding header: pri %s msgid %s time %s", r.Pri, r.MsgID, r.Timestamp)
			}
			if !strings.Contains(r.SD, `id="4f1c2a9e8b7d6c5f4e3d2c1b0a998877"`) || !strings.Contains(r.SD, `detector="unexpected_ip"`) {
				t.Errorf("structured data = %s", r.SD)
			}
			ext, header := extMap(t, r.Msg)
			f := good.Finding
			wantHeader := []string{"0", "auditwatch", "auditwatch", "1.0", "unexpected_ip", f.Summary, "8"}
			if strings.Join(header, "|") != strings.Join(wantHeader, "|") {
				t.Errorf("CEF header = %q, want %q", header, wantHeader)
			}
			want := map[string]string{"rt": "1773480413000", "suid": f.Principal, "suser": f.PrincipalName, "src": f.SourceIP,
				"cs1": f.Resource, "cs1Label": "resource", "externalId": f.ID, "act": "unexpected_ip", "msg": f.Reason,
				"cnt": "3", "cs2": f.DedupeKey, "cs3": strings.Join(f.EventIDs, ","), "cs6": "asn:AS64500;baseline_cidrs:10.20.0.0/16"}
			for k, v := range want {
				if ext[k] != v {
					t.Errorf("CEF %s = %q, want %q", k, ext[k], v)
				}
			}
			// The hostile finding: every value comes back as sent (control
			// characters cleaned), and no extra key was injected.
			ext, header = extMap(t, recs[1].Msg)
			hf := hostile.Finding
			if header[5] != CleanValue(hf.Summary) {
				t.Errorf("hostile CEF name = %q, want %q", header[5], CleanValue(hf.Summary))
			}
			for k, v := range map[string]string{"suid": hf.Principal, "suser": hf.PrincipalName, "src": hf.SourceIP,
				"cs1": hf.Resource, "msg": hf.Reason, "cs2": hf.DedupeKey} {
				if ext[k] != CleanValue(v) {
					t.Errorf("hostile CEF %s = %q, want %q", k, ext[k], CleanValue(v))
				}
			}
			if len(ext["cs1"]) < 2000 {
				t.Errorf("the 10 KB resource (bounded to 2 KB) arrived as %d bytes", len(ext["cs1"]))
			}
			if strings.ContainsAny(recs[1].Msg, "\r\n\x00") || strings.Contains(recs[1].Msg, "#015") || strings.Contains(recs[1].Msg, "#000") {
				t.Errorf("a raw control character reached rsyslog: %q", recs[1].Msg[:200])
			}
			// Events.
			ext, header = extMap(t, recs[2].Msg)
			if recs[2].MsgID != "event" || header[4] != "event" || ext["externalId"] != "req-1" || ext["cs1"] != "secret/data/prod/db" {
				t.Errorf("event record: msgid %s header %q ext %v", recs[2].MsgID, header, ext)
			}
			ext, _ = extMap(t, recs[3].Msg)
			he := notify.BoundEvent(notifytest.HostileEvent(), 2048)
			if ext["requestClientApplication"] != CleanValue(he.UserAgent) || ext["reason"] != CleanValue(he.Error) {
				t.Errorf("hostile event values changed: %q", ext["requestClientApplication"])
			}
			if !strings.Contains(recs[3].SD, `id="x <!channel> y`) || strings.Contains(recs[3].SD, "#015") {
				t.Errorf("hostile event SD = %.200s", recs[3].SD)
			}
		})
	}
	t.Run("json-tls", func(t *testing.T) {
		n, err := New(Config{Address: rs.tlsAddr, TLS: &TLSConfig{CAFile: rs.ca}, Format: FormatJSON, Hostname: "aw-test-host"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer n.Close()
		before := len(readLines(t, rs.out, 0))
		hostile := notify.Alert{Finding: notify.BoundFinding(notifytest.HostileFinding(), 2048, 20, 32), Repeat: 1}
		if err := n.Notify(context.Background(), hostile); err != nil {
			t.Fatal(err)
		}
		r := readLines(t, rs.out, before+1)[before]
		var body jsonFinding
		if err := json.Unmarshal([]byte(r.Msg), &body); err != nil {
			t.Fatalf("rsyslog delivered %q: %v", r.Msg, err)
		}
		// JSON escaping grows the hostile fields past max_message_bytes, so
		// the encoder shortened them: each arrives as a prefix of the
		// original plus the ellipsis, and the whole message fits.
		for name, pair := range map[string][2]string{"principal": {body.Finding.Principal, hostile.Finding.Principal},
			"resource": {body.Finding.Resource, hostile.Finding.Resource}, "reason": {body.Finding.Reason, hostile.Finding.Reason}} {
			got, orig := pair[0], pair[1]
			if got != orig && !(strings.HasSuffix(got, notify.Ellipsis) && strings.HasPrefix(orig, strings.TrimSuffix(got, notify.Ellipsis))) {
				t.Errorf("JSON %s changed on the way: %.100q", name, got)
			}
		}
		if body.Kind != "finding" || body.Finding.ID != hostile.Finding.ID || len(r.Msg) > 8192 {
			t.Errorf("JSON body: kind %q id %q, %d bytes", body.Kind, body.Finding.ID, len(r.Msg))
		}
	})
	t.Run("tls-unknown-ca", func(t *testing.T) {
		other := t.TempDir()
		ca, _, _ := syslogtest.TestCA(t, other)
		n, err := New(Config{Address: rs.tlsAddr, TLS: &TLSConfig{CAFile: ca}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer n.Close()
		err = n.Notify(context.Background(), notifytest.Alert())
		if d := notify.Classify(err); err == nil || d.Retry || d.Reason != notify.ReasonTLS {
			t.Errorf("untrusted server: err %v, Classify %+v, want permanent tls", err, d)
		}
	})
}

func TestReconnect(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	got := make(chan string, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b := make([]byte, 1<<16)
			k, _ := c.Read(b)
			got <- string(b[:k])
			c.Close() // drop every connection after one read
		}
	}()
	n, _ := New(Config{Address: addr, Hostname: "h"}, nil)
	defer n.Close()
	ctx := context.Background()
	if err := n.Notify(ctx, notifytest.Alert()); err != nil {
		t.Fatal(err)
	}
	<-got
	// The peer closed; writes eventually fail and the next attempt redials.
	var lastErr error
	for i := 0; i < 50; i++ {
		if lastErr = n.Notify(ctx, notifytest.Alert()); lastErr != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if lastErr != nil {
		if d := notify.Classify(lastErr); !d.Retry {
			t.Fatalf("write to a closed connection classified %+v, want retryable", d)
		}
		if err := n.Notify(ctx, notifytest.Alert()); err != nil {
			t.Fatalf("redial: %v", err)
		}
	}
	select {
	case m := <-got:
		if _, _, err := parseFrame(m); err != nil {
			t.Fatalf("second connection got %q: %v", m, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no message on a new connection")
	}
	ln.Close()
}

func TestGolden(t *testing.T) {
	for _, format := range []string{FormatCEF, FormatJSON} {
		n, err := New(Config{Address: "127.0.0.1:1", Hostname: "aw-host", Format: format}, nil)
		if err != nil {
			t.Fatal(err)
		}
		n.pid = "4242"
		b, err := n.EncodeFinding(notifytest.Alert())
		if err != nil {
			t.Fatal(err)
		}
		ev := notifytest.HostileEvent()
		ev.Resource = "secret/data/prod/db"
		e, err := n.EncodeEvent(ev)
		if err != nil {
			t.Fatal(err)
		}
		notifytest.Golden(t, "finding-"+format, append(b, '\n'))
		notifytest.Golden(t, "event-"+format, append(e, '\n'))
	}
}

// TestInjection runs the hostile finding through both formats and checks
// the escaped result field by field.
func TestInjection(t *testing.T) {
	n, _ := New(Config{Address: "127.0.0.1:1", Hostname: "h"}, nil)
	hf := notify.BoundFinding(notifytest.HostileFinding(), 2048, 20, 32)
	b, err := n.EncodeFinding(notify.Alert{Finding: hf})
	if err != nil {
		t.Fatal(err)
	}
	msg, _, err := parseFrame(string(b))
	if err != nil {
		t.Fatal(err)
	}
	p, err := parseRFC5424(msg)
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(p.msg, "\r\n\x00") {
		t.Fatal("raw control characters in the CEF body")
	}
	for _, want := range []string{`x <!channel> y <@U123> y <https://evil\|click> y & y \| y = y \\ y \r\n y ` + "\uFFFD", // header: | and \ escaped
		`suid=x <!channel> y <@U123> y <https://evil|click> y & y | y \= y \\ y \r\n y ` + "\uFFFD"} { // extension: = and \ escaped
		if !strings.Contains(p.msg, want) {
			t.Errorf("CEF lacks %q:\n%.400s", want, p.msg)
		}
	}
	if len(b) > 8192 {
		t.Errorf("message is %d bytes, over max_message_bytes", len(b))
	}
	n.cfg.Format = FormatJSON
	b, _ = n.EncodeFinding(notify.Alert{Finding: hf})
	msg, _, _ = parseFrame(string(b))
	p, _ = parseRFC5424(msg)
	var body jsonFinding
	if err := json.Unmarshal([]byte(p.msg), &body); err != nil {
		t.Fatalf("JSON body: %v", err)
	}
	if !strings.HasPrefix(body.Finding.Principal, "x <!channel>") || strings.ContainsAny(p.msg, "\r\n\x00") || strings.Contains(p.msg, "<") {
		t.Errorf("JSON body not escaped: %.300s", p.msg)
	}
}
