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
	mkdir -p "$dir/$version"
	tmp=$(mktemp -d "$dir/.fetch.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	echo "fetch-chdb: downloading @chdb/lib-linux-x64-gnu@$version (~170 MB compressed, once)" >&2
	if command -v npm >/dev/null; then
		(cd "$tmp" && npm pack --silent "@chdb/lib-linux-x64-gnu@$version" >/dev/null)
	elif command -v curl >/dev/null; then
		# Without npm: the registry's tarball, checked against its published integrity.
		url="https://registry.npmjs.org/@chdb/lib-linux-x64-gnu/-/lib-linux-x64-gnu-$version.tgz"
		meta=$(curl -fsSL "https://registry.npmjs.org/@chdb/lib-linux-x64-gnu/$version")
		integrity=$(printf '%s' "$meta" | grep -o '"integrity": *"sha512-[^"]*"' | head -n1 | sed 's/.*"sha512-\([^"]*\)"/\1/')
		curl -fsSL -o "$tmp/chdb-lib-linux-x64-gnu-$version.tgz" "$url"
		got=$(openssl dgst -sha512 -binary "$tmp/chdb-lib-linux-x64-gnu-$version.tgz" | base64 -w0)
		[ -n "$integrity" ] && [ "$got" = "$integrity" ] || { echo "fetch-chdb: integrity check failed for $url" >&2; exit 1; }
	else
		echo "fetch-chdb: npm or curl is required (apt-get install npm)" >&2
		exit 1
	fi
	tar -xzf "$tmp"/chdb-lib-linux-x64-gnu-*.tgz -C "$tmp"
	test -s "$tmp/package/libchdb.so" || { echo "fetch-chdb: package has no libchdb.so" >&2; exit 1; }
	rm -rf "$dir/$version/package"
	mv "$tmp/package" "$dir/$version/package"
fi
echo "$lib"
