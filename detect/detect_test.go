package detect

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"auditwatch/detect/state"
	"auditwatch/schema"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.yaml.in/yaml/v3"
)

func ctev(id string, at time.Duration, principal, ip, action, resource string) schema.Event {
	return schema.Event{Time: t0.Add(at), Source: schema.SourceCloudTrail, ID: id, Principal: principal, PrincipalType: "IAMUser",
		Account: "123456789012", Region: "eu-west-1", Action: action, Resource: resource, SourceIP: ip, SourceIPRaw: ip,
		Outcome: schema.OutcomeSuccess}
}

func TestCanonicalResource(t *testing.T) {
	arn := "arn:aws:secretsmanager:eu-west-1:123456789012:secret:"
	cases := []struct {
		name string
		ev   schema.Event
		want string
	}{
		{"secret by name", ctev("", 0, "", "", "secretsmanager:GetSecretValue", "prod/db"), arn + "prod/db"},
		{"partial ARN", ctev("", 0, "", "", "secretsmanager:GetSecretValue", arn+"prod/db"), arn + "prod/db"},
		{"full ARN", ctev("", 0, "", "", "secretsmanager:GetSecretValue", arn+"prod/db-a1B2c3"), arn + "prod/db"},
		{"name that only looks suffixed", ctev("", 0, "", "", "secretsmanager:GetSecretValue", "prod/db-a1B2c3"), arn + "prod/db-a1B2c3"},
		{"short suffix kept", ctev("", 0, "", "", "secretsmanager:GetSecretValue", arn+"db-a1B2"), arn + "db-a1B2"},
		{"kms unchanged", ctev("", 0, "", "", "kms:Decrypt", "arn:aws:kms:eu-west-1:1:key/k"), "arn:aws:kms:eu-west-1:1:key/k"},
		{"batch by filter", ctev("", 0, "", "", "secretsmanager:BatchGetSecretValue", ""), ""},
		{"vault kv2 data", vev("", 0, "", "", "read", "secret/data/team/a"), "secret/team/a"},
		{"vault kv2 metadata", vev("", 0, "", "", "read", "secret/metadata/team/a"), "secret/team/a"},
		{"vault kv2 list", vev("", 0, "", "", "list", "secret/metadata/team/a/"), "secret/team/a"},
		{"vault mount list", vev("", 0, "", "", "list", "secret/metadata/"), "secret/"},
		{"vault other path", vev("", 0, "", "", "read", "sys/policies/acl/"), "sys/policies/acl"},
	}
	ns := vev("", 0, "", "", "read", "secret/data/x")
	ns.Namespace = "team-a/"
	cases = append(cases, struct {
		name string
		ev   schema.Event
		want string
	}{"vault namespace", ns, "team-a/secret/x"})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := CanonicalResource(&c.ev); got != c.want {
				t.Fatalf("CanonicalResource(%q) = %q, want %q", c.ev.Resource, got, c.want)
			}
		})
	}
}

func TestScope(t *testing.T) {
	var c Config
	c.SetDefaults()
	s := newScope(c.FirstTimeAccess.Scope, c.FirstTimeAccess.VaultMounts)
	cases := []struct {
		ev   schema.Event
		want bool
	}{
		{ctev("", 0, "", "", "secretsmanager:GetSecretValue", "x"), true},
		{ctev("", 0, "", "", "secretsmanager:PutSecretValue", "x"), false}, // a write, not a read of secret material
		{ctev("", 0, "", "", "secretsmanager:DescribeSecret", "x"), false},
		{ctev("", 0, "", "", "kms:Decrypt", "k"), true},
		{ctev("", 0, "", "", "kms:DescribeKey", "k"), false},
		{vev("", 0, "", "", "read", "secret/data/x"), true},
		{vev("", 0, "", "", "update", "secret/data/x"), false},
		{vev("", 0, "", "", "read", "sys/mounts"), false},
	}
	for _, c := range cases {
		if _, got := s.match(&c.ev); got != c.want {
			t.Errorf("%s %s in scope = %v, want %v", c.ev.Action, c.ev.Resource, got, c.want)
		}
	}
	excl := newScope(append(c.FirstTimeAccess.Scope, ScopeRule{Resources: []string{"secret/scratch/*"}, Exclude: true}), nil)
	ev := vev("", 0, "", "", "read", "secret/data/scratch/tmp")
	if _, in := excl.match(&ev); in {
		t.Error("excluded resource counted")
	}
}

func TestConfigValidateNamesEveryField(t *testing.T) {
	var c Config
	c.SetDefaults()
	c.AllowedLateness = Duration(-time.Second)
	c.UnexpectedIP.IPv4Prefix = 33
	c.UnexpectedIP.Severity = "urgent"
	c.UnexpectedIP.Trusted = []TrustedRange{{CIDR: "10.0.0.0/33"}}
	c.UnexpectedIP.Allow = []AllowEntry{{CIDRs: []string{"x"}}}
	c.FirstTimeAccess.Scope = []ScopeRule{{Source: "gcp"}}
	c.AuthFailureSpike.Keys = []string{"user"}
	c.AuthFailureSpike.FailureKinds = []string{"oops"}
	c.AuthFailureSpike.MADFactor = -1
	c.PrivilegedUse.TamperActions = []string{"StopLogging"}
	c.PrivilegedUse.Maintenance = []MaintenanceWindow{{Start: t0, End: t0.Add(-time.Hour)}}
	c.AccessVolumeSpike.Factor = 0.5
	err := c.Validate()
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, f := range []string{"detectors.allowed_lateness", "detectors.unexpected_ip.ipv4_prefix", "detectors.unexpected_ip.severity",
		"detectors.unexpected_ip.trusted[0].cidr", "detectors.unexpected_ip.allow[0]: needs principal", "detectors.unexpected_ip.allow[0].cidrs[0]",
		"detectors.first_time_access.scope[0].source", "detectors.first_time_access.scope[0]: needs", "detectors.auth_failure_spike.keys[0]",
		"detectors.auth_failure_spike.failure_kinds[0]", "detectors.auth_failure_spike.mad_factor", "detectors.privileged_use.tamper_actions[0]",
		"detectors.privileged_use.maintenance_windows[0].end", "detectors.access_volume_spike.factor"} {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error does not name %s:\n%v", f, err)
		}
	}
	var ok Config
	ok.SetDefaults()
	if err := ok.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
}

func TestDecodeConfig(t *testing.T) {
	var n yaml.Node
	src := "unexpected_ip:\n  learning_period: 3d\n  trusted:\n    - cidr: 10.0.0.0/8\nauth_failure_spike:\n  keys: [ip]\n"
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatal(err)
	}
	c, err := DecodeConfig(n.Content[0])
	if err != nil {
		t.Fatal(err)
	}
	if c.UnexpectedIP.LearningPeriod.D() != 72*time.Hour || len(c.AuthFailureSpike.Keys) != 1 || c.FirstTimeAccess.ForgetAfter == 0 {
		t.Fatalf("decoded %+v", c)
	}
	if err := yaml.Unmarshal([]byte("unexpected_ip:\n  learning_perod: 3d\n"), &n); err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeConfig(n.Content[0]); err == nil || !strings.Contains(err.Error(), "learning_perod") {
		t.Fatalf("unknown key not rejected: %v", err)
	}
	if _, err := DecodeConfig(nil); err != nil {
		t.Fatalf("empty section: %v", err)
	}
}

// The example under deploy/ decodes strictly and validates.
func TestExampleConfig(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "deploy", "detectors.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var root struct {
		Detectors yaml.Node `yaml:"detectors"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&root); err != nil {
		t.Fatal(err)
	}
	c, err := DecodeConfig(&root.Detectors)
	if err != nil {
		t.Fatalf("example config: %v", err)
	}
	if len(c.UnexpectedIP.Allow) == 0 || len(c.PrivilegedUse.Maintenance) == 0 {
		t.Fatal("example lost its allowlist or maintenance window")
	}
	// The example shows the default scope, mounts and rollout writes (plus
	// one example exclusion at the end).
	var d Config
	d.SetDefaults()
	if n := len(c.FirstTimeAccess.Scope); n == 0 || !reflect.DeepEqual(c.FirstTimeAccess.Scope[:n-1], d.FirstTimeAccess.Scope) {
		t.Errorf("example scope differs from DefaultScope:\n%+v\n%+v", c.FirstTimeAccess.Scope, d.FirstTimeAccess.Scope)
	}
	if !reflect.DeepEqual(c.FirstTimeAccess.VaultMounts, d.FirstTimeAccess.VaultMounts) || !reflect.DeepEqual(c.FirstTimeAccess.RolloutActions, d.FirstTimeAccess.RolloutActions) {
		t.Error("example vault_mounts or rollout_actions differ from the defaults")
	}
}

// run feeds events (history until learnUntil) and returns the findings.
func run(t *testing.T, cfg Config, evs []schema.Event) ([]schema.Finding, *Engine) {
	t.Helper()
	st := openStore(t, t.TempDir())
	t.Cleanup(func() { st.Close() })
	e := newEngine(t, cfg, st, nil)
	return runAll(e, evs), e
}

func TestUnexpectedIPAllowlists(t *testing.T) {
	cfg := testConfig(learnEnd)
	cfg.UnexpectedIP.Trusted = []TrustedRange{{CIDR: "192.0.2.0/24"}}
	cfg.UnexpectedIP.Allow = []AllowEntry{
		{Principal: "arn:aws:iam::123456789012:role/ci-*", CIDRs: []string{"198.51.100.0/24"}},
		{Policy: "deploy", CIDRs: []string{"203.0.113.0/25"}},
		{Principal: "app-x", CIDRs: []string{"100.64.0.0/16"}, Expires: t0.Add(3 * time.Hour)},
	}
	ci := "arn:aws:iam::123456789012:role/ci-runner"
	var evs []schema.Event
	for i := 0; i < 10; i++ {
		evs = append(evs, vev(fmt.Sprintf("h%d", i), time.Duration(i)*time.Minute, "app-x", "10.0.0.1", "read", "secret/data/a"))
		evs = append(evs, vev(fmt.Sprintf("h6%d", i), time.Duration(i)*time.Minute, "app-x", "2001:db8:1::1", "read", "secret/data/a"))
		evs = append(evs, ctev(fmt.Sprintf("c%d", i), time.Duration(i)*time.Minute, ci, "10.9.9.9", "secretsmanager:GetSecretValue", "x"))
	}
	after := func(id string, m time.Duration, ip string) schema.Event {
		return vev(id, 2*time.Hour+m*time.Minute, "app-x", ip, "read", "secret/data/a")
	}
	svc := ctev("svc", 2*time.Hour+time.Minute, ci, "", "secretsmanager:GetSecretValue", "x")
	svc.SourceIsService, svc.SourceIPRaw = true, "secretsmanager.amazonaws.com"
	deploy := after("pol", 2, "203.0.113.5")
	deploy.Policies = []string{"default", "deploy"}
	evs = append(evs,
		after("same24", 1, "10.0.0.77"),
		after("same64", 2, "2001:db8:1::ffff"),
		after("trusted", 3, "192.0.2.44"),
		ctev("ci-pattern", 2*time.Hour+4*time.Minute, ci, "198.51.100.9", "secretsmanager:GetSecretValue", "x"),
		svc,
		deploy,
		after("nopolicy", 5, "203.0.113.6"),       // policy entry does not apply: finding
		after("entry-live", 6, "100.64.1.1"),      // allowed until t0+3h
		after("entry-expired", 70, "100.64.1.2"),  // expired: finding
		after("new64", 71, "2001:db8:2::1"),       // other /64: finding
		after("noip", 72, ""),                     // no address: never
		after("new64-again", 73, "2001:db8:2::2"), // same new /64: already reported
	)
	fs, _ := run(t, cfg, evs)
	var got []string
	for _, f := range ofDetector(fs, schema.DetectorUnexpectedIP) {
		got = append(got, f.EventIDs[0])
	}
	want := []string{"nopolicy", "entry-expired", "new64"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("unexpected_ip on %v, want %v", got, want)
	}
}

func TestFirstTimeAccessCanonicalAndForget(t *testing.T) {
	cfg := testConfig(learnEnd)
	cfg.FirstTimeAccess.ForgetAfter = Duration(24 * time.Hour)
	arn := "arn:aws:secretsmanager:eu-west-1:123456789012:secret:"
	p := "arn:aws:iam::123456789012:role/app"
	evs := []schema.Event{
		ctev("h1", time.Minute, p, "10.0.0.1", "secretsmanager:GetSecretValue", "prod/db"),
		ctev("h2", 2*time.Minute, p, "10.0.0.1", "secretsmanager:GetSecretValue", "prod/old"),
		ctev("a1", 2*time.Hour, p, "10.0.0.1", "secretsmanager:GetSecretValue", arn+"prod/db-Ab12Cd"),
		ctev("a2", 2*time.Hour+time.Minute, p, "10.0.0.1", "secretsmanager:GetSecretValue", arn+"prod/db"),
		ctev("a3", 2*time.Hour+2*time.Minute, p, "10.0.0.1", "secretsmanager:DescribeSecret", "prod/other"),
		ctev("new", 2*time.Hour+3*time.Minute, p, "10.0.0.1", "secretsmanager:GetSecretValue", "prod/other"),
		ctev("kept", 20*time.Hour, p, "10.0.0.1", "secretsmanager:GetSecretValue", "prod/other"),
		ctev("forgotten", 30*time.Hour, p, "10.0.0.1", "secretsmanager:GetSecretValue", "prod/old"),
	}
	denied := ctev("denied", 31*time.Hour, p, "10.0.0.1", "secretsmanager:GetSecretValue", "prod/admin")
	denied.Outcome, denied.FailureKind = schema.OutcomeFailure, schema.FailurePermissionDenied
	notfound := ctev("notfound", 31*time.Hour+time.Minute, p, "10.0.0.1", "secretsmanager:GetSecretValue", "prod/nothing")
	notfound.Outcome, notfound.FailureKind = schema.OutcomeFailure, schema.FailureNotFound
	evs = append(evs, denied, notfound)
	fs, _ := run(t, cfg, evs)
	var got []string
	for _, f := range ofDetector(fs, schema.DetectorFirstTimeAccess) {
		got = append(got, f.EventIDs[len(f.EventIDs)-1]+"="+f.Resource)
	}
	want := []string{"new=" + arn + "prod/other", "forgotten=" + arn + "prod/old", "denied=" + arn + "prod/admin"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("first_time_access:\n got %v\nwant %v", got, want)
	}
}

func TestAuthSpikeLearnedRateAndKeys(t *testing.T) {
	fail := func(id string, at time.Duration, principal, ip string) schema.Event {
		return failed(vev(id, at, principal, ip, "read", "secret/data/x"), schema.FailurePermissionDenied, false)
	}
	var evs []schema.Event
	// A noisy job: 6 denied calls every minute through the history.
	for m := 0; m < 110; m++ {
		for i := 0; i < 6; i++ {
			evs = append(evs, fail(fmt.Sprintf("n%d-%d", m, i), time.Duration(m)*time.Minute+time.Duration(i)*5*time.Second, "noisy", "10.1.1.1"))
		}
	}
	// After the history: its usual 8/min is no spike; 25 in a minute is.
	for i := 0; i < 8; i++ {
		evs = append(evs, fail(fmt.Sprintf("u%d", i), 2*time.Hour+time.Duration(i)*5*time.Second, "noisy", "10.1.1.1"))
	}
	for i := 0; i < 25; i++ {
		evs = append(evs, fail(fmt.Sprintf("s%d", i), 2*time.Hour+5*time.Minute+time.Duration(i)*2*time.Second, "noisy", "10.1.1.1"))
	}
	// A quiet principal: 5 in a minute is far above its zero rate.
	for i := 0; i < 5; i++ {
		evs = append(evs, fail(fmt.Sprintf("q%d", i), 2*time.Hour+10*time.Minute+time.Duration(i)*time.Second, "quiet", "10.2.2.2"))
	}
	// After the cool-down a new burst opens with a new dedupe key.
	for i := 0; i < 5; i++ {
		evs = append(evs, fail(fmt.Sprintf("r%d", i), 3*time.Hour+time.Duration(i)*time.Second, "quiet", "10.2.2.2"))
	}
	cfg := testConfig(learnEnd)
	fs, _ := run(t, cfg, evs)
	spikes := ofDetector(fs, schema.DetectorAuthFailureSpike)
	var got []string
	keys := map[string]bool{}
	for _, f := range spikes {
		got = append(got, fmt.Sprintf("%s/%s/r%d", f.Principal, f.Attributes["key"], f.Revision))
		keys[f.DedupeKey] = true
	}
	want := "noisy/principal/r0,quiet/principal/r0,quiet/principal/r0"
	if strings.Join(got, ",") != want {
		t.Fatalf("spikes %v, want %s", got, want)
	}
	if len(keys) != 3 {
		t.Fatalf("%d dedupe keys, want 3", len(keys))
	}
	// The usual 8 did not alert; the noisy burst opened inside the 25.
	if id := spikes[0].EventIDs[len(spikes[0].EventIDs)-1]; !strings.HasPrefix(id, "s") {
		t.Errorf("noisy spike triggered by %s, want one of the 25", id)
	}
	if spikes[0].Count < 10 {
		t.Errorf("noisy spike at %d failures: its learned rate was ignored", spikes[0].Count)
	}

	// An address-keyed instance (a pipeline re-keyed by IP) sees only addresses.
	ipcfg := testConfig(learnEnd)
	ipcfg.AuthFailureSpike.Keys = []string{"ip"}
	fs, _ = run(t, ipcfg, evs)
	for _, f := range ofDetector(fs, schema.DetectorAuthFailureSpike) {
		if f.Attributes["key"] != "ip" {
			t.Errorf("ip-keyed instance raised %s-keyed finding", f.Attributes["key"])
		}
	}
	if len(ofDetector(fs, schema.DetectorAuthFailureSpike)) == 0 {
		t.Error("ip-keyed instance raised nothing")
	}
}

func TestPrivilegedUse(t *testing.T) {
	cfg := testConfig(learnEnd)
	cfg.PrivilegedUse.Maintenance = []MaintenanceWindow{{Start: t0.Add(3 * time.Hour), End: t0.Add(4 * time.Hour), Principals: []string{"root"}, Reason: "upgrade"}}
	rootUse := func(id string, at time.Duration) schema.Event {
		e := vev(id, at, "root", "10.10.0.5", "read", "sys/mounts")
		e.PrincipalType, e.Policies = "token", []string{"root"}
		return e
	}
	awsRoot := ctev("awsroot", 2*time.Hour, "arn:aws:iam::123456789012:root", "198.51.100.1", "iam:CreateAccessKey", "")
	awsRoot.PrincipalType = "Root"
	stop := ctev("stop", 2*time.Hour+time.Minute, "arn:aws:iam::123456789012:user/eve", "198.51.100.2", "cloudtrail:StopLogging", "trail")
	stop2 := ctev("stop2", 2*time.Hour+2*time.Minute, "arn:aws:iam::123456789012:user/eve", "198.51.100.2", "cloudtrail:DeleteTrail", "trail")
	audit := vev("auditoff", 2*time.Hour+3*time.Minute, "admin", "10.0.0.9", "delete", "sys/audit/file")
	evs := []schema.Event{rootUse("boot", time.Minute), awsRoot, stop, stop2, audit,
		rootUse("maint", 3*time.Hour+time.Minute), rootUse("after", 5*time.Hour)}
	fs, e := run(t, cfg, evs)
	var got []string
	for _, f := range ofDetector(fs, schema.DetectorPrivilegedUse) {
		got = append(got, fmt.Sprintf("%s:%s:%s", f.EventIDs[len(f.EventIDs)-1], f.Attributes["kind"], f.Severity))
	}
	want := "awsroot:aws_root:high,stop:audit_tampering:critical,stop2:audit_tampering:critical,auditoff:audit_tampering:critical,after:vault_root_token:high"
	if strings.Join(got, ",") != want {
		t.Fatalf("privileged_use\n got %v\nwant %s", got, want)
	}
	if s := e.Stats(); s.Suppressed != 1 {
		t.Errorf("Suppressed = %d, want 1 (maintenance window)", s.Suppressed)
	}
}

// Millions of attacker-chosen addresses and principals: the working set
// stays within its bounds and every eviction (and every unsaved entry lost
// before a checkpoint) is counted, in Stats and in the metrics.
func TestHostileCardinality(t *testing.T) {
	// 20x the bound is hostile enough to show it; the state-memory
	// benchmark covers a million entries.
	n := 20_000
	cfg := testConfig(time.Time{})
	cfg.MaxPrincipals = 1000
	cfg.MaxSpill = 5000
	cfg.UnexpectedIP.MaxPrincipals = 1000
	cfg.FirstTimeAccess.MaxPairs = 1000
	cfg.AuthFailureSpike.MaxKeys = 1000
	cfg.PrivilegedUse.MaxKeys = 1000
	cfg.AccessVolumeSpike.MaxPrincipals = 1000
	reg := prometheus.NewRegistry()
	st := openStore(t, t.TempDir())
	defer st.Close()
	e := newEngine(t, cfg, st, reg)
	for i := 0; i < n; i++ {
		ip := fmt.Sprintf("%d.%d.%d.%d", 11+i>>24&0x7f, i>>16&0xff, i>>8&0xff, i&0xff)
		e.Process(failed(vev(fmt.Sprint("f", i), time.Duration(i)*time.Millisecond, "", ip, "update", "auth/userpass/login/u"), schema.FailureInvalidCredentials, true))
		e.Process(vev(fmt.Sprint("r", i), time.Duration(i)*time.Millisecond, fmt.Sprint("p", i), ip, "read", fmt.Sprintf("secret/data/%d", i)))
		if i == n/2 {
			if err := e.Checkpoint(nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	s := e.Stats()
	var evictions, drops, oneOffs float64
	for _, ts := range s.Tables {
		if ts.Size > 1000 {
			t.Errorf("table %s holds %d entries, bound 1000", ts.Space, ts.Size)
		}
		if ts.Spilled > cfg.MaxSpill {
			t.Errorf("table %s spilled %d, bound %d", ts.Space, ts.Spilled, cfg.MaxSpill)
		}
		evictions += testutil.ToFloat64(e.m.evictions.WithLabelValues(ts.Space))
		drops += testutil.ToFloat64(e.m.spillDrops.WithLabelValues(ts.Space))
		oneOffs += testutil.ToFloat64(e.m.oneOffDrops.WithLabelValues(ts.Space))
	}
	// One-off hostile keys are not admitted to the store under pressure:
	// their drops are counted.
	if s.Evictions == 0 || s.OneOffDropped == 0 {
		t.Fatalf("evictions %d, one-off drops %d: hostile load not counted", s.Evictions, s.OneOffDropped)
	}
	if uint64(evictions) != s.Evictions || uint64(drops) != s.SpillDropped || uint64(oneOffs) != s.OneOffDropped {
		t.Fatalf("metrics (%v evictions, %v drops, %v one-off) disagree with Stats (%d, %d, %d)", evictions, drops, oneOffs, s.Evictions, s.SpillDropped, s.OneOffDropped)
	}
	// A checkpoint saves every admitted entry of the working set and every
	// spilled entry; of the flood's new keys, only its allowance.
	size, admitted := 0, 0
	for _, l := range []*list[principalState]{&e.principals.prob, &e.principals.protect} {
		for n := l.head; n != nil; n = n.next {
			if n.dirty && n.proven {
				admitted++
			}
		}
	}
	for _, ts := range s.Tables {
		if ts.Space == spacePrincipals {
			size = admitted + ts.Spilled
		}
	}
	before, _ := st.Count(spacePrincipals)
	if err := e.Checkpoint(nil); err != nil {
		t.Fatal(err)
	}
	after, _ := st.Count(spacePrincipals)
	if after-before < size {
		t.Fatalf("checkpoint saved %d principals (had %d), admitted working set + spill was %d", after, before, size)
	}
	if after-before > size+pressuredWrites {
		t.Fatalf("checkpoint saved %d principals (had %d): more than the admitted %d and the allowance of a full table", after, before, size)
	}
	if after >= n/2 {
		t.Fatalf("%d one-off principals written to the store under pressure", after)
	}
	for _, ts := range e.Stats().Tables {
		if ts.Spilled != 0 {
			t.Errorf("table %s still holds %d spilled entries after a checkpoint", ts.Space, ts.Spilled)
		}
	}
}

func FuzzCanonicalResource(f *testing.F) {
	f.Add("cloudtrail", "secretsmanager:GetSecretValue", "arn:aws:secretsmanager:r:1:secret:x-abcdef", "", "")
	f.Add("vault", "vault:list", "secret/metadata/a/", "secret/", "kv")
	f.Add("vault", "vault:read", "/", "", "")
	f.Fuzz(func(t *testing.T, source, action, resource, mount, mountType string) {
		ev := schema.Event{Source: source, Action: action, Resource: resource, Mount: mount, MountType: mountType}
		got := CanonicalResource(&ev)
		if again := CanonicalResource(&ev); again != got {
			t.Fatalf("not deterministic: %q then %q", got, again)
		}
		switch {
		case source == schema.SourceCloudTrail && strings.HasPrefix(action, "secretsmanager:") && strings.HasPrefix(resource, "arn:"):
			// An ARN keeps everything up to the secret name.
			if i := strings.Index(resource, ":secret:"); i >= 0 && !strings.HasPrefix(got, resource[:i+len(":secret:")]) {
				t.Fatalf("ARN %q became %q", resource, got)
			}
		case source == schema.SourceVault:
			// A path loses at most a leading slash, a mount-relative kv-v2
			// prefix and a trailing slash: never grows.
			if len(got) > len(resource) {
				t.Fatalf("vault path %q grew to %q", resource, got)
			}
		}
	})
}

func FuzzDecodeConfig(f *testing.F) {
	f.Add([]byte("unexpected_ip:\n  learning_period: 3d\n"))
	f.Add([]byte("auth_failure_spike:\n  keys: [ip, principal]\n  window: 30s\n"))
	f.Add([]byte("privileged_use:\n  maintenance_windows:\n    - start: 2026-01-01T00:00:00Z\n      end: 2026-01-02T00:00:00Z\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var n yaml.Node
		if err := yaml.Unmarshal(b, &n); err != nil || len(n.Content) == 0 {
			return
		}
		c, err := DecodeConfig(n.Content[0])
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("DecodeConfig accepted a config Validate rejects: %v", err)
		}
		st := openStore(t, t.TempDir())
		defer st.Close()
		if _, err := New(c, st, nil, nil); err != nil {
			t.Fatalf("valid config refused by New: %v", err)
		}
	})
}

// Attacker-controlled fields never crash the engine, and whatever it
// raises carries an id and survives a checkpoint and restart.
func FuzzEngineProcess(f *testing.F) {
	f.Add("vault", "p", "10.0.0.1", "vault:read", "secret/data/x", "secret/", "kv", "", int64(0), false)
	f.Add("cloudtrail", "arn:aws:iam::1:root", "AWS Internal", "cloudtrail:StopLogging", "", "", "", "Root", int64(-5e9), true)
	f.Add("vault", "", "::ffff:1.2.3.4%eth0", "vault:update", "auth/userpass/login/x", "auth/userpass/", "userpass", "invalid_credentials", int64(3e12), true)
	f.Fuzz(func(t *testing.T, source, principal, ip, action, resource, mount, mountType, kind string, offset int64, failed bool) {
		dir := t.TempDir()
		st := openStore(t, dir)
		e := newEngine(t, testConfig(t0.Add(time.Hour)), st, nil)
		ev := schema.Event{Time: t0.Add(2*time.Hour + time.Duration(offset)), Source: source, ID: "id-" + principal, Principal: principal,
			PrincipalType: kind, Action: action, Resource: resource, Mount: mount, MountType: mountType, SourceIP: ip, SourceIPRaw: ip,
			Outcome: schema.OutcomeSuccess, Policies: []string{kind}}
		if failed {
			ev.Outcome, ev.FailureKind, ev.Auth = schema.OutcomeFailure, kind, true
		}
		var fs []schema.Finding
		for i := 0; i < 6; i++ {
			ev.ID = fmt.Sprint("id-", i)
			fs = append(fs, e.Process(ev)...)
		}
		if err := e.Checkpoint(map[string][]byte{"k": []byte(principal)}); err != nil {
			t.Fatal(err)
		}
		for _, f := range fs {
			if f.ID == "" || f.DedupeKey == "" || f.Detector == "" {
				t.Fatalf("incomplete finding %+v", f)
			}
		}
		st.Close()
		st = openStore(t, dir)
		defer st.Close()
		e = newEngine(t, testConfig(t0.Add(time.Hour)), st, nil)
		if m, err := e.Meta(); err != nil || string(m["k"]) != principal {
			t.Fatalf("meta after restart: %q %v", m["k"], err)
		}
	})
}

func TestOpenOwnsItsStore(t *testing.T) {
	dir := t.TempDir()
	sc := state.Config{Dir: dir, Partition: "7"}
	e, err := Open(testConfig(time.Time{}), sc, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.Process(vev("a", 0, "p", "10.0.0.1", "read", "secret/data/x"))
	if err := e.Checkpoint(map[string][]byte{"offset": []byte("1")}); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	// Closed: the file lock is free for the next owner of partition 7.
	e, err = Open(testConfig(time.Time{}), sc, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if m, err := e.Meta(); err != nil || string(m["offset"]) != "1" {
		t.Fatalf("meta %q %v", m, err)
	}
	if got := e.Watermark(schema.SourceVault); !got.Equal(t0) {
		t.Fatalf("vault watermark after reopen %v, want %v", got, t0)
	}
}

// Events out of order are decided on arrival; a restart at any point
// gives the same findings as a run without one.
func TestOutOfOrderAndRestart(t *testing.T) {
	sc := scenarios()[2]                // auth_failure_spike
	evs := slices.Clone(sc.events[10:]) // the failures, a second apart
	for i := 0; i+8 <= len(evs); i += 8 {
		slices.Reverse(evs[i : i+8])
	}
	cfg := testConfig(time.Time{})
	want, _ := run(t, cfg, evs)
	if len(ofDetector(want, sc.detector)) == 0 {
		t.Fatal("no findings")
	}
	for split := 1; split < len(evs); split += 7 {
		dir := t.TempDir()
		st := openStore(t, dir)
		e := newEngine(t, cfg, st, nil)
		var got []schema.Finding
		for _, ev := range evs[:split] {
			got = append(got, e.Process(ev)...)
		}
		if err := e.Checkpoint(nil); err != nil {
			t.Fatal(err)
		}
		st.Close()
		st = openStore(t, dir)
		e = newEngine(t, cfg, st, nil)
		got = append(got, runAll(e, evs[split:])...)
		st.Close()
		if !slices.Equal(ids(got), ids(want)) {
			t.Fatalf("split %d: restart changed findings:\n%v\n%v", split, ids(got), ids(want))
		}
	}
}

// Single-event decisions are raised by the event that makes them, with
// the shipped 15-minute CloudTrail lateness: nothing waits.
func TestDecideOnArrival(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	var cfg Config // shipped defaults
	e := newEngine(t, cfg, st, nil)
	root := vev("r1", time.Hour, "root", "203.0.113.9", "read", "sys/auth")
	root.Policies = []string{"root"}
	if fs := e.Process(root); len(ofDetector(fs, schema.DetectorPrivilegedUse)) != 1 {
		t.Fatalf("root-token use not raised on arrival: %+v", fs)
	}
	// A burst of failed logins: the finding comes with the event that
	// crosses the threshold, not later.
	// No learned rate yet: min_count failures are far above it.
	thr := e.Config().AuthFailureSpike.MinCount
	for i := 0; i < thr; i++ {
		ev := failed(vev(fmt.Sprint("a", i), 2*time.Hour+time.Duration(i)*time.Second, "", "203.0.113.10", "update", "auth/userpass/login/x"), schema.FailureInvalidCredentials, true)
		fs := ofDetector(e.Process(ev), schema.DetectorAuthFailureSpike)
		if i < thr-1 && len(fs) != 0 || i == thr-1 && len(fs) != 1 {
			t.Fatalf("failure %d of min_count %d raised %d findings", i+1, thr, len(fs))
		}
	}
}

// A late event still counts in its own window: the same burst delivered
// newest first raises the same incident as in order, when its last
// (oldest) event arrives.
func TestLateEventCountsInItsWindow(t *testing.T) {
	var evs []schema.Event
	for i := 0; i < 10; i++ {
		ev := failed(vev(fmt.Sprint("a", i), time.Hour+time.Duration(i)*time.Second, "", "203.0.113.10", "update", "auth/userpass/login/x"), schema.FailureInvalidCredentials, true)
		ev.Source = schema.SourceCloudTrail // 15 minutes of lateness
		evs = append(evs, ev)
	}
	// A newer, unrelated CloudTrail event first: the burst is 10 minutes late.
	newer := vev("n", time.Hour+10*time.Minute, "app", "10.0.0.1", "read", "secret/data/a")
	newer.Source = schema.SourceCloudTrail
	rev := append([]schema.Event{newer}, evs...)
	slices.Reverse(rev[1:])
	cfg := testConfig(time.Time{})
	cfg.Lateness = nil // shipped per-source lateness
	got, e := run(t, cfg, rev)
	fs := ofDetector(got, schema.DetectorAuthFailureSpike)
	inOrder, _ := run(t, cfg, append([]schema.Event{newer}, evs...))
	want := ofDetector(inOrder, schema.DetectorAuthFailureSpike)
	if len(fs) == 0 || !slices.Equal(Incidents(fs), Incidents(want)) {
		t.Fatalf("late burst: incidents %v, in order %v", Incidents(fs), Incidents(want))
	}
	// Raised by the min_count-th arriving failure, then one update when
	// the count doubled; the incident spans the whole burst.
	mc := e.Config().AuthFailureSpike.MinCount
	last := fs[len(fs)-1]
	if fs[0].Count != mc || last.Count != len(evs) || last.DedupeKey != fs[0].DedupeKey ||
		!last.FirstTime.Equal(evs[0].Time) {
		t.Fatalf("late burst findings %+v", fs)
	}
	if e.Stats().Late != 0 {
		t.Fatalf("%d events counted late within the 15-minute CloudTrail lateness", e.Stats().Late)
	}
}

// One source's watermark never makes another's events late; events
// dated days ahead or behind are processed, counted and flagged, and do
// not move the watermark.
func TestPerSourceWatermarksAndSkew(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	cfg := testConfig(time.Time{})
	cfg.Lateness = nil
	wall := t0.Add(2 * time.Hour)
	cfg.Now = func() time.Time { return wall }
	reg := prometheus.NewRegistry()
	e := newEngine(t, cfg, st, reg)
	ct := vev("c1", 2*time.Hour, "arn:aws:iam::1:role/app", "10.0.0.1", "read", "secret/data/a")
	ct.Source = schema.SourceCloudTrail
	e.Process(ct)
	// Vault is 10 minutes behind CloudTrail: on time for its own clock.
	e.Process(vev("v1", time.Hour+50*time.Minute, "app", "10.0.0.1", "read", "secret/data/a"))
	e.Process(vev("v2", time.Hour+50*time.Minute+time.Second, "app", "10.0.0.1", "read", "secret/data/a"))
	if s := e.Stats(); s.Late != 0 {
		t.Fatalf("vault events late because of CloudTrail's clock: %d", s.Late)
	}
	// A clock jump: an event three days ahead of the wall clock.
	ahead := vev("jump", 74*time.Hour, "root", "203.0.113.9", "read", "sys/auth")
	ahead.Policies = []string{"root"}
	fs := e.Process(ahead)
	if len(fs) != 1 || fs[0].Attributes["time_skew"] != "ahead" {
		t.Fatalf("event dated ahead: findings %+v", fs)
	}
	if got := e.Watermark(schema.SourceVault); !got.Equal(t0.Add(time.Hour + 50*time.Minute + time.Second)) {
		t.Fatalf("watermark dragged to %v", got)
	}
	// Back in time by two days: late, flagged behind, processed.
	behind := vev("old", -47*time.Hour, "root", "203.0.113.9", "read", "sys/auth")
	behind.Policies = []string{"root"}
	fs = e.Process(behind)
	if len(fs) != 1 || !fs[0].Late || fs[0].Attributes["time_skew"] != "behind" {
		t.Fatalf("event dated behind: findings %+v", fs)
	}
	s := e.Stats()
	if s.Ahead != 1 || s.Behind != 1 || s.Late != 1 {
		t.Fatalf("ahead %d behind %d late %d", s.Ahead, s.Behind, s.Late)
	}
	if v := testutil.ToFloat64(e.m.skew.WithLabelValues("ahead")); v != 1 {
		t.Fatalf("skew metric %v", v)
	}
}

// Saved entries nobody touches again (an attacker's one-off addresses, a
// pair past forget_after) are deleted at checkpoints: the store stays
// bounded too, and the deletions are counted.
func TestStateExpiry(t *testing.T) {
	cfg := testConfig(time.Time{})
	cfg.FirstTimeAccess.ForgetAfter = Duration(24 * time.Hour)
	cfg.AuthFailureSpike.MaxKeys = 100 // most keys live only in the store
	cfg.FirstTimeAccess.MaxPairs = 16
	reg := prometheus.NewRegistry()
	st := openStore(t, t.TempDir())
	defer st.Close()
	e := newEngine(t, cfg, st, reg)
	const n = 3000
	for i := 0; i < n; i++ {
		ip := fmt.Sprintf("198.18.%d.%d", i/250, i%250+1)
		e.Process(failed(vev(fmt.Sprint("f", i), time.Duration(i)*time.Millisecond, "", ip, "update", "auth/userpass/login/x"), schema.FailureInvalidCredentials, true))
		if i%50 == 49 { // new keys at a rate checkpoints save before eviction
			if err := e.Checkpoint(nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := 0; i < 40; i++ {
		e.Process(vev(fmt.Sprint("pair", i), time.Minute, fmt.Sprint("app", i), "10.0.0.1", "read", "secret/data/a"))
	}
	if err := e.Checkpoint(nil); err != nil {
		t.Fatal(err)
	}
	saved, _ := st.Count(schema.DetectorAuthFailureSpike)
	if saved < n {
		t.Fatalf("%d address keys saved, want %d", saved, n)
	}
	// Two days later: the addresses never came back, the pair is forgotten.
	e.Process(vev("later", 49*time.Hour, "other", "10.0.0.2", "read", "sys/health"))
	for i := 0; i < 3; i++ { // sweeps proceed in batches (of 2,000 entries)
		if err := e.Checkpoint(nil); err != nil {
			t.Fatal(err)
		}
	}
	left, _ := st.Count(schema.DetectorAuthFailureSpike)
	if left > 100 {
		t.Fatalf("%d address keys left on disk after they expired", left)
	}
	// Entries still in memory are left to the LRU; the rest are gone.
	if c, _ := st.Count(schema.DetectorFirstTimeAccess + ".pairs"); c > 16 {
		t.Fatalf("%d pairs left past forget_after", c)
	}
	s := e.Stats()
	if s.Expired < uint64(n-100) {
		t.Fatalf("Stats.Expired = %d", s.Expired)
	}
	var metric float64
	for _, ts := range s.Tables {
		metric += testutil.ToFloat64(e.m.expired.WithLabelValues(ts.Space))
	}
	if uint64(metric) != s.Expired {
		t.Fatalf("expired metric %v, Stats %d", metric, s.Expired)
	}
}

func TestAttackerStringsAreBounded(t *testing.T) {
	long := strings.Repeat("é", 5000) // 10 kB, multi-byte
	var evs []schema.Event
	for i := 0; i < 30; i++ {
		e := failed(vev(fmt.Sprint("x", i), time.Duration(i)*time.Second, "", "203.0.113.50", "update", "auth/userpass/login/"+long), schema.FailureInvalidCredentials, true)
		e.PrincipalName = long + fmt.Sprint(i)
		evs = append(evs, e)
	}
	fs, e := run(t, testConfig(time.Time{}), evs)
	if len(fs) == 0 {
		t.Fatal("no findings")
	}
	for _, f := range fs {
		if len(f.Summary) > 4*maxText || len(f.Reason) > 4*maxText {
			t.Errorf("finding text not bounded: %d / %d bytes", len(f.Summary), len(f.Reason))
		}
		if !utf8.ValidString(f.Summary) || !utf8.ValidString(f.Reason) {
			t.Error("clipping split a rune")
		}
	}
	for _, n := range e.auth().t.m {
		for _, it := range n.v.B.Items {
			if len(it) > maxText+len("…") {
				t.Errorf("state item of %d bytes", len(it))
			}
		}
	}
}

func (e *Engine) auth() *authSpike {
	for _, d := range e.dets {
		if a, ok := d.(*authSpike); ok {
			return a
		}
	}
	return nil
}

// A store written by a version with a reorder buffer: the events it still
// held are evaluated (Flush, or before the next event), once, and the old
// segments are deleted at the next checkpoint.
func TestLegacyReorderBufferRestored(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir)
	root := vev("legacy-root", time.Hour, "root", "203.0.113.9", "read", "sys/auth")
	root.Policies = []string{"root"}
	seg := segment{First: 7, Last: 7}
	var b state.Batch
	b.Put(spaceEngine, seg.key(), appendEvent(nil, 7, &root))
	cl, _ := json.Marshal(clock{MaxSeen: root.Time, Segments: []segment{seg}})
	b.Put(spaceEngine, keyClock, cl)
	if err := st.Commit(&b); err != nil {
		t.Fatal(err)
	}
	e := newEngine(t, testConfig(time.Time{}), st, nil)
	fs := e.Flush()
	if len(ofDetector(fs, schema.DetectorPrivilegedUse)) != 1 || fs[0].EventIDs[0] != "legacy-root" {
		t.Fatalf("legacy buffered event not evaluated: %+v", fs)
	}
	if fs := e.Flush(); fs != nil {
		t.Fatalf("evaluated twice: %+v", fs)
	}
	if err := e.Checkpoint(nil); err != nil {
		t.Fatal(err)
	}
	if raw, _ := st.Get(spaceEngine, seg.key()); raw != nil {
		t.Fatal("legacy segment kept after the checkpoint")
	}
	st.Close()
	st = openStore(t, dir)
	defer st.Close()
	if fs := newEngine(t, testConfig(time.Time{}), st, nil).Flush(); fs != nil {
		t.Fatalf("evaluated again after restart: %+v", fs)
	}
}

// TestAheadWithTheRealClock: with the real clock (no Config.Now) the
// engine reuses a clock reading between events; an event dated past
// max_ahead right after many on-time ones is still flagged, and on-time
// events after it are not.
func TestAheadWithTheRealClock(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	cfg := testConfig(time.Time{})
	cfg.Now = nil
	e := newEngine(t, cfg, st, nil)
	now := time.Now().UTC()
	at := func(id string, d time.Duration) schema.Event {
		ev := vev(id, 0, "app", "10.0.0.1", "read", "secret/data/a")
		ev.Time = now.Add(d)
		return ev
	}
	for i := 0; i < 5000; i++ {
		e.Process(at(fmt.Sprint("on", i), time.Duration(i)*time.Millisecond))
	}
	if s := e.Stats(); s.Ahead != 0 {
		t.Fatalf("%d on-time events flagged ahead", s.Ahead)
	}
	e.Process(at("jump", e.cfg.MaxAhead.D()+time.Minute))
	e.Process(at("after", 5*time.Second))
	if s := e.Stats(); s.Ahead != 1 {
		t.Fatalf("ahead = %d, want 1 (the event dated past max_ahead only)", s.Ahead)
	}
}
