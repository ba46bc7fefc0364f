package netinfo

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
)

// DefaultCentroidFile is the country-centroid file `make geo` fetches
// (world-countries' countries.json) into the geo directory.
const DefaultCentroidFile = "countries.json"

// Centroid is a country's representative point and size: RadiusKm is the
// radius of a disc of the country's area, the allowance impossible travel
// subtracts for each end of a jump judged by country only.
type Centroid struct {
	Lat, Lon float64
	RadiusKm float64
}

// Centroids maps ISO 3166-1 alpha-2 codes to their centroid.
type Centroids map[string]Centroid

// ErrBadCentroid marks an entry of a centroid file that cannot be used.
var ErrBadCentroid = errors.New("bad country entry")

// LoadCentroids reads a centroid file: a JSON array of objects with
// "cca2" (ISO 3166-1 alpha-2), "latlng" ([latitude, longitude]) and
// "area" (km²), as world-countries' countries.json has them; other fields
// are ignored.
func LoadCentroids(path string) (Centroids, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("netinfo: country centroids: %w", err)
	}
	defer f.Close()
	return ParseCentroids(bufio.NewReaderSize(f, 1<<16), path)
}

// maxCentroidBytes bounds what ParseCentroids reads (the real file is
// 1.4 MB).
const maxCentroidBytes = 64 << 20

// ParseCentroids reads a centroid file from r; name labels errors. An
// entry with a bad code or coordinates is an error naming its index; a
// missing or negative area (an unknown size) gives radius 0.
func ParseCentroids(r io.Reader, name string) (Centroids, error) {
	var entries []struct {
		CCA2   string    `json:"cca2"`
		LatLng []float64 `json:"latlng"`
		Area   float64   `json:"area"`
	}
	dec := json.NewDecoder(io.LimitReader(r, maxCentroidBytes))
	if err := dec.Decode(&entries); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("netinfo: country centroids %s: byte %d: %w", name, se.Offset, err)
		}
		return nil, fmt.Errorf("netinfo: country centroids %s: %w", name, err)
	}
	out := make(Centroids, len(entries))
	for i, e := range entries {
		cc := strings.ToUpper(e.CCA2)
		switch {
		case len(cc) != 2 || cc[0] < 'A' || cc[0] > 'Z' || cc[1] < 'A' || cc[1] > 'Z':
			return nil, fmt.Errorf("netinfo: country centroids %s: entry %d: cca2 %.20q: %w", name, i, e.CCA2, ErrBadCentroid)
		case len(e.LatLng) != 2 || !(e.LatLng[0] >= -90 && e.LatLng[0] <= 90) || !(e.LatLng[1] >= -180 && e.LatLng[1] <= 180):
			return nil, fmt.Errorf("netinfo: country centroids %s: entry %d (%s): latlng %v: %w", name, i, cc, e.LatLng, ErrBadCentroid)
		}
		c := Centroid{Lat: e.LatLng[0], Lon: e.LatLng[1]}
		if e.Area > 0 && !math.IsInf(e.Area, 0) {
			c.RadiusKm = math.Sqrt(e.Area / math.Pi)
		}
		out[cc] = c
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("netinfo: country centroids %s: no entries", name)
	}
	return out, nil
}
