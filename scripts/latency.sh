#!/usr/bin/env bash
# End-to-end latency of `complaintflow run` in process: decided_ms − ingest_ms of every
# prediction, with the default epoch flags, at a given rate.
#
#   scripts/latency.sh RATE COUNT [extra `run` flags…]
#   scripts/latency.sh 10000/min 10000          # 60 s at the seed's rate
#   scripts/latency.sh 1000000/min 300000       # 18 s at 1 M/min
#
# Input: COUNT records RESAMPLED (fresh synthetic ids) from the real dev set
# ../shared/datasets/cfpb/complaints-dev.json (else the bundled real sample), replayed at RATE.
# Prints count, p50, p90, p99, p99.9 and max in ms. Uses target/release/complaintflow
# (`cargo build --release` first) unless CF_BIN says otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
rate="${1:?rate, e.g. 10000/min}"; count="${2:?record count}"; shift 2
bin="${CF_BIN:-target/release/complaintflow}"
data=../shared/datasets/cfpb/complaints-dev.json
[ -f "$data" ] || data=datasets/data/complaints-sample.json
state="$(mktemp -d)"
trap 'rm -rf "$state"' EXIT
"$bin" --state-dir "$state" run --once --http-addr off \
  --source "replay:$data" --resample "$count" --rate "$rate" "$@" 2> "$state/run.log" || {
  cat "$state/run.log" >&2; exit 1; }
python3 - "$state/predictions.jsonl" "$rate" <<'PY'
import json, sys
lat = sorted(d["decided_ms"] - d["ingest_ms"] for d in map(json.loads, open(sys.argv[1])))
q = lambda p: lat[min(len(lat) - 1, int(round(p * (len(lat) - 1))))]
print(f"rate {sys.argv[2]}: {len(lat)} predictions, latency ms p50 {q(.5)} p90 {q(.9)} p99 {q(.99)} p99.9 {q(.999)} max {lat[-1]}")
PY
