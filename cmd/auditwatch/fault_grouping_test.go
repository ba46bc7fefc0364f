package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"auditwatch/schema"
)

// kvRead is a Vault audit request and response of principal p reading
// secret/data/<name> on the kv mount.
func kvRead(w *bytes.Buffer, at time.Time, id string, p int, name string) {
	auth := fmt.Sprintf(`"auth":{"client_token":"hmac-sha256:tok%d","accessor":"hmac-sha256:acc%d","display_name":"approle","policies":["default","app-%d"],"token_policies":["default","app-%d"],"entity_id":"entity-%04d","token_type":"service"}`, p, p, p, p, p)
	req := fmt.Sprintf(`"request":{"id":%q,"client_id":"entity-%04d","operation":"read","mount_point":"secret/","mount_type":"kv","client_token":"hmac-sha256:tok%d","namespace":{"id":"root"},"path":"secret/data/%s","remote_address":"10.20.0.%d"}`, id, p, p, name, 10+p)
	fmt.Fprintf(w, `{"time":%q,"type":"request",%s,%s}`+"\n", at.Format(time.RFC3339Nano), auth, req)
	fmt.Fprintf(w, `{"time":%q,"type":"response",%s,%s,"response":{"mount_type":"kv","data":{"data":{"value":"hmac-sha256:v"}}}}`+"\n",
		at.Add(2*time.Millisecond).Format(time.RFC3339Nano), auth, req)
}

// TestGroupingSurvivesSIGKILL: four principals, learned over two hours,
// then read 30 secrets each for the first time, their reads interleaved so
// that all four first_time_access groups are open at once, with a pause
// longer than the group window halfway (every group closes and new ones
// open). `auditwatch run` tails the stream and is SIGKILLed and restarted
// ten times while it is appended. Every new principal/secret pair is named
// by exactly one first_time_access finding revision, and the findings are
// exactly those of an uninterrupted replay: grouping and closing windows
// lose nothing, a restart repeats nothing.
func TestGroupingSurvivesSIGKILL(t *testing.T) {
	t.Parallel()
	f := newFaultRun(t, faultStream{Seed: 5, Events: 9000, Machines: 8, Humans: 2, Duration: "1h"})
	t0 := time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)
	learnEnd := t0.Add(2 * time.Hour)
	const principals, perPrincipal = 4, 30
	var w bytes.Buffer
	n := 0
	id := func() string { n++; return fmt.Sprintf("grp-%05d", n) }
	// History: each principal reads its own three secrets every minute.
	for at := t0; at.Before(learnEnd); at = at.Add(time.Minute) {
		for p := range principals {
			kvRead(&w, at.Add(time.Duration(p)*7*time.Second), id(), p, fmt.Sprintf("own/%d/s%d", p, at.Minute()%3))
		}
	}
	// Then the new pairs, interleaved across the four open groups.
	rng := rand.New(rand.NewPCG(5, 5))
	next := make([]int, principals)
	want := map[string]bool{}
	at := learnEnd.Add(time.Minute)
	for left := principals * perPrincipal; left > 0; left-- {
		p := rng.IntN(principals)
		for next[p] == perPrincipal {
			p = (p + 1) % principals
		}
		name := fmt.Sprintf("team-%d/new-%02d", (p+1)%principals, next[p])
		next[p]++
		want[fmt.Sprintf("entity-%04d|secret/%s", p, name)] = true
		kvRead(&w, at, id(), p, name)
		// A known read of another principal in between.
		q := rng.IntN(principals)
		kvRead(&w, at.Add(2*time.Second), id(), q, fmt.Sprintf("own/%d/s0", q))
		at = at.Add(time.Duration(3+rng.IntN(10)) * time.Second)
		if left == principals*perPrincipal/2 {
			at = at.Add(15 * time.Minute) // past the 10-minute group window
		}
	}
	f.Raw = w.Bytes()
	must(t, os.WriteFile(f.Data, f.Raw, 0o644))
	f.WriteConfig(faultConfig{
		State: "checkpoint_interval: 150ms, checkpoint_events: 200, idle_drain: 2s",
		Extra: "detectors:\n  learn_until: " + learnEnd.Format(time.RFC3339),
	})
	ref := f.Replay()
	pairs := func(fs []schema.Finding) map[string]int {
		m := map[string]int{}
		for _, fd := range fs {
			if fd.Detector == schema.DetectorFirstTimeAccess {
				m[fd.Principal+"|"+fd.Resource]++
			}
		}
		return m
	}
	if rp := pairs(ref); len(rp) != len(want) {
		t.Fatalf("the uninterrupted replay names %d pairs, want %d", len(rp), len(want))
	}

	got, kills := f.KilledRun(120, 10, 200*time.Millisecond, 900*time.Millisecond, 40*time.Second, 3*time.Second, len(ref), nil)
	t.Logf("%d kills; %d findings (replay %d); %d new pairs", kills, len(got), len(ref), len(want))
	assertSameFindings(t, got, ref)
	gp := pairs(got)
	for k := range want {
		if gp[k] != 1 {
			t.Errorf("pair %s named by %d first_time_access findings, want 1", k, gp[k])
		}
	}
	groups := map[string]bool{}
	for _, fd := range got {
		if fd.Detector == schema.DetectorFirstTimeAccess {
			groups[fd.DedupeKey] = true
		}
	}
	if len(groups) < 2*principals {
		t.Errorf("%d first_time_access groups, want at least %d (the pause closes every group)", len(groups), 2*principals)
	}
}
