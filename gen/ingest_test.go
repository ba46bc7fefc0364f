package gen_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"auditwatch/gen"
	"auditwatch/ingest"
	"auditwatch/schema"
)

// normalize runs the project's parser over b and fails on any rejected record.
func normalize(t *testing.T, name string, b []byte) []schema.Event {
	t.Helper()
	r := ingest.NewReader(bytes.NewReader(b), name, ingest.DefaultOptions())
	var evs []schema.Event
	for {
		ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: generated record rejected: %v", name, err)
		}
		evs = append(evs, ev)
	}
	return evs
}

// TestGeneratedRecordsNormalize feeds every generated record through
// ingest.NewReader: none is rejected, each request gives exactly one event,
// and every label's principal, source IP, resources and outcome agree with
// the normalized events it names.
func TestGeneratedRecordsNormalize(t *testing.T) {
	cfg := gen.Config{Seed: 31, Events: 12_000, Machines: 24, Humans: 10, CloudTrailShare: 0.5, Anomalies: true, AnomalyCount: 20, Duration: 6 * time.Hour}
	g, err := gen.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var v, c bytes.Buffer
	st, err := g.Run(context.Background(), gen.Output{Vault: &v, CloudTrail: &c})
	if err != nil {
		t.Fatal(err)
	}
	evs := append(normalize(t, "cloudtrail.jsonl", c.Bytes()), normalize(t, "vault-audit.log", v.Bytes())...)
	if len(evs) != cfg.Events {
		t.Fatalf("%d normalized events from %d generated requests (%d cloudtrail, %d vault)", len(evs), cfg.Events, st.CloudTrailEvents, st.VaultEvents)
	}
	byID := make(map[string]schema.Event, len(evs))
	for _, ev := range evs {
		if ev.ID == "" || ev.Time.IsZero() || ev.Action == "" || ev.Outcome == "" {
			t.Fatalf("incomplete event: %+v", ev)
		}
		if _, dup := byID[ev.ID]; dup {
			t.Fatalf("event id %s normalized twice", ev.ID)
		}
		byID[ev.ID] = ev
	}
	for _, l := range g.Labels() {
		if first := byID[l.EventIDs[0]]; !first.Time.Equal(l.Time) {
			t.Errorf("%s (%s): label time %s, first event at %s", l.ID, l.Kind, l.Time, first.Time)
		}
		failed := 0
		resources := map[string]bool{}
		for _, id := range l.EventIDs {
			ev, ok := byID[id]
			if !ok {
				t.Fatalf("%s (%s): event %s not among the normalized events", l.ID, l.Kind, id)
			}
			if ev.Source != l.Source {
				t.Errorf("%s: event %s source %q, label %q", l.ID, id, ev.Source, l.Source)
			}
			if ev.SourceIP != l.SourceIP {
				t.Errorf("%s (%s): event %s source_ip %q, label %q", l.ID, l.Kind, id, ev.SourceIP, l.SourceIP)
			}
			if l.Key == "principal" && ev.Principal != l.Principal {
				t.Errorf("%s (%s): event %s principal %q, label %q", l.ID, l.Kind, id, ev.Principal, l.Principal)
			}
			if l.Key == "source_ip" && !ev.Auth && (ev.FailureKind != schema.FailureInvalidToken || ev.Principal != "") {
				t.Errorf("%s (%s): event %s is neither a login nor an invalid-token probe: %+v", l.ID, l.Kind, id, ev)
			}
			if l.Key == "source_ip" && ev.Principal != "" && !contains(l.Principals, ev.Principal) {
				t.Errorf("%s (%s): event %s principal %q not among the label's principals %v", l.ID, l.Kind, id, ev.Principal, l.Principals)
			}
			if l.Key == "source_ip" && ev.Auth && (ev.Principal == "") != (ev.PrincipalType == schema.PrincipalTypeAnonymous) {
				t.Errorf("%s (%s): event %s principal %q of type %q", l.ID, l.Kind, id, ev.Principal, ev.PrincipalType)
			}
			if l.Key == "source_ip" && ev.Auth && !contains(l.Users, ev.PrincipalName) {
				t.Errorf("%s (%s): event %s principal_name %q not among the label's users %v", l.ID, l.Kind, id, ev.PrincipalName, l.Users)
			}
			if ev.Failed() {
				failed++
			}
			if ev.Resource != "" {
				resources[ev.Resource] = true
			}
		}
		if failed != l.Failed {
			t.Errorf("%s (%s): %d normalized failures, label says %d", l.ID, l.Kind, failed, l.Failed)
		}
		for _, r := range l.Resources {
			if !resources[r] {
				t.Errorf("%s (%s): label resource %q not the resource of any of its events (%v)", l.ID, l.Kind, r, keys(resources))
			}
		}
		if l.Detector == schema.DetectorAuthFailureSpike {
			for _, id := range l.EventIDs {
				ev := byID[id]
				if ev.FailureKind == "" {
					t.Errorf("%s (%s): event %s failure_kind %q auth %v", l.ID, l.Kind, id, ev.FailureKind, ev.Auth)
				}
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
