package gen

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestDeterministic(t *testing.T) {
	a := generate(t, small(7))
	b := generate(t, small(7))
	if !bytes.Equal(a.vault, b.vault) || !bytes.Equal(a.ct, b.ct) {
		t.Fatal("same seed gave different bytes")
	}
	la, _ := json.Marshal(a.g.Labels())
	lb, _ := json.Marshal(b.g.Labels())
	if !bytes.Equal(la, lb) {
		t.Fatal("same seed gave different labels")
	}
	c := generate(t, small(8))
	if bytes.Equal(a.ct, c.ct) || bytes.Equal(a.vault, c.vault) {
		t.Fatal("different seeds gave the same bytes")
	}
}

// Next and Run render the same bytes.
func TestNextMatchesRun(t *testing.T) {
	cfg := small(3)
	ref := generate(t, cfg)
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var v, c []byte
	for {
		var rec []byte
		var src string
		var ok bool
		rec, src, ok = g.Next(nil)
		if !ok {
			break
		}
		if src == SourceVault {
			v = append(v, rec...)
		} else {
			c = append(c, rec...)
		}
	}
	if !bytes.Equal(v, ref.vault) || !bytes.Equal(c, ref.ct) {
		t.Fatal("Next output differs from Run output")
	}
}

func TestCounts(t *testing.T) {
	for _, tc := range []struct {
		name  string
		share float64
	}{{"cloudtrail", 1}, {"vault", 0}, {"mixed", 0.5}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := small(1)
			cfg.CloudTrailShare = tc.share
			out := generate(t, cfg)
			ct, vl := len(lines(out.ct)), len(lines(out.vault))
			if ct+vl/2 != cfg.Events || vl%2 != 0 {
				t.Fatalf("%d cloudtrail records + %d vault lines, want %d requests", ct, vl, cfg.Events)
			}
			if out.stats.CloudTrailEvents != ct || out.stats.VaultEvents != vl/2 || out.stats.Events != cfg.Events {
				t.Fatalf("stats %+v disagree with output (%d, %d)", out.stats, ct, vl)
			}
			if (tc.share == 1) != (vl == 0) || (tc.share == 0) != (ct == 0) {
				t.Fatalf("share %g gave %d cloudtrail and %d vault lines", tc.share, ct, vl)
			}
			if int64(len(out.ct)+len(out.vault)) != out.stats.Bytes {
				t.Fatalf("stats bytes %d, output %d", out.stats.Bytes, len(out.ct)+len(out.vault))
			}
		})
	}
}

func TestCloudTrailRecordSize(t *testing.T) {
	cfg := Config{Seed: 5, Events: 20_000, CloudTrailShare: 1, Anomalies: true} // default population
	out := generate(t, cfg)
	ls := lines(out.ct)
	total := 0
	for _, l := range ls {
		total += len(l)
	}
	mean := float64(total) / float64(len(ls))
	t.Logf("CloudTrail records: %d, mean size %.0f bytes", len(ls), mean)
	if mean < 1200 || mean > 1800 {
		t.Fatalf("mean CloudTrail record size %.0f bytes, want about 1.5 KB (1200..1800)", mean)
	}
}

func allEvents(t *testing.T, out output) []ev {
	var evs []ev
	for _, l := range lines(out.ct) {
		evs = append(evs, ctEv(t, l))
	}
	evs = append(evs, vaultEvs(t, out.vault)...)
	return evs
}

func TestLabels(t *testing.T) {
	cfg := small(11)
	cfg.AnomalyCount = 20
	out := generate(t, cfg)
	labels := out.g.Labels()
	if len(labels) != cfg.AnomalyCount {
		t.Fatalf("%d labels, want %d", len(labels), cfg.AnomalyCount)
	}
	byID := map[string]ev{}
	for _, e := range allEvents(t, out) {
		if _, dup := byID[e.id]; dup {
			t.Fatalf("event id %s appears twice", e.id)
		}
		byID[e.id] = e
	}
	perDet := map[string]int{}
	perSrc := map[string]int{}
	learnEnd := out.g.LearningEnd()
	var prevEnd time.Time
	for _, l := range labels {
		perDet[l.Detector]++
		perSrc[l.Source]++
		if !l.Time.After(learnEnd) {
			t.Errorf("%s at %s is inside the learning period (ends %s)", l.ID, l.Time, learnEnd)
		}
		if !l.Time.After(prevEnd) {
			t.Errorf("%s starts at %s, before the previous anomaly ended (%s)", l.ID, l.Time, prevEnd)
		}
		prevEnd = l.EndTime
		if len(l.EventIDs) == 0 {
			t.Fatalf("%s has no events", l.ID)
		}
		failed := 0
		for _, id := range l.EventIDs {
			e, ok := byID[id]
			if !ok {
				t.Fatalf("%s: event %s not in the output", l.ID, id)
			}
			if e.source != l.Source {
				t.Errorf("%s: event %s is %s, label says %s", l.ID, id, e.source, l.Source)
			}
			if e.ip != l.SourceIP {
				t.Errorf("%s: event %s from %q, label says %q", l.ID, id, e.ip, l.SourceIP)
			}
			if l.Key == "principal" && e.principal != l.Principal {
				t.Errorf("%s: event %s by %q, label says %q", l.ID, id, e.principal, l.Principal)
			}
			if l.Key == "source_ip" {
				shown := e.login
				if e.principal != "" && e.principal != l.Principal && !containsStr(l.Principals, e.principal) {
					t.Errorf("%s: attempt %s on identity %q, not among the label's %v", l.ID, id, e.principal, l.Principals)
				}
				probe := shown == "" && e.principal == "" && e.action == "read" // a read with a made-up token
				if !probe && !containsStr(l.Users, shown) {
					t.Errorf("%s: attempt %s names %q, not among the label's users %v", l.ID, id, shown, l.Users)
				}
			}
			if e.failed {
				failed++
			}
		}
		if failed != l.Failed {
			t.Errorf("%s: %d failed events, label says %d", l.ID, failed, l.Failed)
		}
		switch l.Kind {
		case "brute_force":
			if len(l.EventIDs) != cfg.Defaults().BruteForceAttempts || l.Failed != len(l.EventIDs) || l.Key != "source_ip" {
				t.Errorf("%s: brute force with %d events, %d failed, key %s", l.ID, len(l.EventIDs), l.Failed, l.Key)
			}
		case "denied_burst":
			if len(l.EventIDs) != cfg.Defaults().DeniedBurst || l.Failed != len(l.EventIDs) {
				t.Errorf("%s: denied burst with %d events, %d failed", l.ID, len(l.EventIDs), l.Failed)
			}
		case "bulk_read":
			if len(l.Resources) != cfg.Defaults().BulkReads+1 && len(l.Resources) != cfg.Defaults().BulkReads {
				t.Errorf("%s: bulk read of %d resources", l.ID, len(l.Resources))
			}
		}
	}
	for _, d := range AnomalyDetectors {
		if perDet[d] != cfg.AnomalyCount/len(AnomalyDetectors) {
			t.Errorf("detector %s has %d anomalies, want %d", d, perDet[d], cfg.AnomalyCount/len(AnomalyDetectors))
		}
	}
	if perSrc["vault"] != perSrc["cloudtrail"] {
		t.Errorf("anomalies per source: %v, want an even split", perSrc)
	}
}

// TestNormalTrafficIsQuiet checks the construction rule: after the learning
// period, traffic that no label names only uses (principal, IP) and
// (principal, resource) pairs shown during learning, normal failures are at
// least FailureGap apart per principal and per IP, and nothing privileged
// happens.
func TestNormalTrafficIsQuiet(t *testing.T) {
	cfg := small(21)
	out := generate(t, cfg)
	labelled := map[string]bool{}
	for _, l := range out.g.Labels() {
		for _, id := range l.EventIDs {
			labelled[id] = true
		}
	}
	learnEnd := out.g.LearningEnd()
	seenIP, seenRes, rollout := map[string]bool{}, map[string]bool{}, map[string]bool{}
	lastFail := map[string]time.Time{}
	checked := 0
	for _, e := range allEvents(t, out) {
		if labelled[e.id] {
			continue
		}
		if e.privileged {
			t.Errorf("normal event %s is privileged (%s by %s)", e.id, e.action, e.principal)
		}
		if e.failed {
			who := "p:" + e.principal
			if e.principal == "" {
				who = "login:" + e.login // a failed login carries no identity
			}
			for _, k := range []string{who, "ip:" + e.ip} {
				if last, ok := lastFail[k]; ok && e.t.Sub(last) < cfg.Defaults().FailureGap {
					t.Errorf("normal failures of %s %s apart", k, e.t.Sub(last))
				}
				lastFail[k] = e.t
			}
		}
		pip, pres := e.principal+"|"+e.ip, e.principal+"|"+e.resource
		if e.t.Before(learnEnd) {
			seenIP[pip] = true
			if e.resource != "" {
				seenRes[pres] = true
			}
			continue
		}
		checked++
		if e.action == "update" && strings.HasPrefix(e.resource, "secret/data/") || e.action == "PutSecretValue" {
			// A rollout: the secret's readers start reading it now.
			rollout[e.resource] = true
		}
		if !seenIP[pip] && !strings.HasSuffix(e.ip, ".amazonaws.com") && e.ip != "AWS Internal" {
			t.Errorf("normal event %s: %s uses %s, not seen during learning", e.id, e.principal, e.ip)
		}
		if e.resource != "" && !seenRes[pres] && !rollout[e.resource] {
			t.Errorf("normal event %s: %s touches %s, not seen during learning", e.id, e.principal, e.resource)
		}
	}
	if checked < cfg.Events/2 {
		t.Fatalf("only %d events after learning checked", checked)
	}
}

// recordID is a CloudTrail record's eventID (one field decoded, not the
// whole record as ctEv does).
func recordID(t testing.TB, rec []byte) string {
	t.Helper()
	var r struct {
		EventID string `json:"eventID"`
	}
	if err := json.Unmarshal(rec, &r); err != nil || r.EventID == "" {
		t.Fatalf("record without eventID (%v): %s", err, rec)
	}
	return r.EventID
}

func TestS3Output(t *testing.T) {
	cfg := small(4)
	cfg.CloudTrailShare = 1
	cfg.Events = 4_500 // the fewest this population allows; objects per account, region and interval still number many
	ref := generate(t, cfg)
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s3 := NewS3Writer(dir, cfg.Seed)
	if _, err := g.Run(context.Background(), Output{CloudTrailS3: s3}); err != nil {
		t.Fatal(err)
	}
	name := regexp.MustCompile(`^AWSLogs/(\d{12})/CloudTrail/([a-z0-9-]+)/\d{4}/\d{2}/\d{2}/(\d{12})_CloudTrail_([a-z0-9-]+)_\d{8}T\d{4}Z_[A-Za-z0-9]{16}\.json\.gz$`)
	want := map[string]bool{}
	for _, l := range lines(ref.ct) {
		want[recordID(t, l)] = true
	}
	files, got := 0, 0
	err = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		m := name.FindStringSubmatch(filepath.ToSlash(rel))
		if m == nil || m[1] != m[3] || m[2] != m[4] {
			t.Errorf("object name %s is not a CloudTrail S3 key", rel)
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			return err
		}
		var doc struct{ Records []json.RawMessage }
		if err := json.NewDecoder(zr).Decode(&doc); err != nil {
			return err
		}
		files++
		for _, r := range doc.Records {
			id := recordID(t, r)
			if !want[id] {
				t.Errorf("%s: record %s not in the line output", rel, id)
			}
			if !strings.Contains(string(r), `"recipientAccountId":"`+m[1]+`"`) {
				t.Errorf("%s: record of another account", rel)
			}
			got++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got != len(want) || files != s3.Files() || files < 2 {
		t.Fatalf("%d records in %d objects (writer says %d), want %d records in 2 or more", got, files, s3.Files(), len(want))
	}
}

func TestRunPaced(t *testing.T) {
	cfg := small(2)
	cfg.Events = 10_000
	cfg.Rate = 40_000
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	flushes := 0
	var v, c bytes.Buffer
	begin := time.Now()
	st, err := g.Run(context.Background(), Output{Vault: &v, CloudTrail: &c, Flush: func() error { flushes++; return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(begin); el < 200*time.Millisecond {
		t.Fatalf("10000 events at 40000/s took %s, want at least 200ms", el)
	}
	if st.Events != cfg.Events || flushes < 10 {
		t.Fatalf("%d events, %d flushes", st.Events, flushes)
	}
	// Cancelling stops the stream with what was written so far intact.
	g, _ = New(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	v.Reset()
	c.Reset()
	st, err = g.Run(ctx, Output{Vault: &v, CloudTrail: &c})
	if !errors.Is(err, context.DeadlineExceeded) || st.Events >= cfg.Events || st.Events == 0 {
		t.Fatalf("cancelled run: %d events, err %v", st.Events, err)
	}
	for _, l := range lines(c.Bytes()) {
		mustJSON(t, l)
	}
	if len(lines(v.Bytes()))%2 != 0 {
		t.Fatal("cancelled run cut a Vault request in half")
	}
}

func TestRunNeedsOutputs(t *testing.T) {
	g, err := New(small(1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.WriteVault(context.Background(), io.Discard); !errors.Is(err, ErrNoOutput) {
		t.Fatalf("err = %v, want ErrNoOutput", err)
	}
	cfg := small(1)
	cfg.CloudTrailShare = 0
	if g, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	st, err := g.WriteVault(context.Background(), &b)
	if err != nil || st.VaultEvents != cfg.Events || len(lines(b.Bytes())) != 2*cfg.Events {
		t.Fatalf("WriteVault: %+v, %v", st, err)
	}
	cfg.CloudTrailShare = 1
	if g, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	b.Reset()
	st, err = g.WriteCloudTrail(context.Background(), &b)
	if err != nil || st.CloudTrailEvents != cfg.Events || len(lines(b.Bytes())) != cfg.Events {
		t.Fatalf("WriteCloudTrail: %+v, %v", st, err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mut    func(*Config)
		fields []string
	}{
		{"ok", func(*Config) {}, nil},
		{"negative events", func(c *Config) { c.Events = -1 }, []string{"generate.events"}},
		{"several", func(c *Config) { c.Duration = -time.Second; c.CloudTrailShare = 2; c.Accounts = 500 },
			[]string{"generate.duration", "generate.cloudtrail_share", "generate.accounts"}},
		{"learning", func(c *Config) { c.LearningFraction = 0.95 }, []string{"generate.learning_fraction"}},
		{"bulk", func(c *Config) { c.BulkReads = 100 }, []string{"generate.bulk_reads"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := small(1)
			tc.mut(&c)
			err := c.Defaults().Validate()
			if len(tc.fields) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("err = %v, want ErrInvalidConfig", err)
			}
			for _, f := range tc.fields {
				if !strings.Contains(err.Error(), f+":") {
					t.Errorf("error does not name %s: %v", f, err)
				}
			}
		})
	}
	// Too few events for the population's routine: a clear error from New.
	c := small(1)
	c.Events = 1000
	if _, err := New(c); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "generate.events") {
		t.Fatalf("New with 1000 events: %v", err)
	}
	c = small(1)
	c.Duration = 10 * time.Minute // 20 anomalies in 8 minutes would overlap
	if _, err := New(c); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "generate.anomaly_count") {
		t.Fatalf("New with overlapping anomalies: %v", err)
	}
	c = small(1)
	c.AnomalySpacing = 10 * time.Hour
	if _, err := New(c); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "anomaly_spacing") {
		t.Fatalf("New with wide spacing: %v", err)
	}
}

func TestLabelsRoundTrip(t *testing.T) {
	out := generate(t, small(9))
	var b bytes.Buffer
	if err := WriteLabels(&b, out.g.Labels()); err != nil {
		t.Fatal(err)
	}
	back, err := ReadLabels(&b)
	if err != nil {
		t.Fatal(err)
	}
	x, _ := json.Marshal(back)
	y, _ := json.Marshal(out.g.Labels())
	if !bytes.Equal(x, y) || len(back) != 20 {
		t.Fatalf("labels changed in a round trip (%d labels)", len(back))
	}
}

func FuzzGenerate(f *testing.F) {
	f.Add(int64(1), uint8(3), uint8(2), uint8(50), uint16(3000))
	f.Add(int64(-7), uint8(0), uint8(4), uint8(0), uint16(2000))
	f.Add(int64(99), uint8(6), uint8(0), uint8(100), uint16(5000))
	f.Fuzz(func(t *testing.T, seed int64, machines, humans, share uint8, events uint16) {
		cfg := Config{Seed: seed, Machines: int(machines % 8), Humans: int(humans % 5), CloudTrailShare: float64(share%101) / 100,
			Events: 1000 + int(events%8000), Anomalies: true, AnomalyCount: 5, BruteForceAttempts: 10, DeniedBurst: 5, BulkReads: 8}
		g, err := New(cfg)
		if err != nil {
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("New: unexpected error %v", err)
			}
			return
		}
		var v, c bytes.Buffer
		if _, err := g.Run(context.Background(), Output{Vault: &v, CloudTrail: &c}); err != nil && !errors.Is(err, ErrNoOutput) {
			t.Fatal(err)
		}
		ids := map[string]bool{}
		for _, l := range lines(c.Bytes()) {
			ids[ctEv(t, l).id] = true
		}
		for _, e := range vaultEvs(t, v.Bytes()) {
			ids[e.id] = true
		}
		if len(ids) != cfg.Events {
			t.Fatalf("%d distinct events, want %d", len(ids), cfg.Events)
		}
		for _, l := range g.Labels() {
			for _, id := range l.EventIDs {
				if !ids[id] {
					t.Fatalf("label %s names missing event %s", l.ID, id)
				}
			}
		}
	})
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// A combined stream holds the same records as the two split streams, in
// event-time order.
func TestCombinedOutput(t *testing.T) {
	cfg := small(6)
	ref := generate(t, cfg)
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if _, err := g.Run(context.Background(), Output{Combined: &b}); err != nil {
		t.Fatal(err)
	}
	var v, c []byte
	var last time.Time
	for _, l := range lines(b.Bytes()) {
		m := mustJSON(t, l)
		var ts time.Time
		if str(m, "eventTime") != "" {
			c = append(append(c, l...), '\n')
			ts, _ = time.Parse(time.RFC3339, str(m, "eventTime"))
		} else {
			v = append(append(v, l...), '\n')
			ts, _ = time.Parse(time.RFC3339Nano, str(m, "time"))
			if str(m, "type") == "response" {
				continue
			}
		}
		if ts.Before(last.Truncate(time.Second)) {
			t.Fatalf("record at %s after one at %s", ts, last)
		}
		if ts.After(last) {
			last = ts
		}
	}
	if !bytes.Equal(v, ref.vault) || !bytes.Equal(c, ref.ct) {
		t.Fatal("combined stream differs from the split streams")
	}
	if _, err := g.Run(context.Background(), Output{Combined: &b, Vault: &b}); err == nil {
		t.Fatal("Combined with Vault accepted")
	}
}
