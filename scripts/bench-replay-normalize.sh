#!/usr/bin/env bash
# `auditwatch replay` (every default detector, a temporary bbolt store)
# against `auditwatch normalize` (JSON lines to /dev/null) on the same file
# (default bin/bench-1m.log, from `make bench-data`), one core each
# (GOMAXPROCS=1), alternated ROUNDS times (default 2) under three collector
# settings: as shipped (replay sets GOGC 400 under its memory limit,
# normalize runs Go's default), and both at GOGC=400, both at GOGC=100.
# Prints the CPU seconds (user+sys) of every run, then per setting the sums,
# replay ÷ normalize in throughput per CPU-second, and each command's events
# per CPU-second (EVENTS, default 1,000,000: the file's requests). The
# findings of every replay must be the same.
#
#   make bench-replay-normalize [ROUNDS=3]
set -euo pipefail
BIN=${BIN:-bin/auditwatch}
FILE=${FILE:-bin/bench-1m.log}
LEARN=${LEARN:-2026-01-05T04:48:00Z}
ROUNDS=${ROUNDS:-2}
EVENTS=${EVENTS:-1000000}
[ -f "$FILE" ] || { echo "no $FILE: run make bench-data" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cpu() { # CPU seconds (user+sys) of the command after $1, its stdout to $1
	local out=$1 TIMEFORMAT='%U %S'
	shift
	{ time "$@" >"$out" 2>/dev/null; } 2>"$work/t"
	awk '{print $1+$2}' "$work/t"
}

declare -A norm rep
for s in shipped 400 100; do norm[$s]=0 rep[$s]=0; done
for r in $(seq "$ROUNDS"); do
	for s in shipped 400 100; do
		env=(GOMAXPROCS=1)
		[ "$s" = shipped ] || env+=(GOGC="$s")
		n=$(cpu /dev/null env "${env[@]}" "$BIN" normalize "$FILE")
		p=$(cpu "$work/findings.jsonl" env "${env[@]}" "$BIN" replay --learn-until "$LEARN" "$FILE")
		sort "$work/findings.jsonl" | sha256sum | cut -c1-16 >>"$work/sums"
		echo "round $r, GC $s: normalize $n s, replay $p s ($(wc -l <"$work/findings.jsonl") findings), load $(cut -d' ' -f1 /proc/loadavg)"
		norm[$s]=$(awk -v a="${norm[$s]}" -v b="$n" 'BEGIN {print a + b}')
		rep[$s]=$(awk -v a="${rep[$s]}" -v b="$p" 'BEGIN {print a + b}')
	done
done
if [ "$(sort -u "$work/sums" | wc -l)" != 1 ]; then
	echo "replays gave different findings" >&2
	exit 1
fi
for s in shipped 400 100; do
	awk -v s="$s" -v n="${norm[$s]}" -v p="${rep[$s]}" -v ev="$EVENTS" -v r="$ROUNDS" 'BEGIN {
		printf "GC %-7s normalize %6.2f s  replay %6.2f s  replay/normalize %.3f  normalize %.0f events/CPU-s  replay %.0f events/CPU-s\n",
			s, n, p, n / p, ev * r / n, ev * r / p
	}'
done
