package syslog

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"auditwatch/internal/escape"
)

func FuzzCEF(f *testing.F) {
	f.Add("auditwatch", "unexpected_ip", "summary | with pipe \\ and\r\nbreaks", "v=1 \\ x", "suser=evil cs1=x", "<!channel>")
	f.Add("", "", "", "a", "b", "c")
	f.Add("|", "\\|", "\\\\", "=", "\\=", " key=v")
	f.Add("\x00\x01", "\xff", "é漢", " ", "  ", "a ")
	f.Fuzz(func(t *testing.T, vendor, sig, name, v1, v2, v3 string) {
		c := cefRecord{Vendor: vendor, Product: "auditwatch", Version: "1.0", SignatureID: sig, Name: name, Severity: 8}
		vals := []string{v1, v2, v3}
		c.add("suser", v1)
		c.add("cs1", v2)
		c.add("msg", v3)
		out := c.String()
		if strings.ContainsAny(out, "\r\n\x00") {
			t.Fatalf("CEF record holds a raw control character: %q", out)
		}
		if !utf8.ValidString(out) {
			t.Fatalf("CEF record is not valid UTF-8: %q", out)
		}
		header, ext, err := parseCEF(out)
		if err != nil {
			t.Fatalf("parse %q: %v", out, err)
		}
		wantHeader := []string{"0", CleanValue(vendor), "auditwatch", "1.0", CleanValue(sig), CleanValue(name), "8"}
		for i := range wantHeader {
			if header[i] != wantHeader[i] {
				t.Fatalf("header field %d = %q, want %q (record %q)", i, header[i], wantHeader[i], out)
			}
		}
		var want [][2]string
		for i, k := range []string{"suser", "cs1", "msg"} {
			if vals[i] != "" {
				want = append(want, [2]string{k, CleanValue(vals[i])})
			}
		}
		if len(ext) != len(want) {
			t.Fatalf("extension = %q, want %q (record %q)", ext, want, out)
		}
		for i := range want {
			if ext[i] != want[i] {
				t.Fatalf("extension pair %d = %q, want %q (record %q)", i, ext[i], want[i], out)
			}
		}
		// Values free of unrepresentable characters come back unchanged.
		for _, v := range append(vals, vendor, sig, name) {
			if CleanValue(v) != v && !strings.ContainsFunc(v, func(r rune) bool { return r == utf8.RuneError || escape.Invisible(r) && r != '\r' && r != '\n' }) {
				t.Fatalf("CleanValue changed %q", v)
			}
		}
	})
}

func FuzzSyslog(f *testing.F) {
	f.Add("host", "auditwatch", "finding", "id-1", `val "quoted" ] \ end`, "CEF:0|a|b|c|d|e|5|k=v")
	f.Add("", "", "", "", "", "")
	f.Add("h o\x00st", "a\nb", "m]", "\r\n", "]]]", "\n\x00msg with\r\nbreaks")
	f.Fuzz(func(t *testing.T, host, app, msgid, v1, v2, msg string) {
		h := Header{Facility: 13, Severity: 3, Timestamp: time.Unix(1_773_480_413, 123456000), Hostname: host, AppName: app, ProcID: "42", MsgID: msgid}
		frame := AppendFrame(nil, AppendMessage(nil, h, SDID, []SDParam{{"id", v1}, {"detector", v2}}, msg))
		got, rest, err := parseFrame(string(frame) + "NEXT")
		if err != nil || rest != "NEXT" {
			t.Fatalf("frame %q: %v (rest %q)", frame, err, rest)
		}
		p, err := parseRFC5424(got)
		if err != nil {
			t.Fatalf("parse %q: %v", got, err)
		}
		if p.pri != 13*8+3 || p.timestamp != "2026-03-14T09:26:53.123456Z" || p.procid != "42" {
			t.Fatalf("header = %+v", p)
		}
		if p.host != headerField(host, 255) || p.app != headerField(app, 48) || p.msgid != headerField(msgid, 32) {
			t.Fatalf("header fields %q %q %q from %q %q %q", p.host, p.app, p.msgid, host, app, msgid)
		}
		if p.sdID != SDID || len(p.params) != 2 || p.params[0] != [2]string{"id", SDValue(v1)} || p.params[1] != [2]string{"detector", SDValue(v2)} {
			t.Fatalf("SD = %q %q, want %q %q", p.sdID, p.params, SDValue(v1), SDValue(v2))
		}
		if p.msg != msg {
			t.Fatalf("MSG = %q, want %q", p.msg, msg)
		}
		if strings.ContainsAny(string(frame[:len(frame)-len(msg)]), "\r\n\x00") {
			t.Fatalf("header or SD holds a raw control character: %q", frame)
		}
	})
}
