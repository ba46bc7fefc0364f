# Sourced by scripts/test.sh. Fetches the default network-context databases
# (npm: @ip-location-db/geo-whois-asn-country-mmdb, @ip-location-db/asn and
# world-countries)
# for netinfo's real-database test. Exports AUDITWATCH_GEO_TESTDIR (not AUDITWATCH_GEO_DIR, so the other tests run
# without network context unless they configure it).
AUDITWATCH_GEO_TESTDIR="$(scripts/fetch-geo.sh)"
export AUDITWATCH_GEO_TESTDIR
