#!/usr/bin/env bash
# Installs the tansu Kafka-compatible broker (0.6.0, with the SQLite storage engine) into a
# tools directory outside the clone, once. Idempotent: does nothing when the right version is
# already installed there.
#
#   scripts/install-tansu.sh            # installs into ~/.cache/complaintflow/tools
#   COMPLAINTFLOW_TOOLS=/opt/cf scripts/install-tansu.sh
#
# Prints the path of the tansu binary as its last line. A cold build takes about 9 minutes on
# 2 cores (tansu pulls in libsql and friends).
set -euo pipefail

TANSU_VERSION="0.6.0"
TOOLS="${COMPLAINTFLOW_TOOLS:-$HOME/.cache/complaintflow/tools}"
BIN="$TOOLS/bin/tansu"

if [ -x "$BIN" ] && "$BIN" --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
  echo "tansu $TANSU_VERSION already installed" >&2
  echo "$BIN"
  exit 0
fi

command -v cargo >/dev/null 2>&1 || { echo "install-tansu: cargo not found on PATH" >&2; exit 1; }
mkdir -p "$TOOLS"
echo "installing tansu $TANSU_VERSION into $TOOLS (about 9 minutes cold on 2 cores)..." >&2
# Build in a target dir of its own so it never contends with the workspace's target/.
CARGO_TARGET_DIR="${TANSU_BUILD_DIR:-$TOOLS/build}" \
  cargo install tansu --version "$TANSU_VERSION" --features libsql,dynostore --locked --root "$TOOLS" >&2
rm -rf "${TANSU_BUILD_DIR:-$TOOLS/build}"
"$BIN" --version >&2
echo "$BIN"
