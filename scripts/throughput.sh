#!/usr/bin/env bash
# `complaintflow run --once` against `complaintflow data validate` (parse only, one thread) on
# the same JSON Lines file of RESAMPLED complaints, in the same sitting, REPEAT times each,
# alternating; prints the median seconds of each, records/s, and the ratio run / validate.
#
#   scripts/throughput.sh [N=300000] [REPEAT=3] [extra `run` flags, e.g. --workers 2]
#
# Uses target/release/complaintflow (`cargo build --release` first) unless CF_BIN says
# otherwise. The model is trained once on the bundled real sample (not timed).
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-300000}"; repeat="${2:-3}"; shift 2 || shift $#
bin="${CF_BIN:-target/release/complaintflow}"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
python3 scripts/resample.py "$n" --seed 1 > "$work/resampled.jsonl"
"$bin" --state-dir "$work/state" train --data datasets/data/complaints-sample.json --promote >/dev/null 2>&1
t() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1 || true; e=$(date +%s.%N); echo "$e - $s" | bc; }
runs=(); vals=()
for ((i = 0; i < repeat; i++)); do
  vals+=("$(t "$bin" --state-dir "$work/state" data validate "$work/resampled.jsonl")")
  rm -f "$work/state/predictions.jsonl" "$work/state/dead-letters.jsonl"
  runs+=("$(t "$bin" --state-dir "$work/state" run --once --http-addr off --source "file:$work/resampled.jsonl" "$@")")
done
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
v="$(med "${vals[@]}")"; r="$(med "${runs[@]}")"
lines="$(wc -l < "$work/state/predictions.jsonl")"
echo "data validate: median ${v}s ($(echo "$n / $v" | bc)/s); runs: ${vals[*]}"
echo "run --once $*: median ${r}s ($(echo "$n / $r" | bc)/s, $lines predictions); runs: ${runs[*]}"
echo "ratio run / validate: $(echo "scale=2; $r / $v" | bc)"
