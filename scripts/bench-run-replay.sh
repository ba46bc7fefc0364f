#!/usr/bin/env bash
# `auditwatch run` on the embedded stream against `auditwatch replay`, same
# file, same config: CPU seconds each takes to detect over every event of
# FILE (default bin/bench-1m.log, from `make bench-data`), and their ratio.
# run tails the file (filetail, from the beginning) and is stopped once its
# detect stage has processed as many events as replay did; its CPU time is
# read from /proc at that moment. STORAGE=off (default) or chdb (the
# embedded ClickHouse, CHDB_LIB_PATH set) for run's event store; replay
# stores nothing. ROUNDS alternates the two that many times (default 2).
#
#   make bench-run-replay [STORAGE=chdb] [ROUNDS=3]
set -euo pipefail
BIN=${BIN:-bin/auditwatch}
FILE=${FILE:-bin/bench-1m.log}
LEARN=${LEARN:-2026-01-05T04:48:00Z}
STORAGE=${STORAGE:-off}
ROUNDS=${ROUNDS:-2}
PROCS=${GOMAXPROCS:-2}
[ -f "$FILE" ] || { echo "no $FILE: run make bench-data" >&2; exit 2; }
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
storage="storage: {backend: off}"
if [ "$STORAGE" = chdb ]; then
	storage="storage: {backend: chdb, chdb: {path: \"$work/chdb\"}}"
fi
abs=$(readlink -f "$FILE")

cpu_of() { # utime+stime of pid in seconds
	awk -v hz="$(getconf CLK_TCK)" '{print ($14+$15)/hz}' "/proc/$1/stat"
}
metric() { # value of a counter on run's /metrics (0 when absent)
	{ curl -fsS "http://127.0.0.1:$port/metrics" 2>/dev/null || true; } | awk -v m="$1" '$1==m {print $2; f=1} END {if (!f) print 0}'
}

replay_cpu=0 run_cpu=0
for r in $(seq "$ROUNDS"); do
	rm -rf "$work/state" "$work/chdb" "$work/findings.jsonl"
	cat >"$work/config.yaml" <<EOF
sources:
  - name: bench
    type: filetail
    filetail: {path: "$abs", start_at: beginning}
stream: {type: embedded}
state: {dir: "$work/state"}
detectors: {learn_until: $LEARN}
$storage
files: {findings: "$work/findings.jsonl"}
http: {listen: "127.0.0.1:$port"}
logging: {level: warn, format: text}
EOF
	/usr/bin/time -f '%U %S' -o "$work/replay.time" env GOMAXPROCS="$PROCS" "$BIN" replay --config "$work/config.yaml" \
		--learn-until "$LEARN" "$FILE" >"$work/replay.out" 2>"$work/replay.err" || true
	events=$(sed -n 's/^replay: [0-9]* records, \([0-9]*\) events.*/\1/p' "$work/replay.err")
	rfind=$(wc -l <"$work/replay.out")
	read -r u s <"$work/replay.time"
	rc=$(echo "$u + $s" | bc)
	[ -n "$events" ] || { cat "$work/replay.err" >&2; exit 1; }

	rm -rf "$work/state"
	start=$(date +%s.%N)
	GOMAXPROCS="$PROCS" "$BIN" run --config "$work/config.yaml" >"$work/run.out" 2>"$work/run.err" &
	pid=$!
	n=0
	while kill -0 "$pid" 2>/dev/null; do
		n=$(metric auditwatch_detect_events_total)
		awk -v n="$n" -v want="$events" 'BEGIN {exit !(n + 0 >= want + 0)}' && break
		sleep 0.2
	done
	if ! kill -0 "$pid" 2>/dev/null; then
		echo "run exited early:" >&2
		tail -5 "$work/run.err" >&2
		exit 1
	fi
	runc=$(cpu_of "$pid")
	wall=$(echo "$(date +%s.%N) - $start" | bc)
	kill -TERM "$pid"
	wait "$pid" || true
	pid=
	ffind=$(wc -l <"$work/findings.jsonl")
	printf 'round %d: %s events; replay %.2f CPU-s (%d findings); run %.2f CPU-s, %.1f s wall (%d findings, storage %s); run/replay CPU %.2f\n' \
		"$r" "$events" "$rc" "$rfind" "$runc" "$wall" "$ffind" "$STORAGE" "$(echo "$runc / $rc" | bc -l)"
	replay_cpu=$(echo "$replay_cpu + $rc" | bc)
	run_cpu=$(echo "$run_cpu + $runc" | bc)
done
printf 'total: replay %.2f CPU-s, run %.2f CPU-s; run/replay CPU %.2f (GOMAXPROCS=%s, storage %s)\n' \
	"$replay_cpu" "$run_cpu" "$(echo "$run_cpu / $replay_cpu" | bc -l)" "$PROCS" "$STORAGE"
