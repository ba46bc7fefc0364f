#!/usr/bin/env bash
# The quickstart (`make demo`, after `make build`): runs the main job —
# `auditwatch run` on the embedded defaults (embedded stream, local detector
# state, embedded ClickHouse) — over the bundled real OpenBao audit log and a
# generated live stream with injected anomalies, printing findings as they
# happen, then answers a runbook query from the store it leaves in var/demo.
#
#   DEMO_SECONDS=60 DEMO_RATE=250 make demo
set -euo pipefail
cd "$(dirname "$0")/.."
bin=bin/auditwatch
seconds="${DEMO_SECONDS:-60}"
rate="${DEMO_RATE:-250}"

# Embedded ClickHouse: libchdb.so (downloaded once into .cache/chdb).
CHDB_LIB_PATH="$(scripts/fetch-chdb.sh)"
export CHDB_LIB_PATH
# Network context (country, AS of each address): .cache/geo/current, where
# the geo: section looks by default. Without it the demo runs as well.
scripts/fetch-geo.sh >/dev/null || echo "demo: network context databases not fetched; findings will not say where addresses are" >&2

rm -rf var/demo
mkdir -p var/demo/live
echo "== auditwatch run --config deploy/quickstart.yaml   (findings below as they happen; progress on stderr)"
"$bin" run --config deploy/quickstart.yaml &
run_pid=$!
trap 'kill "$run_pid" 2>/dev/null || true' EXIT

# The real sample is read first (a few seconds); then the live stream starts.
sleep 5
# The live stream compresses 20 minutes of event time into $seconds seconds,
# so the anomalies injected in its second half are minutes apart.
echo "== live stream: $rate events/s for ${seconds}s of Vault and CloudTrail traffic (20 min of event time), 5 anomalies in the second half"
"$bin" generate --format mixed --rate "$rate" --events $((rate * seconds)) --duration 20m --anomaly-count 5 --learning 0.5 \
	--labels var/demo/live-labels.jsonl --out var/demo/live >/dev/null
sleep 6 # the detectors' idle drain releases the last events
kill -TERM "$run_pid"
wait "$run_pid" || { echo "auditwatch run failed" >&2; exit 1; }
trap - EXIT

echo
echo "== $(wc -l <var/demo/findings.jsonl) findings (var/demo/findings.jsonl); $(wc -l <var/demo/live-labels.jsonl) anomalies were injected into the live stream (var/demo/live-labels.jsonl)"
echo "== runbook: who read secret/data/payments/db, and from where?"
echo "\$ $bin query who-accessed --config deploy/quickstart.yaml --resource secret/data/payments/db --since 2026-11-01T00:00:00Z"
"$bin" query who-accessed --config deploy/quickstart.yaml --resource secret/data/payments/db --since 2026-11-01T00:00:00Z
echo
echo "More: $bin query findings|failures|ip|principal|blast-radius --config deploy/quickstart.yaml -h  (docs/RUNBOOK.md)"
