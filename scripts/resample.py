#!/usr/bin/env python3
"""Writes N RESAMPLED complaints as JSON Lines: real records of a file (JSON array or JSON
Lines) drawn with replacement, each given a fresh synthetic complaint_id from 900,000,000,000
(datasets' RESAMPLED_ID_BASE), so they are never mistaken for real complaints.

    scripts/resample.py N [--seed S] [--data FILE] > resampled.jsonl

Default data: ../shared/datasets/cfpb/complaints-dev.json (else the bundled real sample).
Used by scripts/throughput.sh; the engine bench makes the same kind of file itself.
"""
import argparse, json, os, random, sys

here = os.path.dirname(os.path.abspath(__file__))
default = os.path.join(here, "..", "..", "shared", "datasets", "cfpb", "complaints-dev.json")
if not os.path.exists(default):
    default = os.path.join(here, "..", "datasets", "data", "complaints-sample.json")
p = argparse.ArgumentParser()
p.add_argument("n", type=int)
p.add_argument("--seed", type=int, default=1)
p.add_argument("--data", default=default)
a = p.parse_args()
text = open(a.data, encoding="utf-8").read()
rows = json.loads(text) if text.lstrip().startswith("[") else [json.loads(l) for l in text.splitlines() if l.strip()]
rng = random.Random(a.seed)
out = sys.stdout
for i in range(a.n):
    r = dict(rng.choice(rows))
    r["complaint_id"] = str(900_000_000_000 + i)
    out.write(json.dumps(r, ensure_ascii=False))
    out.write("\n")
