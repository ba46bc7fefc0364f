#!/usr/bin/env bash
# Benthos side by side: Benthos 4.60's parse+extract+filter pipeline
# (bench/benthos, its own Go module) against `auditwatch normalize`,
# `auditwatch replay` (shipped defaults) and, when SigmaHQ's CloudTrail rules
# are beside the clone, `replay --rules` with them, on the same file in the
# same run, one core each (GOMAXPROCS=1), alternated ROUNDS times (default
# 2). Benthos runs once per config in BENTHOS_CONFIGS (default: config.yaml,
# the fair equivalent of normalize, and config-minimal.yaml, a plain field
# copy that does less than normalize; see bench/benthos/README.md). An entry
# CONFIG@N runs Benthos with GOGC=N (replay sets GOGC 400 itself; Benthos
# runs Go's default, 100, unless told), e.g.
# BENTHOS_CONFIGS="bench/benthos/config.yaml bench/benthos/config.yaml@400".
#
# Prints for every run its CPU seconds (user+sys) and the 1-minute load
# average when it started; then per command the summed CPU seconds, events
# per CPU-second (events = the file's requests: the events normalize emits,
# as scripts/bench-replay-normalize.sh counts them; EVENTS overrides) and
# the ratios X ÷ Benthos in events per CPU-second. Checks that every Benthos
# run emitted the same number of events, and that it equals normalize's
# events less the Vault requests normalize saw without a response (Benthos
# keeps a request's response entry; a request with no response is dropped),
# and that every replay gave the same findings. Before timing, it runs both
# normalize and Benthos (config.yaml) on the first CHECK_LINES lines
# (default 100,000; 0 skips) and compares their events field by field
# (benthos-bench -compare): only the known differences are allowed (Vault
# `time`: normalize keeps the request entry's; `source_ip`: normalize
# canonicalises IPv6 addresses; events of Vault requests without a
# response).
#
#   make bench-benthos [FILE=bin/bench-1m.log] [ROUNDS=2]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/auditwatch}
RUNNER=${RUNNER:-bin/benthos-bench}
FILE=${FILE:-bin/bench-1m.log}
LEARN=${LEARN:-2026-01-05T04:48:00Z}
ROUNDS=${ROUNDS:-2}
SIGMA=${SIGMA:-../shared/testdata/sigma/cloudtrail}
CHECK_LINES=${CHECK_LINES:-100000}
BENTHOS_CONFIGS=${BENTHOS_CONFIGS:-bench/benthos/config.yaml bench/benthos/config-minimal.yaml}
[ -f "$FILE" ] || { echo "no $FILE: run make bench-data (or pass FILE=...)" >&2; exit 2; }
[ -x "$BIN" ] || { echo "no $BIN: run make build" >&2; exit 2; }

# the runner, built once into bin/ and again when its sources change
if [ ! -x "$RUNNER" ] || [ -n "$(find bench/benthos -newer "$RUNNER" \( -name '*.go' -o -name 'go.*' \))" ]; then
	echo "== building $RUNNER (github.com/redpanda-data/benthos/v4 v4.60.0)"
	(cd bench/benthos && go build -o "$OLDPWD/$RUNNER" .)
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cpu() { # CPU seconds (user+sys) of the command after $2; stdout to $1, stderr to $2
	local out=$1 err=$2 TIMEFORMAT='%U %S'
	shift 2
	{ time "$@" >"$out" 2>"$err"; } 2>"$work/t"
	awk '{print $1+$2}' "$work/t"
}
load() { cut -d' ' -f1 /proc/loadavg; }
add() { awk -v a="$1" -v b="$2" 'BEGIN {print a + b}'; }

bname() { # the name of a BENTHOS_CONFIGS entry: benthos:config, benthos:config@gogc400
	local c=${1%@*} g=
	[ "$c" = "$1" ] || g="@gogc${1##*@}"
	echo "benthos:$(basename "$c" .yaml)$g"
}
if [ "$CHECK_LINES" -gt 0 ]; then
	head -n "$CHECK_LINES" "$FILE" >"$work/check.log"
	"$BIN" normalize "$work/check.log" >"$work/check-n.jsonl" 2>"$work/check-n.err" || true
	"$RUNNER" -config bench/benthos/config.yaml "$work/check.log" >"$work/check-b.jsonl" 2>/dev/null
	unp=$(sed -nE 's/.* ([0-9]+) vault requests without response.*/\1/p' "$work/check-n.err")
	"$RUNNER" -compare "$work/check-n.jsonl" "$work/check-b.jsonl" >"$work/check" || true
	sed -e "s/^compare:/check, first $CHECK_LINES lines:/" -e "s#$work/##g" "$work/check"
	bad=$(grep ' differs in ' "$work/check" | grep -v -e '^compare: time ' -e '^compare: source_ip ' || true)
	miss=$(sed -nE 's/.* ([0-9]+) of the first missing.*/\1/p' "$work/check")
	if [ ! -s "$work/check-n.jsonl" ] || [ ! -s "$work/check-b.jsonl" ] || [ -n "$bad" ] || [ "${miss:-1}" -gt "${unp:-0}" ]; then
		echo "check failed: no events, or Benthos's events differ from normalize's beyond the known differences (${miss:-?} missing, ${unp:-?} Vault requests without a response)" >&2
		exit 1
	fi
fi

names=()
for c in $BENTHOS_CONFIGS; do names+=("$(bname "$c")"); done
names+=(normalize replay)
rules=()
if [ -d "$SIGMA" ]; then
	names+=(replay-rules)
	rules=(--rules "$SIGMA")
	echo "SigmaHQ rules: $SIGMA ($(find "$SIGMA" -name '*.yml' | wc -l) files)"
else
	echo "no $SIGMA: replay --rules not measured"
fi
declare -A sum per # per: CPU seconds of command:round
for n in "${names[@]}"; do sum[$n]=0; done

lines=$(wc -l <"$FILE")
echo "file $FILE ($lines lines), commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . || echo +changes), $(nproc) cores, $(date -u +%FT%TZ)"
for r in $(seq "$ROUNDS"); do
	for c in $BENTHOS_CONFIGS; do
		n=$(bname "$c")
		env=(GOMAXPROCS=1)
		[ "${c%@*}" = "$c" ] || env+=(GOGC="${c##*@}")
		l=$(load)
		s=$(cpu /dev/null "$work/b.err" env "${env[@]}" "$RUNNER" -config "${c%@*}" "$FILE")
		line=$(grep '^benthos: [0-9]* events' "$work/b.err") || { cat "$work/b.err" >&2; exit 1; }
		ev=$(awk '{print $2}' <<<"$line")
		echo "$n:$ev" >>"$work/benthos-events"
		echo "round $r: $n $s s, load $l; $line"
		sum[$n]=$(add "${sum[$n]}" "$s")
		per[$n:$r]=$s
	done
	l=$(load)
	s=$(cpu /dev/null "$work/n.err" env GOMAXPROCS=1 "$BIN" normalize "$FILE")
	nline=$(grep '^normalize: .* inputs' "$work/n.err")
	echo "round $r: normalize $s s, load $l; $nline"
	sum[normalize]=$(add "${sum[normalize]}" "$s")
	per[normalize:$r]=$s

	l=$(load)
	s=$(cpu "$work/findings.jsonl" /dev/null env GOMAXPROCS=1 "$BIN" replay --learn-until "$LEARN" "$FILE")
	sort "$work/findings.jsonl" | sha256sum | cut -c1-16 >>"$work/sums"
	echo "round $r: replay $s s, load $l; $(wc -l <"$work/findings.jsonl") findings"
	sum[replay]=$(add "${sum[replay]}" "$s")
	per[replay:$r]=$s

	if [ ${#rules[@]} -gt 0 ]; then
		l=$(load)
		s=$(cpu "$work/rfindings.jsonl" /dev/null env GOMAXPROCS=1 "$BIN" replay --learn-until "$LEARN" "${rules[@]}" "$FILE")
		sort "$work/rfindings.jsonl" | sha256sum | cut -c1-16 >>"$work/rsums"
		echo "round $r: replay-rules $s s, load $l; $(wc -l <"$work/rfindings.jsonl") findings"
		sum[replay-rules]=$(add "${sum[replay-rules]}" "$s")
		per[replay-rules:$r]=$s
	fi
done

# output checks
read -r nev unpaired rejected < <(sed -E 's/.* ([0-9]+) events, ([0-9]+) rejected, [0-9]+ skipped, ([0-9]+) vault requests without response.*/\1 \3 \2/' <<<"$nline")
EVENTS=${EVENTS:-$nev}
want=$((nev - unpaired))
echo "normalize: $nev events ($unpaired Vault requests without a response, $rejected rejected); Benthos should emit $want"
fail=0
while IFS=: read -r _ cfg ev; do
	if [ "$ev" -le 0 ] || [ "$ev" -lt $((want - rejected)) ] || [ "$ev" -gt "$want" ]; then
		echo "benthos:$cfg emitted $ev events, want $want" >&2
		fail=1
	fi
done < <(sort -u "$work/benthos-events")
if [ "$(sort -u "$work/sums" | wc -l)" != 1 ]; then
	echo "replays gave different findings" >&2
	fail=1
fi
if [ -f "$work/rsums" ] && [ "$(sort -u "$work/rsums" | wc -l)" != 1 ]; then
	echo "replays with rules gave different findings" >&2
	fail=1
fi

echo "events (the file's requests): $EVENTS; $ROUNDS rounds; per command: CPU seconds summed, events per CPU-second"
for n in "${names[@]}"; do
	awk -v n="$n" -v s="${sum[$n]}" -v ev="$EVENTS" -v li="$lines" -v r="$ROUNDS" 'BEGIN {
		printf "%-24s %8.2f s  %9.0f events/CPU-s  (%.0f lines/CPU-s)\n", n, s, ev * r / s, li * r / s
	}'
done
for c in $BENTHOS_CONFIGS; do
	b=$(bname "$c")
	for n in replay replay-rules normalize; do
		[ -n "${sum[$n]:-}" ] || continue
		rounds=""
		for r in $(seq "$ROUNDS"); do
			rounds+=$(awk -v bs="${per[$b:$r]}" -v s="${per[$n:$r]}" 'BEGIN {printf " %.2f", bs / s}')
		done
		awk -v n="$n" -v b="$b" -v bs="${sum[$b]}" -v s="${sum[$n]}" -v rr="$rounds" 'BEGIN {
			printf "%-13s ÷ %-24s %6.2fx  (rounds:%s)\n", n, b, bs / s, rr
		}'
	done
done
exit $fail
