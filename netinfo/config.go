package netinfo

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"

	"auditwatch/config"
)

// Default file names, as `make geo` (scripts/fetch-geo.sh) lays them out
// in its directory.
const (
	DefaultCountryFile = "geo-whois-asn-country.mmdb"
	DefaultASNv4File   = "asn-ipv4.csv"
	DefaultASNv6File   = "asn-ipv6.csv"
	// DirEnv names the directory `make geo` fills (scripts/fetch-geo.sh
	// prints it); used when `geo.dir` is unset.
	DirEnv = "AUDITWATCH_GEO_DIR"
)

// Attribution is the credit the default AS data's licence (CC BY 4.0)
// asks for; `auditwatch version` prints it and NOTICE carries it.
const Attribution = "Network data: AS numbers and names from @ip-location-db/asn (CC BY 4.0: RouteViews, DB-IP, NRO); countries from @ip-location-db/geo-whois-asn-country-mmdb (CC0); country centroids and areas from world-countries by Mohammed Le Doze (ODbL 1.0, https://github.com/mledoze/countries)."

// Config is the `geo:` section.
type Config struct {
	// Disabled turns network context off.
	Disabled bool `yaml:"disabled"`
	// Dir holds the default databases (DefaultCountryFile, DefaultASNv4File,
	// DefaultASNv6File). Default: $AUDITWATCH_GEO_DIR, else .cache/geo/current
	// (where `make geo` puts them).
	Dir string `yaml:"dir"`
	// CountryDB, ASNDB and CityDB name databases explicitly (MaxMind
	// GeoLite2/GeoIP2 Country, City and ASN files are accepted; ASNDB also
	// takes ip-location-db CSV files). They override Dir.
	CountryDB string   `yaml:"country_db"`
	ASNDB     []string `yaml:"asn_db"`
	CityDB    string   `yaml:"city_db"`
	// Centroids names a country-centroid file (world-countries'
	// countries.json: code, latitude/longitude, area), used by impossible
	// travel where no city is known. Default: Dir's countries.json when
	// `make geo` fetched it.
	Centroids string `yaml:"centroids"`
	// CacheSize bounds the addresses remembered (default 65,536).
	CacheSize int `yaml:"cache_size"`
	// Travel: impossible travel between consecutive uses of one
	// credential (needs CityDB or Centroids).
	Travel TravelConfig `yaml:"travel"`
}

// SetDefaults fills unset fields; the database paths come from Dir when
// none is named and the files are there.
func (c *Config) SetDefaults() {
	if c.CacheSize == 0 {
		c.CacheSize = 65536
	}
	c.Travel.SetDefaults()
	if c.Dir == "" {
		c.Dir = os.Getenv(DirEnv)
	}
	if c.Dir == "" {
		c.Dir = filepath.Join(".cache", "geo", "current")
	}
	if c.Centroids == "" {
		if p := filepath.Join(c.Dir, DefaultCentroidFile); exists(p) {
			c.Centroids = p
		}
	}
	if c.CountryDB == "" && len(c.ASNDB) == 0 && c.CityDB == "" {
		if p := filepath.Join(c.Dir, DefaultCountryFile); exists(p) {
			c.CountryDB = p
		}
		for _, f := range []string{DefaultASNv4File, DefaultASNv6File} {
			if p := filepath.Join(c.Dir, f); exists(p) {
				c.ASNDB = append(c.ASNDB, p)
			}
		}
	}
}

func exists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// Enabled reports whether any database is configured.
func (c Config) Enabled() bool {
	return !c.Disabled && (c.CountryDB != "" || len(c.ASNDB) > 0 || c.CityDB != "")
}

// Validate reports every problem with its field's path.
func (c Config) Validate() error {
	var errs []error
	if c.CacheSize < 0 {
		errs = append(errs, errors.New("cache_size: must not be negative"))
	}
	check := func(field, p string) {
		if p != "" && !exists(p) {
			errs = append(errs, fmt.Errorf("%s: no such file: %s", field, p))
		}
	}
	if err := c.Travel.Validate(); err != nil {
		errs = append(errs, err)
	}
	check("country_db", c.CountryDB)
	check("city_db", c.CityDB)
	check("centroids", c.Centroids)
	for i, p := range c.ASNDB {
		check(fmt.Sprintf("asn_db[%d]", i), p)
		if p != "" && !strings.HasSuffix(p, ".mmdb") && !strings.HasSuffix(p, ".csv") {
			errs = append(errs, fmt.Errorf("asn_db[%d]: want a .csv (ip-location-db) or .mmdb (MaxMind ASN) file: %s", i, p))
		}
	}
	return errors.Join(errs...)
}

// FromNode decodes the `geo:` section strictly and sets defaults.
func FromNode(n *yaml.Node) (Config, error) {
	var c Config
	if n != nil && n.Kind != 0 {
		if err := config.DecodeSection(*n, "geo", &c); err != nil {
			return c, err
		}
	}
	c.SetDefaults()
	return c, nil
}
