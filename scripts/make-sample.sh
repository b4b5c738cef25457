#!/usr/bin/env bash
# Regenerates datasets/data/complaints-sample.json (the bundled real sample) from the shared
# CFPB development set. Selection rule: see datasets/data/README.md.
# Usage: scripts/make-sample.sh [SOURCE_JSON] [OUTPUT_JSON]
set -euo pipefail
cd "$(dirname "$0")/.."
src="${1:-../shared/datasets/cfpb/complaints-dev.json}"
out="${2:-datasets/data/complaints-sample.json}"
cargo run --quiet -p complaintflow-datasets --example make_sample -- "$src" "$out"
