#!/usr/bin/env bash
# Soak: RESAMPLED complaints produced into a local tansu broker at RATE for MINUTES while
# `complaintflow run` (2 workers) reads them; the engine's resident memory is sampled every
# 10 s; at the end the predictions are reconciled by complaint_id against the input (lost,
# extra) and latency percentiles (decided_ms − ingest_ms) are given per minute.
#
#   scripts/soak.sh RATE MINUTES OUT_DIR        # e.g. scripts/soak.sh 10000/min 10 docs/soak/10k
#
# Writes OUT_DIR/rss.csv (seconds, rss_kb), OUT_DIR/latency.csv (minute, n, p50, p99, max),
# OUT_DIR/summary.json and OUT_DIR/rss.svg. Uses target/release/complaintflow unless CF_BIN
# says otherwise; the broker comes from scripts/kafka-up.sh on a free port. CF_SOAK_ENGINE_ARGS
# adds flags to the engine (e.g. "--dedup-window 1000000", so the duplicate check's window
# fills within the run and memory reaches its plateau).
set -euo pipefail
cd "$(dirname "$0")/.."
rate="${1:?rate, e.g. 10000/min}"; minutes="${2:?minutes}"; out="${3:?output dir}"
bin="$(realpath "${CF_BIN:-target/release/complaintflow}")"
mkdir -p "$out"; out="$(realpath "$out")"
work="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
cleanup() {
  kill "${eng:-0}" "${prod:-0}" 2>/dev/null || true
  bash scripts/kafka-down.sh --state-dir "$work/kafka" >/dev/null 2>&1 || true
  # The last lines of each log stay beside the figures (a failed run can be read afterwards).
  mkdir -p "$out/logs"
  for f in "$work/engine.log" "$work/produce.log" "$work/kafka/tansu.log"; do
    [ -f "$f" ] && tail -n 200 "$f" > "$out/logs/$(basename "$f")"
  done
  rm -rf "$work"
}
trap cleanup EXIT
broker="$(bash scripts/kafka-up.sh --state-dir "$work/kafka" --port "$port" | tail -n 1)"
"$bin" --state-dir "$work/state" train --data datasets/data/complaints-sample.json --promote >/dev/null 2>&1
data=../shared/datasets/cfpb/complaints-dev.json; [ -f "$data" ] || data=datasets/data/complaints-sample.json

"$bin" --state-dir "$work/state" run --brokers "$broker" --source kafka:complaints-input \
  --http-addr off --workers 2 ${CF_SOAK_ENGINE_ARGS:-} 2> "$work/engine.log" & eng=$!
sleep 2
"$bin" --state-dir "$work/state" produce --brokers "$broker" --file "$data" --loop --resample 100000000 \
  --rate "$rate" --duration "${minutes}m" --no-progress > "$work/produce.json" 2> "$work/produce.log" & prod=$!
echo "seconds,rss_kb" > "$out/rss.csv"
start=$(date +%s)
while kill -0 "$prod" 2>/dev/null; do
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$eng/status" 2>/dev/null || echo 0)
  echo "$(( $(date +%s) - start )),$rss" >> "$out/rss.csv"
  sleep 10
done
wait "$prod" || { cat "$work/produce.log" >&2; exit 1; }
sleep 5   # let the last epochs drain
kill -TERM "$eng"; wait "$eng" || true
"$bin" --state-dir "$work/state" consume --brokers "$broker" --topic complaints-input --from-beginning --until-idle 30s > "$work/in.jsonl"
"$bin" --state-dir "$work/state" consume --brokers "$broker" --topic complaints-predictions --from-beginning --until-idle 30s > "$work/pred.jsonl"
python3 - "$work" "$out" "$rate" "$minutes" <<'PY'
import json, sys, statistics
work, out, rate, minutes = sys.argv[1:5]
ins = {json.loads(l)["key"] for l in open(f"{work}/in.jsonl") if l.strip()}
preds, lat = {}, {}
for l in open(f"{work}/pred.jsonl"):
    if not l.strip(): continue
    m = json.loads(l); v = m["value"]; preds[m["key"]] = v
if ins and not preds:
    # A read-back problem (the broker answered nothing within the idle limit), not a loss:
    # the engine's own summary (logs/engine.log) says how many predictions it delivered.
    sys.exit("soak: the predictions topic read back empty; see logs/engine.log for what the engine delivered, and re-read the topic")
for v in preds.values():
    lat.setdefault(v["decided_ms"] // 60000, []).append(v["decided_ms"] - v["ingest_ms"])
q = lambda xs, p: sorted(xs)[min(len(xs) - 1, int(round(p * (len(xs) - 1))))]
rows = []
with open(f"{out}/latency.csv", "w") as f:
    f.write("minute,n,p50_ms,p99_ms,max_ms\n")
    for i, k in enumerate(sorted(lat)):
        xs = lat[k]; rows.append((i, len(xs), q(xs, .5), q(xs, .99), max(xs)))
        f.write(",".join(map(str, rows[-1])) + "\n")
rss = [tuple(map(int, l.split(","))) for l in open(f"{out}/rss.csv").read().split("\n")[1:] if l]
warm = [r for s, r in rss if s >= 60] or [r for _, r in rss]
summary = {"rate": rate, "minutes": float(minutes), "input": len(ins), "predicted": len(preds),
           "lost": len(ins - preds.keys()), "extra": len(preds.keys() - ins),
           "rss_kb_after_warmup": {"min": min(warm), "median": statistics.median(warm), "max": max(warm),
                                     "spread_pct": round(100 * (max(warm) - min(warm)) / statistics.median(warm), 1)},
           "latency_ms_per_minute": [{"minute": r[0], "n": r[1], "p50": r[2], "p99": r[3], "max": r[4]} for r in rows]}
json.dump(summary, open(f"{out}/summary.json", "w"), indent=1)
# A plain SVG plot of RSS over time (no plotting library needed).
W, H, P = 640, 240, 40
xs = [s for s, _ in rss] or [0]; ys = [r / 1024 for _, r in rss] or [0]
X = lambda s: P + (W - 2 * P) * s / max(1, max(xs)); Y = lambda y: H - P - (H - 2 * P) * y / max(1, max(ys) * 1.1)
pts = " ".join(f"{X(s):.1f},{Y(y):.1f}" for s, y in zip(xs, ys))
svg = f'''<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="white"/><text x="{P}" y="16">engine RSS (MB), {rate} for {minutes} min; max {max(ys):.0f} MB</text>
<line x1="{P}" y1="{H-P}" x2="{W-P}" y2="{H-P}" stroke="black"/><line x1="{P}" y1="{P}" x2="{P}" y2="{H-P}" stroke="black"/>
<text x="{W-P}" y="{H-P+16}" text-anchor="end">{max(xs)} s</text><text x="{P-4}" y="{Y(max(ys)):.0f}" text-anchor="end">{max(ys):.0f}</text>
<polyline fill="none" stroke="#2a6" stroke-width="2" points="{pts}"/></svg>'''
open(f"{out}/rss.svg", "w").write(svg)
print(json.dumps({k: summary[k] for k in ("rate", "input", "predicted", "lost", "extra", "rss_kb_after_warmup")}))
PY
