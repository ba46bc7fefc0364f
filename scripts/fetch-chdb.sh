#!/usr/bin/env bash
# Fetches libchdb.so (embedded ClickHouse, used by the default "chdb" storage
# backend) from the npm package @chdb/lib-linux-x64-gnu into .cache/chdb/ and
# prints the library's path. Skips the download when the library is present.
#
#   scripts/fetch-chdb.sh            # or: make chdb
#   export CHDB_LIB_PATH=$(scripts/fetch-chdb.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
version="${CHDB_NPM_VERSION:-26.7.3-stable.1}"
dir="${CHDB_CACHE_DIR:-$PWD/.cache/chdb}"
lib="$dir/$version/package/libchdb.so"
if [ ! -s "$lib" ]; then
	command -v npm >/dev/null || { echo "fetch-chdb: npm is required (apt-get install npm)" >&2; exit 1; }
	mkdir -p "$dir/$version"
	tmp=$(mktemp -d "$dir/.fetch.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	(cd "$tmp" && npm pack --silent "@chdb/lib-linux-x64-gnu@$version" >/dev/null)
	tar -xzf "$tmp"/chdb-lib-linux-x64-gnu-*.tgz -C "$tmp"
	test -s "$tmp/package/libchdb.so" || { echo "fetch-chdb: package has no libchdb.so" >&2; exit 1; }
	rm -rf "$dir/$version/package"
	mv "$tmp/package" "$dir/$version/package"
fi
echo "$lib"
