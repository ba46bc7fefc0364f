// Package netinfotest writes small network-context databases for tests, in
// the formats netinfo reads: an ip-location-db style country database
// ({"country_code": …}), MaxMind-style City and ASN databases, and an
// ip-location-db ASN CSV file.
package netinfotest

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// Net is one network of a test database.
type Net struct {
	CIDR    string
	Country string
	ASN     uint32
	Org     string
	City    string
	Lat     float64
	Lon     float64
}

// Default is the networks the tests use: a company NAT in Germany, an
// attacker network in another country and AS, and an IPv6 network.
var Default = []Net{
	{CIDR: "198.51.100.0/24", Country: "DE", ASN: 64500, Org: "Example Carrier GmbH", City: "Frankfurt am Main", Lat: 50.11, Lon: 8.68},
	{CIDR: "203.0.113.0/24", Country: "BR", ASN: 64511, Org: "Hosting Example Ltda", City: "São Paulo", Lat: -23.55, Lon: -46.63},
	{CIDR: "192.0.2.0/24", Country: "DE", ASN: 64500, Org: "Example Carrier GmbH", City: "Berlin", Lat: 52.52, Lon: 13.40},
	{CIDR: "2001:db8:1::/48", Country: "US", ASN: 64496, Org: "Example Cloud, Inc.", City: "Ashburn", Lat: 39.04, Lon: -77.49},
}

func write(path, dbType string, nets []Net, rec func(Net) mmdbtype.Map) error {
	t, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: dbType, IncludeReservedNetworks: true, RecordSize: 28})
	if err != nil {
		return err
	}
	for _, n := range nets {
		_, ipn, err := net.ParseCIDR(n.CIDR)
		if err != nil {
			return err
		}
		if err := t.Insert(ipn, rec(n)); err != nil {
			return fmt.Errorf("insert %s: %w", n.CIDR, err)
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := t.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Files writes, in dir, the default layout of `make geo`
// (geo-whois-asn-country.mmdb, asn-ipv4.csv, asn-ipv6.csv) and MaxMind-style
// city.mmdb and asn.mmdb, for nets.
func Files(dir string, nets []Net) error {
	if err := write(filepath.Join(dir, "geo-whois-asn-country.mmdb"), "country", nets, func(n Net) mmdbtype.Map {
		return mmdbtype.Map{"country_code": mmdbtype.String(n.Country)}
	}); err != nil {
		return err
	}
	if err := write(filepath.Join(dir, "city.mmdb"), "GeoLite2-City", nets, func(n Net) mmdbtype.Map {
		return mmdbtype.Map{
			"city":     mmdbtype.Map{"names": mmdbtype.Map{"en": mmdbtype.String(n.City)}},
			"country":  mmdbtype.Map{"iso_code": mmdbtype.String(n.Country)},
			"location": mmdbtype.Map{"latitude": mmdbtype.Float64(n.Lat), "longitude": mmdbtype.Float64(n.Lon)},
		}
	}); err != nil {
		return err
	}
	if err := write(filepath.Join(dir, "asn.mmdb"), "GeoLite2-ASN", nets, func(n Net) mmdbtype.Map {
		return mmdbtype.Map{"autonomous_system_number": mmdbtype.Uint32(n.ASN), "autonomous_system_organization": mmdbtype.String(n.Org)}
	}); err != nil {
		return err
	}
	var v4, v6 strings.Builder
	for _, n := range nets {
		_, ipn, _ := net.ParseCIDR(n.CIDR)
		first, last := ipn.IP, lastAddr(ipn)
		org := n.Org
		if strings.ContainsAny(org, ",\"") {
			org = `"` + strings.ReplaceAll(org, `"`, `""`) + `"`
		}
		row := fmt.Sprintf("%s,%s,%d,%s\n", first, last, n.ASN, org)
		if first.To4() != nil {
			v4.WriteString(row)
		} else {
			v6.WriteString(row)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "asn-ipv4.csv"), []byte(v4.String()), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "asn-ipv6.csv"), []byte(v6.String()), 0o644)
}

func lastAddr(n *net.IPNet) net.IP {
	ip := n.IP.To4()
	if ip == nil {
		ip = n.IP.To16()
	}
	out := make(net.IP, len(ip))
	for i := range ip {
		out[i] = ip[i] | ^n.Mask[i]
	}
	return out
}

// Country is one entry of a test centroid file.
type Country struct {
	Code     string
	Lat, Lon float64
	AreaKm2  float64
}

// Countries are the countries of Default's networks and France, with
// world-countries' centroids and areas.
var Countries = []Country{
	{"DE", 51, 9, 357114}, {"BR", -10, -55, 8515767}, {"US", 38, -97, 9372610}, {"FR", 46, 2, 551695},
}

// Centroids writes countries.json into dir in world-countries' layout
// (with fields netinfo ignores, as the real file has).
func Centroids(dir string, cs []Country) error {
	var b strings.Builder
	b.WriteString("[\n")
	for i, c := range cs {
		if i > 0 {
			b.WriteString(",\n")
		}
		fmt.Fprintf(&b, `  {"name": {"common": %q}, "cca2": %q, "cca3": "XXX", "latlng": [%g, %g], "landlocked": false, "area": %g, "borders": []}`,
			c.Code+"-land", c.Code, c.Lat, c.Lon, c.AreaKm2)
	}
	b.WriteString("\n]\n")
	return os.WriteFile(filepath.Join(dir, "countries.json"), []byte(b.String()), 0o644)
}
