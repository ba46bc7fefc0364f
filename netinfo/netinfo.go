// Package netinfo owns network context for source addresses, read offline
// from local databases: the country, the autonomous system (number and
// organisation) and, where a city database is configured, the city and its
// coordinates; and the label of addresses that have no place (private,
// loopback, link-local, AWS-service, unknown).
//
// Databases, in the formats their publishers ship:
//   - a country database in MaxMind DB format: ip-location-db's
//     geo-whois-asn-country (records {"country_code": "US"}, CC0, the
//     default, fetched by `make geo` from npm), or MaxMind GeoLite2/GeoIP2
//     Country or City ({"country": {"iso_code": "US"}});
//   - AS numbers and names: ip-location-db's asn CSV files (inclusive
//     ranges "start,end,asn,organisation", CC BY 4.0 by RouteViews, DB-IP
//     and NRO: the attribution is in NOTICE and `auditwatch --version`), read
//     into a compact sorted range table, or a MaxMind GeoLite2/GeoIP2 ASN
//     database;
//   - optionally a MaxMind GeoLite2/GeoIP2 City database (city name and
//     coordinates);
//   - country centroids and areas (world-countries' countries.json, ODbL,
//     fetched by `make geo`): impossible travel's coarse places where no
//     city is known.
//
// Lookups are cached per address (bounded), so enriching a stream with
// repeating addresses costs a map lookup per event.
package netinfo

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	maxminddb "github.com/oschwald/maxminddb-golang/v2"

	"auditwatch/schema"
)

// Labels of an address.
const (
	LabelPublic    = "public"
	LabelPrivate   = "private"
	LabelLoopback  = "loopback"
	LabelLinkLocal = "link_local"
	LabelService   = "aws_service" // CloudTrail: an AWS service made the call
	LabelUnknown   = "unknown"     // no address, or not one
	LabelReserved  = "reserved"    // documentation, multicast, CGNAT, unspecified
)

// Info is what is known of an address.
type Info struct {
	Label   string  `json:"label"`
	Country string  `json:"country,omitempty"` // ISO 3166-1 alpha-2
	ASN     uint32  `json:"asn,omitempty"`
	ASOrg   string  `json:"as_org,omitempty"`
	City    string  `json:"city,omitempty"`
	Lat     float64 `json:"lat,omitempty"`
	Lon     float64 `json:"lon,omitempty"`
	HasLoc  bool    `json:"-"` // Lat/Lon are a city's
}

// Where describes the address for people: "US, AS15169 Google LLC",
// "private address", "AWS service".
func (i Info) Where() string {
	switch i.Label {
	case LabelPrivate:
		return "private address"
	case LabelLoopback:
		return "loopback address"
	case LabelLinkLocal:
		return "link-local address"
	case LabelService:
		return "AWS service"
	case LabelUnknown:
		return "unknown address"
	case LabelReserved:
		return "reserved address"
	}
	var parts []string
	loc := i.Country
	if i.City != "" {
		loc = i.City + ", " + i.Country
	}
	if loc != "" {
		parts = append(parts, loc)
	}
	if i.ASN != 0 {
		as := "AS" + strconv.FormatUint(uint64(i.ASN), 10)
		if i.ASOrg != "" {
			as += " " + i.ASOrg
		}
		parts = append(parts, as)
	}
	if len(parts) == 0 {
		return "location unknown"
	}
	return strings.Join(parts, ", ")
}

// DB answers lookups. Safe for concurrent use.
type DB struct {
	country     *maxminddb.Reader
	city        *maxminddb.Reader
	asnMMDB     *maxminddb.Reader
	centroids   Centroids
	v4          []range4
	v6          []range6
	orgs        []string
	cacheMax    int
	mu          sync.Mutex
	cache       map[netip.Addr]Info
	cacheHits   uint64
	cacheMisses uint64
}

type range4 struct {
	start, end uint32
	asn        uint32
	org        uint32 // index into orgs
}

type range6 struct {
	start, end [16]byte
	asn        uint32
	org        uint32
}

// Open opens the databases cfg names. cfg must be defaulted and validated.
func Open(cfg Config) (*DB, error) {
	d := &DB{cacheMax: cfg.CacheSize, cache: map[netip.Addr]Info{}}
	var err error
	if cfg.CountryDB != "" {
		if d.country, err = maxminddb.Open(cfg.CountryDB); err != nil {
			return nil, fmt.Errorf("netinfo: country database %s: %w", cfg.CountryDB, err)
		}
	}
	if cfg.CityDB != "" {
		if d.city, err = maxminddb.Open(cfg.CityDB); err != nil {
			d.Close()
			return nil, fmt.Errorf("netinfo: city database %s: %w", cfg.CityDB, err)
		}
	}
	if cfg.Centroids != "" {
		if d.centroids, err = LoadCentroids(cfg.Centroids); err != nil {
			d.Close()
			return nil, err
		}
	}
	orgIdx := map[string]uint32{}
	for _, p := range cfg.ASNDB {
		if strings.HasSuffix(p, ".mmdb") {
			if d.asnMMDB, err = maxminddb.Open(p); err != nil {
				d.Close()
				return nil, fmt.Errorf("netinfo: ASN database %s: %w", p, err)
			}
			continue
		}
		if err := d.loadASNCSV(p, orgIdx); err != nil {
			d.Close()
			return nil, err
		}
	}
	slices.SortFunc(d.v4, func(a, b range4) int { return cmpU32(a.start, b.start) })
	slices.SortFunc(d.v6, func(a, b range6) int { return bytes.Compare(a.start[:], b.start[:]) })
	return d, nil
}

func cmpU32(a, b uint32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Close releases the databases.
func (d *DB) Close() error {
	var errs []error
	for _, r := range []*maxminddb.Reader{d.country, d.city, d.asnMMDB} {
		if r != nil {
			errs = append(errs, r.Close())
		}
	}
	return errors.Join(errs...)
}

// ErrBadRow marks a malformed row of an ASN CSV file.
var ErrBadRow = errors.New("bad ASN row")

// loadASNCSV reads "start,end,asn,organisation" rows (addresses, or
// numbers in the -num files). The first three fields are never quoted;
// the organisation is the rest of the line, CSV-quoted when it holds a
// comma or a quote. Read by hand: encoding/csv took 1.5 s for the 515,000
// rows of the default files.
func (d *DB) loadASNCSV(path string, orgIdx map[string]uint32) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("netinfo: ASN database: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(bufio.NewReaderSize(f, 1<<20))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	line := 0
	var lastOrg uint32
	var lastOK bool
	var lastOrgName []byte
	bad := func(format string, args ...any) error {
		return fmt.Errorf("netinfo: ASN database %s:%d: %w: %s", path, line, ErrBadRow, fmt.Sprintf(format, args...))
	}
	for sc.Scan() {
		line++
		row := bytes.TrimRight(sc.Bytes(), "\r")
		if len(row) == 0 {
			continue
		}
		var fields [3][]byte
		rest := row
		for k := range fields {
			c := bytes.IndexByte(rest, ',')
			if c < 0 {
				if k < 2 {
					return bad("want start,end,asn[,organisation]")
				}
				fields[k], rest = rest, nil
				break
			}
			fields[k], rest = rest[:c], rest[c+1:]
		}
		asn, err := strconv.ParseUint(string(fields[2]), 10, 32)
		if err != nil {
			return bad("AS number %q", fields[2])
		}
		org, err := unquoteCSV(rest)
		if err != nil {
			return bad("organisation: %v", err)
		}
		// rows of one organisation come together: most need no map lookup
		oi, ok := lastOrg, lastOK && bytes.Equal(org, lastOrgName)
		if !ok {
			oi, ok = orgIdx[string(org)]
		}
		if !ok {
			oi = uint32(len(d.orgs))
			d.orgs = append(d.orgs, string(org))
			orgIdx[string(org)] = oi
		}
		lastOrg, lastOK, lastOrgName = oi, true, append(lastOrgName[:0], org...)
		s, e, err := parseRange(string(fields[0]), string(fields[1]))
		if err != nil {
			return bad("%v", err)
		}
		if s.Is4() {
			d.v4 = append(d.v4, range4{start: u32(s), end: u32(e), asn: uint32(asn), org: oi})
		} else {
			d.v6 = append(d.v6, range6{start: s.As16(), end: e.As16(), asn: uint32(asn), org: oi})
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("netinfo: ASN database %s: %w", path, err)
	}
	return nil
}

// unquoteCSV reads one CSV field that may be quoted ("a ""b"", c").
func unquoteCSV(b []byte) ([]byte, error) {
	if len(b) == 0 || b[0] != '"' {
		if bytes.IndexByte(b, '"') >= 0 {
			return nil, errors.New("bare quote in an unquoted field")
		}
		return b, nil
	}
	if len(b) < 2 || b[len(b)-1] != '"' {
		return nil, errors.New("unterminated quoted field")
	}
	in := b[1 : len(b)-1]
	if bytes.IndexByte(in, '"') < 0 {
		return in, nil
	}
	out := make([]byte, 0, len(in))
	for i := 0; i < len(in); i++ {
		if in[i] == '"' {
			if i+1 >= len(in) || in[i+1] != '"' {
				return nil, errors.New("bare quote in a quoted field")
			}
			i++
		}
		out = append(out, in[i])
	}
	return out, nil
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// parseRange reads an inclusive range as addresses or as numbers (an
// IPv4 number fits 32 bits; larger numbers are IPv6).
func parseRange(a, b string) (netip.Addr, netip.Addr, error) {
	s, err1 := parseEnd(a)
	e, err2 := parseEnd(b)
	if err := errors.Join(err1, err2); err != nil {
		return s, e, err
	}
	if s.Is4() != e.Is4() || e.Less(s) {
		return s, e, fmt.Errorf("range %s-%s is not one family in order", a, b)
	}
	return s, e, nil
}

func parseEnd(s string) (netip.Addr, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), nil
	}
	n, ok := new(big.Int).SetString(s, 10)
	if !ok || n.Sign() < 0 || n.BitLen() > 128 {
		return netip.Addr{}, fmt.Errorf("not an address or number: %q", s)
	}
	if n.BitLen() <= 32 {
		v := uint32(n.Uint64())
		return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), nil
	}
	var b [16]byte
	n.FillBytes(b[:])
	return netip.AddrFrom16(b), nil
}

// Label classifies an address string as the normalized event holds it
// ("" for none); isService marks CloudTrail's AWS-service callers.
func Label(ip string, isService bool) (netip.Addr, string) {
	if isService {
		return netip.Addr{}, LabelService
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return netip.Addr{}, LabelUnknown
	}
	a = a.Unmap()
	switch {
	case a.IsLoopback():
		return a, LabelLoopback
	case a.IsPrivate() || cgnat.Contains(a):
		return a, LabelPrivate
	case a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast():
		return a, LabelLinkLocal
	case a.IsUnspecified() || a.IsMulticast() || isDocumentation(a):
		return a, LabelReserved
	}
	return a, LabelPublic
}

var (
	cgnat = netip.MustParsePrefix("100.64.0.0/10")
	docs  = []netip.Prefix{
		netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("198.51.100.0/24"),
		netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8::/32"),
	}
)

// isDocumentation reports the RFC 5737 / RFC 3849 example ranges. They are
// labelled reserved only when no database places them (tests and examples
// use them as public addresses).
func isDocumentation(a netip.Addr) bool {
	for _, p := range docs {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Lookup returns what is known of ip (as the normalized event holds it).
func (d *DB) Lookup(ip string, isService bool) Info {
	a, label := Label(ip, isService)
	if label != LabelPublic && label != LabelReserved {
		return Info{Label: label}
	}
	d.mu.Lock()
	if in, ok := d.cache[a]; ok {
		d.cacheHits++
		d.mu.Unlock()
		return in
	}
	d.cacheMisses++
	d.mu.Unlock()
	in := d.lookup(a)
	if label == LabelReserved && in.Country == "" && in.ASN == 0 {
		in.Label = LabelReserved
	}
	d.mu.Lock()
	if len(d.cache) >= d.cacheMax {
		clear(d.cache) // cheap and bounded; the working set refills at once
	}
	d.cache[a] = in
	d.mu.Unlock()
	return in
}

func (d *DB) lookup(a netip.Addr) Info {
	in := Info{Label: LabelPublic}
	if d.country != nil {
		r := d.country.Lookup(a)
		var cc string
		if r.DecodePath(&cc, "country_code") != nil || cc == "" {
			_ = r.DecodePath(&cc, "country", "iso_code")
		}
		in.Country = cc
	}
	if d.city != nil {
		r := d.city.Lookup(a)
		var rec struct {
			City struct {
				Names map[string]string `maxminddb:"names"`
			} `maxminddb:"city"`
			Country struct {
				ISOCode string `maxminddb:"iso_code"`
			} `maxminddb:"country"`
			Location struct {
				Lat *float64 `maxminddb:"latitude"`
				Lon *float64 `maxminddb:"longitude"`
			} `maxminddb:"location"`
		}
		if r.Decode(&rec) == nil {
			in.City = rec.City.Names["en"]
			if in.Country == "" {
				in.Country = rec.Country.ISOCode
			}
			if rec.Location.Lat != nil && rec.Location.Lon != nil {
				in.Lat, in.Lon, in.HasLoc = *rec.Location.Lat, *rec.Location.Lon, true
			}
		}
	}
	if d.asnMMDB != nil {
		r := d.asnMMDB.Lookup(a)
		var rec struct {
			ASN uint32 `maxminddb:"autonomous_system_number"`
			Org string `maxminddb:"autonomous_system_organization"`
		}
		if r.Decode(&rec) == nil {
			in.ASN, in.ASOrg = rec.ASN, rec.Org
		}
	}
	if in.ASN == 0 {
		in.ASN, in.ASOrg = d.asnRange(a)
	}
	return in
}

func (d *DB) asnRange(a netip.Addr) (uint32, string) {
	if a.Is4() {
		v := u32(a)
		i, _ := slices.BinarySearchFunc(d.v4, v, func(r range4, t uint32) int { return cmpU32(r.start, t) })
		// i is the first range starting after v (or at it)
		if i < len(d.v4) && d.v4[i].start == v {
			return d.v4[i].asn, d.orgs[d.v4[i].org]
		}
		if i > 0 && v <= d.v4[i-1].end {
			return d.v4[i-1].asn, d.orgs[d.v4[i-1].org]
		}
		return 0, ""
	}
	v := a.As16()
	i, _ := slices.BinarySearchFunc(d.v6, v, func(r range6, t [16]byte) int { return bytes.Compare(r.start[:], t[:]) })
	if i < len(d.v6) && d.v6[i].start == v {
		return d.v6[i].asn, d.orgs[d.v6[i].org]
	}
	if i > 0 && bytes.Compare(v[:], d.v6[i-1].end[:]) <= 0 {
		return d.v6[i-1].asn, d.orgs[d.v6[i-1].org]
	}
	return 0, ""
}

// HasCity reports whether a city database (coordinates) is open.
func (d *DB) HasCity() bool { return d.city != nil }

// Centroids returns the country centroids loaded (nil without a file).
func (d *DB) Centroids() Centroids { return d.centroids }

// Ranges returns how many ASN ranges are loaded (IPv4, IPv6).
func (d *DB) Ranges() (int, int) { return len(d.v4), len(d.v6) }

// Enrich sets ev's network context (Country, ASN, ASOrg, NetLabel) from
// its source address and returns the whole lookup (city and coordinates
// too, for Travel), so the address is looked up once per event.
func (d *DB) Enrich(ev *schema.Event) Info {
	in := d.Lookup(ev.SourceIP, ev.SourceIsService)
	ev.NetLabel, ev.Country, ev.ASN, ev.ASOrg = in.Label, in.Country, int(in.ASN), in.ASOrg
	return in
}

// CacheStats returns the lookup cache's hits and misses.
func (d *DB) CacheStats() (hits, misses uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cacheHits, d.cacheMisses
}
