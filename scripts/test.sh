#!/usr/bin/env bash
# The project's test command (README: `make test`). On a fresh machine it
# installs what the integration tests need (scripts/setup/*.sh, each
# idempotent), then runs formatting and vet checks, every test with the race
# detector, and a short run of every fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."

# Integration tests fail (never skip) when their real peer is missing.
export AUDITWATCH_REQUIRE_INTEGRATION=1

for s in scripts/setup/*.sh; do
	[ -e "$s" ] || continue
	echo "== setup: $s"
	# shellcheck disable=SC1090
	source "$s"
done

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change:"; echo "$unformatted"; exit 1
fi
echo "== go vet"
go vet ./...
echo "== go test -race"
go test -race -count=1 -timeout 30m ./...
echo "== fuzz smoke"
scripts/fuzz.sh "${FUZZ_SMOKE_TIME:-8s}"
