package syslog

import (
	"testing"

	"auditwatch/alert/notify"
	"auditwatch/alert/notify/notifytest"
)

func BenchmarkEncodeFindingCEF(b *testing.B) {
	n, _ := New(Config{Address: "127.0.0.1:1", Hostname: "h"}, nil)
	a := notify.Alert{Finding: notify.BoundFinding(notifytest.HostileFinding(), 2048, 20, 32)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := n.EncodeFinding(a); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeEventCEF(b *testing.B) {
	n, _ := New(Config{Address: "127.0.0.1:1", Hostname: "h"}, nil)
	ev := notifytest.HostileEvent()
	ev.Resource = "secret/data/prod/db"
	b.ReportAllocs()
	for b.Loop() {
		if _, err := n.EncodeEvent(ev); err != nil {
			b.Fatal(err)
		}
	}
}
