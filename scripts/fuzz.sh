#!/usr/bin/env bash
# Runs every fuzz target in the module for the given time each (default 60s).
# `make fuzz` runs it long; scripts/test.sh runs it short as a smoke test.
set -euo pipefail
cd "$(dirname "$0")/.."
t="${1:-60s}"
found=0
while IFS= read -r f; do
	dir=$(dirname "$f")
	for name in $(grep -oE '^func (Fuzz[A-Za-z0-9_]+)\(' "$f" | sed -E 's/^func (Fuzz[A-Za-z0-9_]+)\(/\1/'); do
		found=$((found+1))
		echo "-- fuzz ./$dir $name ($t)"
		go test -run='^$' -fuzz="^${name}\$" -fuzztime="$t" "./$dir"
	done
done < <(git ls-files '*_test.go' | xargs grep -l '^func Fuzz' || true)
echo "fuzz targets run: $found"
