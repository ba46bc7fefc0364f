package netinfo_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"auditwatch/netinfo"
	"auditwatch/schema"
)

// TestImpossibleTravel: one access key used in Frankfurt, then Berlin
// (424 km: below the minimum distance), then São Paulo half an hour later
// (about 9,800 km): one finding; a second key seen only in São Paulo and a
// slow trip raise nothing.
func TestImpossibleTravel(t *testing.T) {
	db := openDefault(t, func(c *netinfo.Config, dir string) { c.CityDB = filepath.Join(dir, "city.mmdb") })
	if !db.HasCity() {
		t.Fatal("no city database")
	}
	c := netinfo.TravelConfig{}
	c.SetDefaults()
	tr := netinfo.NewTravel(c)
	t0 := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	ev := func(id, key, ip string, after time.Duration) schema.Event {
		return schema.Event{ID: id, Time: t0.Add(after), Source: schema.SourceCloudTrail, Principal: "arn:aws:iam::1:user/alice",
			AccessKey: key, SourceIP: ip, Resource: "prod-db"}
	}
	var fs []schema.Finding
	for _, e := range []schema.Event{
		ev("fra", "AKIA1", "198.51.100.7", 0),
		ev("ber", "AKIA1", "192.0.2.9", 30*time.Minute),
		ev("gru", "AKIA1", "203.0.113.50", 60*time.Minute),
		ev("gru2", "AKIA1", "203.0.113.51", 61*time.Minute),
		ev("other", "AKIA2", "203.0.113.50", 61*time.Minute),
		ev("slow-fra", "AKIA3", "198.51.100.7", 0),
		ev("slow-gru", "AKIA3", "203.0.113.50", 20*time.Hour),
		ev("svc", "AKIA4", "", 0),
	} {
		fs = tr.Check(&e, db.Enrich(&e), fs)
	}
	if len(fs) != 1 || fs[0].EventIDs[0] != "gru" || fs[0].Detector != schema.DetectorImpossibleTravel {
		t.Fatalf("findings %+v", fs)
	}
	f := fs[0]
	for _, want := range []string{"São Paulo, BR (203.0.113.50)", "Berlin, DE (192.0.2.9)", "30m0s"} {
		if !strings.Contains(f.Summary, want) {
			t.Errorf("summary %q lacks %q", f.Summary, want)
		}
	}
	if !strings.Contains(f.Reason, "km/h") || f.Attributes["previous_ip"] != "192.0.2.9" {
		t.Errorf("reason %q attributes %v", f.Reason, f.Attributes)
	}
}
