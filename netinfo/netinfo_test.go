package netinfo_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"auditwatch/netinfo"
	"auditwatch/netinfo/netinfotest"
	"auditwatch/schema"
)

func openDefault(t testing.TB, mod func(*netinfo.Config, string)) *netinfo.DB {
	t.Helper()
	dir := t.TempDir()
	if err := netinfotest.Files(dir, netinfotest.Default); err != nil {
		t.Fatal(err)
	}
	cfg := netinfo.Config{Dir: dir}
	if mod != nil {
		mod(&cfg, dir)
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if !cfg.Enabled() {
		t.Fatal("default layout not found")
	}
	db, err := netinfo.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestLookupDefaultLayout(t *testing.T) {
	db := openDefault(t, nil)
	if v4, v6 := db.Ranges(); v4 != 3 || v6 != 1 {
		t.Fatalf("ranges %d/%d", v4, v6)
	}
	for _, tc := range []struct {
		ip      string
		service bool
		want    netinfo.Info
		where   string
	}{
		{"198.51.100.7", false, netinfo.Info{Label: "public", Country: "DE", ASN: 64500, ASOrg: "Example Carrier GmbH"}, "DE, AS64500 Example Carrier GmbH"},
		{"198.51.100.255", false, netinfo.Info{Label: "public", Country: "DE", ASN: 64500, ASOrg: "Example Carrier GmbH"}, ""},
		{"203.0.113.50", false, netinfo.Info{Label: "public", Country: "BR", ASN: 64511, ASOrg: "Hosting Example Ltda"}, ""},
		{"2001:db8:1::9", false, netinfo.Info{Label: "public", Country: "US", ASN: 64496, ASOrg: "Example Cloud, Inc."}, ""},
		{"::ffff:198.51.100.7", false, netinfo.Info{Label: "public", Country: "DE", ASN: 64500, ASOrg: "Example Carrier GmbH"}, ""},
		// documentation range no database places
		{"203.0.114.1", false, netinfo.Info{Label: "public"}, "location unknown"},
		{"2001:db8:2::1", false, netinfo.Info{Label: "reserved"}, "reserved address"},
		{"10.0.4.7", false, netinfo.Info{Label: "private"}, "private address"},
		{"100.64.1.1", false, netinfo.Info{Label: "private"}, ""},
		{"127.0.0.1", false, netinfo.Info{Label: "loopback"}, ""},
		{"fe80::1", false, netinfo.Info{Label: "link_local"}, ""},
		{"", true, netinfo.Info{Label: "aws_service"}, "AWS service"},
		{"", false, netinfo.Info{Label: "unknown"}, ""},
		{"not-an-ip", false, netinfo.Info{Label: "unknown"}, ""},
	} {
		got := db.Lookup(tc.ip, tc.service)
		if got != tc.want {
			t.Errorf("%q: got %+v, want %+v", tc.ip, got, tc.want)
		}
		if tc.where != "" && got.Where() != tc.where {
			t.Errorf("%q: where %q, want %q", tc.ip, got.Where(), tc.where)
		}
	}
	// a repeated address is answered from the cache
	db.Lookup("198.51.100.7", false)
	if hits, _ := db.CacheStats(); hits == 0 {
		t.Error("no cache hit for a repeated address")
	}
}

func TestMaxMindFiles(t *testing.T) {
	db := openDefault(t, func(c *netinfo.Config, dir string) {
		c.CountryDB = filepath.Join(dir, "city.mmdb") // a City database answers country too
		c.CityDB = filepath.Join(dir, "city.mmdb")
		c.ASNDB = []string{filepath.Join(dir, "asn.mmdb")}
	})
	in := db.Lookup("203.0.113.50", false)
	if in.Country != "BR" || in.City != "São Paulo" || !in.HasLoc || in.Lat != -23.55 || in.ASN != 64511 || in.ASOrg != "Hosting Example Ltda" {
		t.Fatalf("%+v", in)
	}
	if w := in.Where(); w != "São Paulo, BR, AS64511 Hosting Example Ltda" {
		t.Errorf("where %q", w)
	}
}

func TestEnrich(t *testing.T) {
	db := openDefault(t, nil)
	ev := schema.Event{SourceIP: "203.0.113.50"}
	db.Enrich(&ev)
	if ev.Country != "BR" || ev.ASN != 64511 || ev.ASOrg != "Hosting Example Ltda" || ev.NetLabel != "public" {
		t.Fatalf("%+v", ev)
	}
	svc := schema.Event{SourceIsService: true, SourceIPRaw: "secretsmanager.amazonaws.com"}
	db.Enrich(&svc)
	if svc.NetLabel != "aws_service" || svc.Country != "" {
		t.Fatalf("%+v", svc)
	}
}

func TestConfig(t *testing.T) {
	empty := t.TempDir()
	c := netinfo.Config{Dir: empty}
	c.SetDefaults()
	if c.Enabled() || c.Validate() != nil {
		t.Fatalf("an empty directory: enabled %v, err %v", c.Enabled(), c.Validate())
	}
	bad := netinfo.Config{CountryDB: filepath.Join(empty, "missing.mmdb"), ASNDB: []string{filepath.Join(empty, "x.txt")}}
	bad.SetDefaults()
	err := bad.Validate()
	for _, want := range []string{"country_db: no such file", "asn_db[0]: no such file", "asn_db[0]: want a .csv"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not say %q", err, want)
		}
	}
	t.Setenv(netinfo.DirEnv, "/srv/geo")
	e := netinfo.Config{}
	e.SetDefaults()
	if e.Dir != "/srv/geo" {
		t.Errorf("dir %q from %s", e.Dir, netinfo.DirEnv)
	}
}

func TestBadCSVNamesFileAndLine(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "asn-ipv4.csv")
	os.WriteFile(p, []byte("1.0.0.0,1.0.0.255,13335,\"Cloudflare, Inc.\"\n1.0.4.0,1.0.7.255,notanumber,X\n"), 0o644)
	_, err := netinfo.Open(netinfo.Config{ASNDB: []string{p}, CacheSize: 10})
	if !errors.Is(err, netinfo.ErrBadRow) || !strings.Contains(err.Error(), p+":2") {
		t.Fatalf("err %v", err)
	}
	// numeric (-num) files work too
	os.WriteFile(p, []byte("16777216,16777471,13335,\"Cloudflare, Inc.\"\n42540528726795050063891204319802818560,42540528806023212578155541913346768895,2500,WIDE\n"), 0o644)
	db, err := netinfo.Open(netinfo.Config{ASNDB: []string{p}, CacheSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	if in := db.Lookup("1.0.0.9", false); in.ASN != 13335 || in.ASOrg != "Cloudflare, Inc." {
		t.Fatalf("%+v", in)
	}
	if in := db.Lookup("2001:200::1", false); in.ASN != 2500 {
		t.Fatalf("%+v", in)
	}
}

func FuzzLookup(f *testing.F) {
	dir := f.TempDir()
	if err := netinfotest.Files(dir, netinfotest.Default); err != nil {
		f.Fatal(err)
	}
	c := netinfo.Config{Dir: dir}
	c.SetDefaults()
	db, err := netinfo.Open(c)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"198.51.100.7", "::ffff:1.2.3.4", "2001:db8:1::", "", "fe80::1%eth0", "1.2.3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ip string) {
		in := db.Lookup(ip, false)
		if in.Label == "" {
			t.Fatalf("%q: no label", ip)
		}
		if in.Label != "public" && (in.Country != "" || in.ASN != 0) {
			t.Fatalf("%q: %+v", ip, in)
		}
		_ = in.Where()
	})
}

// TestRealDatabases checks the databases `make geo` fetches (make test's
// setup fetches them and sets AUDITWATCH_GEO_TESTDIR) on addresses whose
// owners do not move: Google's and Cloudflare's public resolvers.
func TestRealDatabases(t *testing.T) {
	dir := os.Getenv("AUDITWATCH_GEO_TESTDIR")
	if dir == "" {
		if os.Getenv("AUDITWATCH_REQUIRE_INTEGRATION") != "" {
			t.Fatal("AUDITWATCH_GEO_TESTDIR is not set: scripts/setup/40-geo.sh fetches the databases")
		}
		t.Skip("AUDITWATCH_GEO_TESTDIR not set: AUDITWATCH_GEO_TESTDIR=$(scripts/fetch-geo.sh) checks the real databases")
	}
	c := netinfo.Config{Dir: dir}
	c.SetDefaults()
	if !c.Enabled() || len(c.ASNDB) != 2 {
		t.Fatalf("databases not found in %s: %+v", dir, c)
	}
	db, err := netinfo.Open(c)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if v4, v6 := db.Ranges(); v4 < 100_000 || v6 < 10_000 {
		t.Fatalf("only %d IPv4 and %d IPv6 ranges loaded", v4, v6)
	}
	for _, tc := range []struct {
		ip      string
		country string
		asn     uint32
	}{
		{"8.8.8.8", "US", 15169},
		{"1.1.1.1", "", 13335},
		{"2001:4860:4860::8888", "US", 15169},
	} {
		in := db.Lookup(tc.ip, false)
		if in.ASN != tc.asn || (tc.country != "" && in.Country != tc.country) || in.ASOrg == "" {
			t.Errorf("%s: %+v", tc.ip, in)
		}
	}
	// world-countries' centroids and areas (impossible travel by country)
	cs := db.Centroids()
	if len(cs) < 240 {
		t.Fatalf("only %d country centroids loaded from %s", len(cs), c.Centroids)
	}
	if us, de := cs["US"], cs["DE"]; us.Lat != 38 || us.Lon != -97 || us.RadiusKm < 1500 || us.RadiusKm > 2000 ||
		de.RadiusKm < 300 || de.RadiusKm > 400 {
		t.Errorf("US %+v DE %+v", us, de)
	}
}
