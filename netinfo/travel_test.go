package netinfo_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"auditwatch/netinfo"
	"auditwatch/netinfo/netinfotest"
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
	tr, err := netinfo.NewTravel(c, netinfo.TravelOptions{})
	if err != nil {
		t.Fatal(err)
	}
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

// countryDB opens a country-only layout (no city database) with the test
// centroid file: Default's networks plus one in France.
func countryDB(t *testing.T) (*netinfo.DB, netinfo.Config) {
	t.Helper()
	dir := t.TempDir()
	nets := append(append([]netinfotest.Net(nil), netinfotest.Default...),
		netinfotest.Net{CIDR: "2001:db8:2::/48", Country: "FR", ASN: 64501, Org: "Exemple SA"})
	if err := netinfotest.Files(dir, nets); err != nil {
		t.Fatal(err)
	}
	if err := netinfotest.Centroids(dir, netinfotest.Countries); err != nil {
		t.Fatal(err)
	}
	cfg := netinfo.Config{Dir: dir}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.CityDB != "" || cfg.Centroids != filepath.Join(dir, netinfo.DefaultCentroidFile) {
		t.Fatalf("layout: city %q centroids %q", cfg.CityDB, cfg.Centroids)
	}
	db, err := netinfo.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if db.HasCity() || len(db.Centroids()) != len(netinfotest.Countries) {
		t.Fatalf("city %v centroids %d", db.HasCity(), len(db.Centroids()))
	}
	return db, cfg
}

// TestImpossibleTravelCountries: without a city database, places are
// country centroids less each country's allowance (1.5x the radius of a
// disc of its area: DE 506 km, BR 2,470 km, FR 628 km). DE→BR in one hour
// (about 9,100 km between centres, 6,200 km after the allowance) is
// impossible; the same trip in ten hours is not, and DE→FR in a minute
// is within the allowance (centres 720 km apart, allowance 1,134 km).
func TestImpossibleTravelCountries(t *testing.T) {
	db, cfg := countryDB(t)
	tr, err := netinfo.NewTravel(cfg.Travel, netinfo.TravelOptions{Centroids: db.Centroids()})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	ev := func(id, key, ip string, after time.Duration) schema.Event {
		return schema.Event{ID: id, Time: t0.Add(after), Source: schema.SourceCloudTrail, Principal: "arn:aws:iam::1:user/alice",
			AccessKey: key, SourceIP: ip}
	}
	var fs []schema.Finding
	for _, e := range []schema.Event{
		ev("de", "AKIA1", "198.51.100.7", 0),
		ev("fr", "AKIA1", "2001:db8:2::5", time.Minute),
		ev("de2", "AKIA1", "192.0.2.9", 2*time.Minute),
		ev("br", "AKIA1", "203.0.113.50", 62*time.Minute),
		ev("slow-de", "AKIA2", "198.51.100.7", 0),
		ev("slow-br", "AKIA2", "203.0.113.50", 10*time.Hour),
	} {
		fs = tr.Check(&e, db.Enrich(&e), fs)
	}
	if len(fs) != 1 || fs[0].EventIDs[0] != "br" {
		t.Fatalf("want one finding for br, got %+v", fs)
	}
	f := fs[0]
	if f.Attributes["location"] != "BR" || f.Attributes["previous_location"] != "DE" ||
		f.Attributes["country_allowance_km"] != "2975" {
		t.Errorf("attributes %v", f.Attributes)
	}
	if !strings.Contains(f.Summary, "between country centres") || !strings.Contains(f.Summary, "BR (203.0.113.50)") {
		t.Errorf("summary %q", f.Summary)
	}
	var km float64
	fmt.Sscan(f.Attributes["distance_km"], &km)
	if km < 6000 || km > 7000 {
		t.Errorf("distance after allowance %v km, want about 6,200", km)
	}
}

// TestTravelRestart: the last places survive a restart (the jump spans
// it), a replayed use is not judged twice, and the places stay within
// their byte bound across restarts.
func TestTravelRestart(t *testing.T) {
	db, cfg := countryDB(t)
	state := t.TempDir()
	open := func(c netinfo.TravelConfig) *netinfo.Travel {
		tr, err := netinfo.NewTravel(c, netinfo.TravelOptions{Centroids: db.Centroids(), Dir: state})
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}
	t0 := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	check := func(tr *netinfo.Travel, id, key, ip string, after time.Duration) []schema.Finding {
		e := schema.Event{ID: id, Time: t0.Add(after), Source: schema.SourceCloudTrail, Principal: "p", AccessKey: key, SourceIP: ip}
		return tr.Check(&e, db.Enrich(&e), nil)
	}
	tr := open(cfg.Travel)
	check(tr, "de", "AKIA1", "198.51.100.7", 0)
	if err := tr.Flush(); err != nil {
		t.Fatal(err)
	}
	// a crash after the flush: the state file holds AKIA1 in DE
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	tr = open(cfg.Travel)
	if tr.Len() != 1 {
		t.Fatalf("restored %d places", tr.Len())
	}
	if fs := check(tr, "br", "AKIA1", "203.0.113.50", time.Hour); len(fs) != 1 {
		t.Fatalf("jump across the restart: %+v", fs)
	}
	tr.Close()
	tr = open(cfg.Travel)
	// the replayed last use changes nothing
	if fs := check(tr, "br", "AKIA1", "203.0.113.50", time.Hour); len(fs) != 0 {
		t.Fatalf("replayed use judged again: %+v", fs)
	}
	tr.Close()

	// byte bound: long keys, 200 credentials, 8 KiB allowed
	small := cfg.Travel
	small.MaxBytes = 8 << 10
	tr = open(small)
	for i := range 200 {
		check(tr, fmt.Sprint(i), fmt.Sprintf("AKIA%0100d", i), "198.51.100.7", time.Duration(i)*time.Second+2*time.Hour)
	}
	if b := tr.Bytes(); b > small.MaxBytes || b == 0 {
		t.Fatalf("bytes %d over %d", b, small.MaxBytes)
	}
	n := tr.Len()
	if n >= 200 || n < 10 {
		t.Fatalf("kept %d places", n)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	tr = open(small)
	defer tr.Close()
	if tr.Len() != n || tr.Bytes() > small.MaxBytes {
		t.Fatalf("after restart %d places %d bytes, want %d places", tr.Len(), tr.Bytes(), n)
	}
	// the newest survived: the last key used jumps to BR
	if fs := check(tr, "last-br", fmt.Sprintf("AKIA%0100d", 199), "203.0.113.50", 2*time.Hour+200*time.Second+time.Minute); len(fs) != 1 {
		t.Fatalf("newest place lost: %+v", fs)
	}
	if st, err := os.Stat(filepath.Join(state, netinfo.TravelFileName)); err != nil || st.Size() > 1<<20 {
		t.Fatalf("state file %v %v", st, err)
	}
}

func TestParseCentroidsErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`[{"cca2":"DE","latlng":[51,9],"area":1}, {"cca2":"D1","latlng":[1,2]}]`, "entry 1"},
		{`[{"cca2":"DE","latlng":[91,9]}]`, "latlng"},
		{`[{"cca2":"DE","latlng":[1]}]`, "entry 0 (DE)"},
		{`[{"cca2":"DE",`, "countries.json"},
		{`{"cca2":"DE"}`, "countries.json"},
		{`[]`, "no entries"},
	} {
		_, err := netinfo.ParseCentroids(strings.NewReader(tc.in), "countries.json")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", tc.in, err, tc.want)
		}
	}
	c, err := netinfo.ParseCentroids(strings.NewReader(`[{"cca2":"sj","latlng":[78,20],"area":-1}]`), "x")
	if err != nil || c["SJ"].RadiusKm != 0 || c["SJ"].Lat != 78 {
		t.Fatalf("%v %v", c, err)
	}
	if _, err := netinfo.ParseCentroids(strings.NewReader(`[{"cca2":"DE","latlng":[1,200]}]`), "x"); !errors.Is(err, netinfo.ErrBadCentroid) {
		t.Fatalf("err %v", err)
	}
}

func FuzzParseCentroids(f *testing.F) {
	f.Add([]byte(`[{"cca2":"DE","latlng":[51,9],"area":357114}]`))
	f.Add([]byte(`[{"cca2":"","latlng":[]}]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := netinfo.ParseCentroids(strings.NewReader(string(b)), "fuzz")
		if err != nil {
			return
		}
		for cc, v := range c {
			if len(cc) != 2 || v.Lat < -90 || v.Lat > 90 || v.Lon < -180 || v.Lon > 180 || v.RadiusKm < 0 {
				t.Fatalf("%q %+v", cc, v)
			}
		}
	})
}
