#!/usr/bin/env bash
# The project's test command (README: `make test`). On a fresh machine it
# installs what the integration tests need (scripts/setup/*.sh, each
# idempotent), then runs the lint step (gofmt, go vet, staticcheck:
# scripts/lint.sh), every test with the race detector, and a short run of
# every fuzz target. The shared real-log corpus (../shared/testdata) is
# optional here: its tests skip with the reason when it is absent, unless
# AUDITWATCH_REQUIRE_CORPUS is set (.ci/run sets it).
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

# .ci/run runs `make lint` itself first and says so with AUDITWATCH_LINT_DONE.
if [ -z "${AUDITWATCH_LINT_DONE:-}" ]; then
	scripts/lint.sh
fi
echo "== go test -race"
go test -race -count=1 -timeout 30m ./...
echo "== fuzz smoke"
scripts/fuzz.sh "${FUZZ_SMOKE_TIME:-8s}"
