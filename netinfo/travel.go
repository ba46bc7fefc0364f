package netinfo

import (
	"container/list"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"

	"auditwatch/schema"
)

// DetectorImpossibleTravel names the findings of Travel.
const DetectorImpossibleTravel = schema.DetectorImpossibleTravel

// TravelConfig configures impossible-travel detection (the `geo.travel:`
// part of the section). It needs coordinates: a city database
// (geo.city_db: MaxMind GeoLite2/GeoIP2 City) or country centroids
// (geo.centroids, fetched by `make geo`), which place an address at its
// country's centroid with an allowance for the country's size.
type TravelConfig struct {
	// Disabled turns it off.
	Disabled bool `yaml:"disabled"`
	// MaxSpeedKmh is the fastest plausible travel (default 1000 km/h, an
	// airliner with margin).
	MaxSpeedKmh float64 `yaml:"max_speed_kmh"`
	// MinDistanceKm ignores jumps shorter than this (city databases place
	// one address in several cities over time; default 500 km). For a
	// place known by its country only, the distance judged is the one
	// between centroids less each country's allowance.
	MinDistanceKm float64 `yaml:"min_distance_km"`
	// CountryAllowance scales a country's allowance: the radius of a disc
	// of its area, times this (default 1.5: most of a compact country, not
	// all of an elongated one such as Chile or an archipelago).
	CountryAllowance float64 `yaml:"country_allowance"`
	// MaxCredentials bounds the credentials remembered (default 100,000).
	MaxCredentials int `yaml:"max_credentials"`
	// MaxBytes bounds the bytes of the places remembered, in memory and in
	// the state file (default 32 MiB); least recently used first out.
	MaxBytes int64 `yaml:"max_bytes"`
}

// SetDefaults fills unset fields.
func (c *TravelConfig) SetDefaults() {
	if c.MaxSpeedKmh == 0 {
		c.MaxSpeedKmh = 1000
	}
	if c.MinDistanceKm == 0 {
		c.MinDistanceKm = 500
	}
	if c.CountryAllowance == 0 {
		c.CountryAllowance = 1.5
	}
	if c.MaxCredentials == 0 {
		c.MaxCredentials = 100_000
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = 32 << 20
	}
}

// Validate reports every problem with its field's path.
func (c TravelConfig) Validate() error {
	switch {
	case c.MaxSpeedKmh < 0:
		return fmt.Errorf("travel.max_speed_kmh: must be positive")
	case c.MinDistanceKm < 0:
		return fmt.Errorf("travel.min_distance_km: must not be negative")
	case c.CountryAllowance < 0:
		return fmt.Errorf("travel.country_allowance: must not be negative")
	case c.MaxCredentials < 0:
		return fmt.Errorf("travel.max_credentials: must not be negative")
	case c.MaxBytes < 0:
		return fmt.Errorf("travel.max_bytes: must not be negative")
	}
	return nil
}

// TravelOptions are what NewTravel needs besides its config.
type TravelOptions struct {
	// Centroids place addresses whose city is unknown (nil: such
	// addresses are not judged).
	Centroids Centroids
	// Dir keeps the last places in TravelFileName, so a restart
	// remembers them ("" keeps them in memory only).
	Dir string
}

// TravelFileName is the last places' state file in TravelOptions.Dir.
const TravelFileName = "travel.db"

// Travel raises impossible_travel when consecutive uses of one credential
// (an AWS access key, a Vault token) come from places farther apart than
// anyone could travel in the time between them. The last place of each
// credential is kept in memory, bounded in count and bytes (least
// recently used first out), and written to a bbolt file at each Flush
// (the detect stage's checkpoint), so a restart remembers them.
type Travel struct {
	cfg       TravelConfig
	centroids Centroids

	mu    sync.Mutex
	ll    *list.List
	m     map[string]*list.Element
	bytes int64
	db    *bolt.DB
	dirty map[string]bool // key -> true: write, false: delete
}

type lastPlace struct {
	key      string
	t        time.Time
	lat, lon float64
	radius   float64 // km of allowance: 0 for a city
	ip, loc  string
}

// Bounds of what one remembered place holds (every field comes from a
// log and is attacker-controlled).
const (
	maxKeyLen = 160
	maxIPLen  = 64
	maxLocLen = 96
	// placeOverhead approximates a place's fixed cost: list element, map
	// entry, times and coordinates.
	placeOverhead = 160
)

func (p *lastPlace) size() int64 {
	return int64(len(p.key) + len(p.ip) + len(p.loc) + placeOverhead)
}

var bPlaces = []byte("places")

// storedPlace is a place in the state file.
type storedPlace struct {
	T   int64   `json:"t"` // unix nanoseconds
	Lat float64 `json:"lat"`
	Lon float64 `json:"lon"`
	R   float64 `json:"r,omitempty"`
	IP  string  `json:"ip"`
	Loc string  `json:"loc"`
}

// NewTravel makes the detector and, with opts.Dir, restores the places
// saved there. The Info given to Check must come from a DB with a city
// database or opts.Centroids.
func NewTravel(cfg TravelConfig, opts TravelOptions) (*Travel, error) {
	tr := &Travel{cfg: cfg, centroids: opts.Centroids, ll: list.New(), m: map[string]*list.Element{}, dirty: map[string]bool{}}
	if opts.Dir == "" {
		return tr, nil
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("netinfo: travel state: %w", err)
	}
	path := filepath.Join(opts.Dir, TravelFileName)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("netinfo: travel state %s: %w", path, err)
	}
	var places []*lastPlace
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bPlaces)
		if err != nil {
			return err
		}
		return b.ForEach(func(k, v []byte) error {
			var sp storedPlace
			if err := json.Unmarshal(v, &sp); err != nil {
				return fmt.Errorf("place of %q: %w", k, err)
			}
			places = append(places, &lastPlace{key: string(k), t: time.Unix(0, sp.T).UTC(), lat: sp.Lat, lon: sp.Lon,
				radius: sp.R, ip: clip(sp.IP, maxIPLen), loc: clip(sp.Loc, maxLocLen)})
			return nil
		})
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("netinfo: travel state %s: %w", path, err)
	}
	tr.db = db
	// oldest first, so the newest end up most recently used
	slices.SortFunc(places, func(a, b *lastPlace) int { return a.t.Compare(b.t) })
	for _, p := range places {
		tr.m[p.key] = tr.ll.PushFront(p)
		tr.bytes += p.size()
	}
	tr.evict()
	return tr, nil
}

// Len is the number of credentials remembered; Bytes their approximate size.
func (tr *Travel) Len() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.ll.Len()
}

// Bytes is the approximate size of the places remembered.
func (tr *Travel) Bytes() int64 {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.bytes
}

// evict drops the least recently used places past the bounds.
func (tr *Travel) evict() {
	for tr.ll.Len() > 0 && (tr.cfg.MaxCredentials > 0 && tr.ll.Len() > tr.cfg.MaxCredentials ||
		tr.cfg.MaxBytes > 0 && tr.bytes > tr.cfg.MaxBytes) {
		old := tr.ll.Back()
		p := old.Value.(*lastPlace)
		tr.ll.Remove(old)
		delete(tr.m, p.key)
		tr.bytes -= p.size()
		if tr.db != nil {
			tr.dirty[p.key] = false
		}
	}
}

// Flush writes the places changed since the last Flush to the state file
// (the detect stage calls it at each checkpoint, before the input position
// is saved).
func (tr *Travel) Flush() error {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.db == nil || len(tr.dirty) == 0 {
		return nil
	}
	err := tr.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bPlaces)
		for k, put := range tr.dirty {
			if !put {
				if err := b.Delete([]byte(k)); err != nil {
					return err
				}
				continue
			}
			e, ok := tr.m[k]
			if !ok {
				continue
			}
			p := e.Value.(*lastPlace)
			v, err := json.Marshal(storedPlace{T: p.t.UnixNano(), Lat: p.lat, Lon: p.lon, R: p.radius, IP: p.ip, Loc: p.loc})
			if err != nil {
				return err
			}
			if err := b.Put([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("netinfo: travel state: %w", err)
	}
	clear(tr.dirty)
	return nil
}

// Close flushes and closes the state file.
func (tr *Travel) Close() error {
	if tr == nil {
		return nil
	}
	err := tr.Flush()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.db != nil {
		err = errors.Join(err, tr.db.Close())
		tr.db = nil
	}
	return err
}

// credential is what identifies one set of credentials in an event; a
// key longer than any real one is hashed to bound its size.
func credential(ev *schema.Event) string {
	var k string
	switch {
	case ev.AccessKey != "":
		k = "aws:" + ev.AccessKey
	case ev.TokenHMAC != "":
		k = "vault:" + ev.TokenHMAC
	default:
		return ""
	}
	if len(k) > maxKeyLen {
		k = "sha256:" + schema.MakeID(k)
	}
	return k
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// place is where in puts the event: a city's coordinates, else its
// country's centroid with the country's allowance.
func (tr *Travel) place(in Info) (lat, lon, radius float64, loc string, ok bool) {
	if in.HasLoc {
		loc = in.Country
		if in.City != "" {
			loc = in.City + ", " + in.Country
		}
		return in.Lat, in.Lon, 0, loc, true
	}
	if in.Country == "" || tr.centroids == nil {
		return 0, 0, 0, "", false
	}
	c, found := tr.centroids[in.Country]
	if !found {
		return 0, 0, 0, "", false
	}
	return c.Lat, c.Lon, c.RadiusKm * tr.cfg.CountryAllowance, in.Country, true
}

// Check judges ev, whose address's context is in (what DB.Enrich
// returned), and appends a finding to out when its credential jumped
// impossibly far since its last use.
func (tr *Travel) Check(ev *schema.Event, in Info, out []schema.Finding) []schema.Finding {
	key := credential(ev)
	if key == "" || ev.SourceIsService {
		return out
	}
	lat, lon, radius, loc, ok := tr.place(in)
	if !ok {
		return out
	}
	cur := lastPlace{key: key, t: ev.Time, lat: lat, lon: lon, radius: radius, ip: clip(ev.SourceIP, maxIPLen), loc: clip(loc, maxLocLen)}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	e, ok := tr.m[key]
	if !ok {
		p := cur
		tr.m[key] = tr.ll.PushFront(&p)
		tr.bytes += p.size()
		if tr.db != nil {
			tr.dirty[key] = true
		}
		tr.evict()
		return out
	}
	tr.ll.MoveToFront(e)
	slot := e.Value.(*lastPlace)
	prev := *slot
	if ev.Time.Before(prev.t) {
		// older than the last use seen: judge nothing, keep the newest
		return out
	}
	if ev.Time.Equal(prev.t) && prev.ip == cur.ip {
		return out // the same use again (a replay after a restart)
	}
	tr.bytes += cur.size() - prev.size()
	*slot = cur
	if tr.db != nil {
		tr.dirty[key] = true
	}
	tr.evict()
	centres := haversineKm(prev.lat, prev.lon, cur.lat, cur.lon)
	allowance := prev.radius + cur.radius
	km := centres - allowance
	if km < tr.cfg.MinDistanceKm {
		return out
	}
	gap := ev.Time.Sub(prev.t)
	speed := math.Inf(1)
	if gap > 0 {
		speed = km / gap.Hours()
	}
	if speed <= tr.cfg.MaxSpeedKmh {
		return out
	}
	t := ev.Time.UTC()
	id := schema.MakeID(DetectorImpossibleTravel, key, prev.ip, cur.ip, ev.ID)
	name := ev.PrincipalName
	if name == "" {
		name = ev.Principal
	}
	attrs := map[string]string{"previous_ip": prev.ip, "previous_location": prev.loc, "location": cur.loc,
		"distance_km": fmt.Sprintf("%.0f", km), "credential": key}
	apart := fmt.Sprintf("%.0f km apart", km)
	if allowance > 0 {
		attrs["centroid_distance_km"] = fmt.Sprintf("%.0f", centres)
		attrs["country_allowance_km"] = fmt.Sprintf("%.0f", allowance)
		apart = fmt.Sprintf("at least %.0f km apart (%.0f km between country centres less %.0f km for the countries' size)", km, centres, allowance)
	}
	return append(out, schema.Finding{
		ID: id, Detector: DetectorImpossibleTravel, Severity: schema.SeverityHigh, Time: t,
		Principal: ev.Principal, PrincipalName: ev.PrincipalName, Resource: ev.Resource, SourceIP: ev.SourceIP,
		Source: ev.Source, Account: ev.Account, Count: 1, EventIDs: []string{ev.ID},
		Summary: fmt.Sprintf("%s's credentials used from %s (%s) %s after %s (%s): %s",
			name, cur.loc, cur.ip, gap.Round(time.Second), prev.loc, prev.ip, apart),
		Reason: fmt.Sprintf("%.0f km in %s is %.0f km/h, faster than %.0f km/h: the same credentials are in two places at once",
			km, gap.Round(time.Second), math.Min(speed, 1e9), tr.cfg.MaxSpeedKmh),
		DedupeKey: schema.MakeID(DetectorImpossibleTravel, key, prev.ip, cur.ip),
		FirstTime: prev.t.UTC(), LastTime: t,
		Attributes: attrs,
	})
}

// haversineKm is the great-circle distance between two points.
func haversineKm(lat1, lon1, lat2, lon2 float64) float64 {
	const r = 6371.0
	rad := math.Pi / 180
	dlat := (lat2 - lat1) * rad
	dlon := (lon2 - lon1) * rad
	a := math.Sin(dlat/2)*math.Sin(dlat/2) + math.Cos(lat1*rad)*math.Cos(lat2*rad)*math.Sin(dlon/2)*math.Sin(dlon/2)
	return 2 * r * math.Asin(math.Min(1, math.Sqrt(a)))
}
