package netinfo

import (
	"container/list"
	"fmt"
	"math"
	"sync"
	"time"

	"auditwatch/schema"
)

// DetectorImpossibleTravel names the findings of Travel.
const DetectorImpossibleTravel = schema.DetectorImpossibleTravel

// TravelConfig configures impossible-travel detection (the `geo.travel:`
// part of the section). It needs coordinates, so it runs only with a city
// database (geo.city_db: MaxMind GeoLite2/GeoIP2 City).
type TravelConfig struct {
	// Disabled turns it off.
	Disabled bool `yaml:"disabled"`
	// MaxSpeedKmh is the fastest plausible travel (default 1000 km/h, an
	// airliner with margin).
	MaxSpeedKmh float64 `yaml:"max_speed_kmh"`
	// MinDistanceKm ignores jumps shorter than this (city databases place
	// one address in several cities over time; default 500 km).
	MinDistanceKm float64 `yaml:"min_distance_km"`
	// MaxCredentials bounds the credentials remembered (default 100,000).
	MaxCredentials int `yaml:"max_credentials"`
}

// SetDefaults fills unset fields.
func (c *TravelConfig) SetDefaults() {
	if c.MaxSpeedKmh == 0 {
		c.MaxSpeedKmh = 1000
	}
	if c.MinDistanceKm == 0 {
		c.MinDistanceKm = 500
	}
	if c.MaxCredentials == 0 {
		c.MaxCredentials = 100_000
	}
}

// Validate reports every problem with its field's path.
func (c TravelConfig) Validate() error {
	switch {
	case c.MaxSpeedKmh < 0:
		return fmt.Errorf("travel.max_speed_kmh: must be positive")
	case c.MinDistanceKm < 0:
		return fmt.Errorf("travel.min_distance_km: must not be negative")
	case c.MaxCredentials < 0:
		return fmt.Errorf("travel.max_credentials: must not be negative")
	}
	return nil
}

// Travel raises impossible_travel when consecutive uses of one credential
// (an AWS access key, a Vault token) come from places farther apart than
// anyone could travel in the time between them. The last place of each
// credential is kept in memory (bounded, least recently used first out):
// a restart forgets them, so a jump across a restart goes unseen.
type Travel struct {
	cfg TravelConfig

	mu sync.Mutex
	ll *list.List
	m  map[string]*list.Element
}

type lastPlace struct {
	key      string
	t        time.Time
	lat, lon float64
	ip, loc  string
}

// NewTravel makes the detector; the Info it is given must come from a DB
// with a city database (coordinates).
func NewTravel(cfg TravelConfig) *Travel {
	return &Travel{cfg: cfg, ll: list.New(), m: map[string]*list.Element{}}
}

// credential is what identifies one set of credentials in an event.
func credential(ev *schema.Event) string {
	switch {
	case ev.AccessKey != "":
		return "aws:" + ev.AccessKey
	case ev.TokenHMAC != "":
		return "vault:" + ev.TokenHMAC
	}
	return ""
}

// Check judges ev, whose address's context is in (what DB.Enrich
// returned), and appends a finding to out when its credential jumped
// impossibly far since its last use.
func (tr *Travel) Check(ev *schema.Event, in Info, out []schema.Finding) []schema.Finding {
	key := credential(ev)
	if key == "" || ev.SourceIsService {
		return out
	}
	if !in.HasLoc {
		return out
	}
	loc := in.Country
	if in.City != "" {
		loc = in.City + ", " + in.Country
	}
	cur := lastPlace{key: key, t: ev.Time, lat: in.Lat, lon: in.Lon, ip: ev.SourceIP, loc: loc}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	e, ok := tr.m[key]
	if !ok {
		tr.m[key] = tr.ll.PushFront(&cur)
		for tr.cfg.MaxCredentials > 0 && tr.ll.Len() > tr.cfg.MaxCredentials {
			old := tr.ll.Back()
			tr.ll.Remove(old)
			delete(tr.m, old.Value.(*lastPlace).key)
		}
		return out
	}
	tr.ll.MoveToFront(e)
	slot := e.Value.(*lastPlace)
	prev := *slot
	if ev.Time.Before(prev.t) {
		// older than the last use seen: judge nothing, keep the newest
		return out
	}
	*slot = cur
	km := haversineKm(prev.lat, prev.lon, cur.lat, cur.lon)
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
	return append(out, schema.Finding{
		ID: id, Detector: DetectorImpossibleTravel, Severity: schema.SeverityHigh, Time: t,
		Principal: ev.Principal, PrincipalName: ev.PrincipalName, Resource: ev.Resource, SourceIP: ev.SourceIP,
		Source: ev.Source, Account: ev.Account, Count: 1, EventIDs: []string{ev.ID},
		Summary: fmt.Sprintf("%s's credentials used from %s (%s) %s after %s (%s): %.0f km apart",
			name, cur.loc, cur.ip, gap.Round(time.Second), prev.loc, prev.ip, km),
		Reason: fmt.Sprintf("%.0f km in %s is %.0f km/h, faster than %.0f km/h: the same credentials are in two places at once",
			km, gap.Round(time.Second), math.Min(speed, 1e9), tr.cfg.MaxSpeedKmh),
		DedupeKey: schema.MakeID(DetectorImpossibleTravel, key, prev.ip, cur.ip),
		FirstTime: prev.t.UTC(), LastTime: t,
		Attributes: map[string]string{"previous_ip": prev.ip, "previous_location": prev.loc, "location": cur.loc,
			"distance_km": fmt.Sprintf("%.0f", km), "credential": key},
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
