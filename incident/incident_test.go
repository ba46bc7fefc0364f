package incident

import (
	"fmt"
	"testing"
	"time"

	"auditwatch/schema"
)

var t0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

func fnd(id, det string, at time.Duration, principal, ip, resource string, sev schema.Severity) schema.Finding {
	f := schema.Finding{ID: id, Detector: det, Time: t0.Add(at), Principal: principal, SourceIP: ip, Resource: resource,
		Severity: sev, DedupeKey: "dk-" + id, Attributes: map[string]string{}}
	if det == schema.DetectorAuthFailureSpike {
		f.Attributes["key"] = "principal"
		if principal == "" {
			f.Attributes["key"] = "ip"
		}
	}
	return f
}

func assign(t *testing.T, cfg Config, fs []schema.Finding) []schema.Finding {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.Assign(fs)
	return fs
}

// groups maps each finding id to the index of its incident (first seen
// order), so tests compare partitions, not ids.
func groups(fs []schema.Finding) []int {
	idx := map[string]int{}
	out := make([]int, len(fs))
	for i, f := range fs {
		if f.IncidentID == "" {
			out[i] = -1
			continue
		}
		if _, ok := idx[f.IncidentID]; !ok {
			idx[f.IncidentID] = len(idx)
		}
		out[i] = idx[f.IncidentID]
	}
	return out
}

func TestCorrelation(t *testing.T) {
	const (
		ip  = schema.DetectorUnexpectedIP
		ft  = schema.DetectorFirstTimeAccess
		as  = schema.DetectorAuthFailureSpike
		pu  = schema.DetectorPrivilegedUse
		vol = schema.DetectorAccessVolumeSpike
		med = schema.SeverityMedium
		hi  = schema.SeverityHigh
	)
	cases := []struct {
		name string
		fs   []schema.Finding
		want []int
	}{
		{"brute force then use: address burst, the principal's burst, its new network, its first reads", []schema.Finding{
			fnd("a", as, 0, "", "203.0.113.9", "", hi),
			fnd("b", as, time.Second, "u1", "203.0.113.9", "", hi),
			fnd("c", ip, time.Minute, "u1", "203.0.113.9", "auth/login", med),
			fnd("d", ft, 2*time.Minute, "u1", "203.0.113.9", "secret/db", med),
			fnd("e", vol, 3*time.Minute, "u1", "203.0.113.9", "", hi),
		}, []int{0, 0, 0, 0, 0}},
		{"a shared NAT address does not join two principals' first reads", []schema.Finding{
			fnd("a", ft, 0, "u1", "10.0.0.1", "secret/a", med),
			fnd("b", ft, time.Minute, "u2", "10.0.0.1", "secret/b", med),
		}, []int{0, 1}},
		{"a popular secret alone joins nobody", []schema.Finding{
			fnd("a", ft, 0, "u1", "10.0.0.1", "secret/common", med),
			fnd("b", ft, time.Minute, "u2", "10.0.0.2", "secret/common", med),
			fnd("c", ft, 2*time.Minute, "u3", "10.0.0.3", "secret/common", med),
		}, []int{0, 1, 2}},
		{"a secret and an address shared: at most max_fanout principals", []schema.Finding{
			fnd("a", ft, 0, "u1", "10.0.0.1", "secret/common", med),
			fnd("b", ft, time.Minute, "u2", "10.0.0.1", "secret/common", med),
			fnd("c", ft, 2*time.Minute, "u3", "10.0.0.1", "secret/common", med),
			fnd("d", ft, 3*time.Minute, "u4", "10.0.0.1", "secret/common", med),
			fnd("e", ft, 4*time.Minute, "u5", "10.0.0.1", "secret/common", med),
		}, []int{0, 0, 0, 1, 1}},
		{"an address that fails for many identities joins at most max_fanout of them", []schema.Finding{
			fnd("a", as, 0, "", "198.51.100.7", "", hi),
			fnd("b", ip, time.Second, "u1", "198.51.100.7", "", med),
			fnd("c", ip, 2*time.Second, "u2", "198.51.100.7", "", med),
			fnd("d", ip, 3*time.Second, "u3", "198.51.100.7", "", med),
			fnd("e", ip, 4*time.Second, "u4", "198.51.100.7", "", med),
		}, []int{0, 0, 0, 0, 1}},
		{"one principal, outside the window: two incidents", []schema.Finding{
			fnd("a", pu, 0, "root", "10.0.0.5", "sys/mounts", hi),
			fnd("b", pu, 2*time.Hour, "root", "10.0.0.5", "sys/mounts", hi),
		}, []int{0, 1}},
		{"the same principal within the window chains while active", []schema.Finding{
			fnd("a", ft, 0, "u1", "10.0.0.1", "secret/a", med),
			fnd("b", ft, 25*time.Minute, "u1", "10.0.0.1", "secret/b", med),
			fnd("c", ft, 50*time.Minute, "u1", "10.0.0.1", "secret/c", med),
		}, []int{0, 0, 0}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fs := assign(t, Config{}, tc.fs)
			if got := groups(fs); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("incidents %v, want %v", got, tc.want)
			}
		})
	}
}

// The incident's severity is the highest of its parts, its detectors and
// size are carried on each finding; findings keep their own id, severity
// and evidence.
func TestIncidentSummary(t *testing.T) {
	fs := assign(t, Config{}, []schema.Finding{
		fnd("a", schema.DetectorUnexpectedIP, 0, "u1", "203.0.113.9", "", schema.SeverityMedium),
		fnd("b", schema.DetectorPrivilegedUse, time.Minute, "u1", "203.0.113.9", "", schema.SeverityCritical),
		fnd("c", schema.DetectorFirstTimeAccess, 2*time.Minute, "u1", "203.0.113.9", "secret/x", schema.SeverityMedium),
	})
	last := fs[2]
	if last.Attributes["incident_severity"] != "critical" || last.Attributes["incident_findings"] != "3" ||
		last.Attributes["incident_detectors"] != "first_time_access,privileged_use,unexpected_ip" {
		t.Fatalf("incident attributes %v", last.Attributes)
	}
	if last.Severity != schema.SeverityMedium || last.ID != "c" {
		t.Fatalf("finding changed: %+v", last)
	}
}

// Revisions of a finding stay in their first revision's incident, and do
// not count as new findings.
func TestRevisionsStayInTheirIncident(t *testing.T) {
	a := fnd("a", schema.DetectorAuthFailureSpike, 0, "", "203.0.113.9", "", schema.SeverityHigh)
	other := fnd("x", schema.DetectorFirstTimeAccess, time.Second, "u7", "10.1.1.1", "secret/z", schema.SeverityMedium)
	a2 := a
	a2.ID, a2.Revision, a2.Time, a2.Attributes = "a2", 1, t0.Add(20*time.Minute), map[string]string{"key": "ip"}
	fs := assign(t, Config{}, []schema.Finding{a, other, a2})
	if fs[0].IncidentID != fs[2].IncidentID || fs[1].IncidentID == fs[0].IncidentID {
		t.Fatalf("incidents %v", groups(fs))
	}
	if fs[2].Attributes["incident_findings"] != "1" {
		t.Fatalf("a revision counted as a new finding: %v", fs[2].Attributes)
	}
}

// A restart from a checkpoint gives the same incident ids as one
// uninterrupted run.
func TestStateSurvivesRestart(t *testing.T) {
	mk := func() []schema.Finding {
		var fs []schema.Finding
		for i := 0; i < 40; i++ {
			p := fmt.Sprintf("u%d", i%7)
			fs = append(fs, fnd(fmt.Sprint("f", i), schema.DetectorFirstTimeAccess, time.Duration(i)*3*time.Minute, p, "10.0.0.1", fmt.Sprint("secret/", i%5), schema.SeverityMedium))
		}
		return fs
	}
	whole := assign(t, Config{}, mk())
	c1, _ := New(Config{})
	parts := mk()
	c1.Assign(parts[:17])
	b, err := c1.MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	c2, _ := New(Config{})
	if err := c2.RestoreState(b); err != nil {
		t.Fatal(err)
	}
	c2.Assign(parts[17:])
	for i := range whole {
		if whole[i].IncidentID != parts[i].IncidentID {
			t.Fatalf("finding %d: incident %s after a restart, %s without", i, parts[i].IncidentID, whole[i].IncidentID)
		}
	}
	if err := c2.RestoreState([]byte("{")); err == nil {
		t.Fatal("corrupt state restored without an error")
	}
}

// Memory stays bounded: at most max_open incidents are kept.
func TestBounded(t *testing.T) {
	c, _ := New(Config{MaxOpen: 50})
	for i := 0; i < 1000; i++ {
		f := fnd(fmt.Sprint(i), schema.DetectorFirstTimeAccess, time.Duration(i)*time.Millisecond, fmt.Sprint("u", i), "", fmt.Sprint("s", i), schema.SeverityMedium)
		c.Assign([]schema.Finding{f})
	}
	if c.Open() != 50 {
		t.Fatalf("%d open incidents, want 50", c.Open())
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{{Window: -1}, {MaxFanout: -1}, {MaxOpen: -2}} {
		if _, err := New(c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

type fakeDetector struct {
	out  []schema.Finding
	meta map[string][]byte
}

func (d *fakeDetector) Process(ev schema.Event) []schema.Finding {
	f := fnd(ev.ID, schema.DetectorFirstTimeAccess, ev.Time.Sub(t0), ev.Principal, "", ev.Resource, schema.SeverityMedium)
	return append(d.out[:0], f)
}
func (d *fakeDetector) Checkpoint(meta map[string][]byte) error { d.meta = meta; return nil }
func (d *fakeDetector) Meta() (map[string][]byte, error)        { return d.meta, nil }
func (d *fakeDetector) Close() error                            { return nil }

// The stage saves its state in the detector's checkpoint meta, next to the
// caller's entries, and a stage reopened over that detector continues the
// same incidents.
func TestStageCheckpoint(t *testing.T) {
	d := &fakeDetector{}
	s, err := Wrap(d, Config{})
	if err != nil {
		t.Fatal(err)
	}
	a := s.Process(schema.Event{ID: "a", Time: t0, Principal: "u1", Resource: "secret/a"})
	if a[0].IncidentID == "" {
		t.Fatal("no incident id")
	}
	if err := s.Checkpoint(map[string][]byte{"source/x": []byte("7")}); err != nil {
		t.Fatal(err)
	}
	if string(d.meta["source/x"]) != "7" || len(d.meta[MetaKey]) == 0 {
		t.Fatalf("checkpoint meta %v", d.meta)
	}
	s2, err := Wrap(d, Config{})
	if err != nil {
		t.Fatal(err)
	}
	b := s2.Process(schema.Event{ID: "b", Time: t0.Add(time.Minute), Principal: "u1", Resource: "secret/b"})
	if b[0].IncidentID != a[0].IncidentID {
		t.Fatalf("after reopening: incident %s, want %s", b[0].IncidentID, a[0].IncidentID)
	}
	if _, err := Wrap(nil, Config{}); err == nil {
		t.Fatal("nil detector wrapped")
	}
}

// drainingDetector has a reorder buffer (pipeline.Drainer).
type drainingDetector struct {
	fakeDetector
	held []schema.Event
}

func (d *drainingDetector) Process(ev schema.Event) []schema.Finding {
	d.held = append(d.held, ev)
	return nil
}

func (d *drainingDetector) Drain() []schema.Finding {
	var fs []schema.Finding
	for _, ev := range d.held {
		fs = append(fs, d.fakeDetector.Process(ev)...)
	}
	d.held = nil
	return fs
}

func (d *drainingDetector) Buffered() int { return len(d.held) }

// The stage forwards a drain of the detector's reorder buffer and
// correlates what it releases; findings raised beside the detector
// (Join) join the same incidents.
func TestStageDrainAndJoin(t *testing.T) {
	d := &drainingDetector{}
	s, err := Wrap(d, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if fs := s.Process(schema.Event{ID: "a", Time: t0, Principal: "u1", Resource: "secret/a"}); len(fs) != 0 {
		t.Fatalf("buffered event raised %v", fs)
	}
	if s.Buffered() != 1 {
		t.Fatalf("Buffered %d, want 1", s.Buffered())
	}
	fs := s.Drain()
	if len(fs) != 1 || fs[0].IncidentID == "" || s.Buffered() != 0 {
		t.Fatalf("drain: %+v, buffered %d", fs, s.Buffered())
	}
	side := []schema.Finding{fnd("x", "credential_exfiltration", time.Minute, "u1", "203.0.113.5", "", schema.SeverityHigh)}
	got := s.Join(side)
	if len(got) != 1 || got[0].IncidentID != fs[0].IncidentID {
		t.Fatalf("joined finding: incident %q, want %q", got[0].IncidentID, fs[0].IncidentID)
	}
	plain, err := Wrap(&fakeDetector{}, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if plain.Buffered() != 0 || plain.Drain() != nil {
		t.Fatal("a detector without a buffer drained something")
	}
}
