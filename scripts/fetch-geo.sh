#!/usr/bin/env bash
# Fetches the default network-context databases (package netinfo) from npm
# into .cache/geo/<version>/, points .cache/geo/current at them, and prints
# that directory:
#   - @ip-location-db/geo-whois-asn-country-mmdb: country by address (CC0);
#   - @ip-location-db/asn: AS number and organisation by address range
#     (CC BY 4.0 by RouteViews, DB-IP and NRO; see NOTICE);
#   - world-countries: country centroids and areas for impossible travel
#     without a city database (ODbL 1.0 by Mohammed Le Doze; see NOTICE).
# Skips what is already there.
#
#   scripts/fetch-geo.sh            # or: make geo
#   export AUDITWATCH_GEO_DIR=$(scripts/fetch-geo.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
version="${GEO_NPM_VERSION:-2.3.2026061719}"
countries_version="${GEO_COUNTRIES_VERSION:-5.1.0}"
base="${GEO_CACHE_DIR:-$PWD/.cache/geo}"
dir="$base/$version"
mkdir -p "$dir"
fetch() { # package version file... (a file is its path in the package; it is saved under its base name)
	local pkg=$1 ver=$2
	shift 2
	local missing=0
	for f in "$@"; do [ -s "$dir/$(basename "$f")" ] || missing=1; done
	[ "$missing" = 1 ] || return 0
	command -v npm >/dev/null || { echo "fetch-geo: npm is required (apt-get install npm)" >&2; exit 1; }
	local tmp
	tmp=$(mktemp -d "$base/.fetch.XXXXXX")
	echo "fetch-geo: downloading $pkg@$ver" >&2
	(cd "$tmp" && npm pack --silent "$pkg@$ver" >/dev/null)
	tar -xzf "$tmp"/*.tgz -C "$tmp"
	for f in "$@"; do
		test -s "$tmp/package/$f" || { echo "fetch-geo: $pkg has no $f" >&2; rm -rf "$tmp"; exit 1; }
		mv "$tmp/package/$f" "$dir/$(basename "$f")"
	done
	for l in "$tmp"/package/*LICENSE*; do [ -e "$l" ] && cp "$l" "$dir/$(basename "$pkg")-$(basename "$l")"; done
	echo "$pkg@$ver" >"$dir/$(basename "$pkg").version"
	rm -rf "$tmp"
}
fetch @ip-location-db/geo-whois-asn-country-mmdb "$version" geo-whois-asn-country.mmdb
fetch @ip-location-db/asn "$version" asn-ipv4.csv asn-ipv6.csv
fetch world-countries "$countries_version" countries.json
ln -sfn "$version" "$base/current"
echo "$base/current"
