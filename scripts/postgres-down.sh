#!/usr/bin/env bash
# Stops the server started by scripts/postgres-up.sh (pg_ctl stop -m fast). Idempotent:
# nothing to do when it is not running. Data stays in the state directory.
#
#   scripts/postgres-down.sh [--state-dir DIR]     (default ./state/postgres)
set -euo pipefail

STATE="./state/postgres"
while [ $# -gt 0 ]; do
  case "$1" in
    --state-dir) STATE="$2"; shift 2 ;;
    --state-dir=*) STATE="${1#*=}"; shift ;;
    --port|--port=*) [ "$1" = "--port" ] && shift; shift ;;  # accepted for symmetry
    -h|--help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "postgres-down: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
DATA="$STATE/data"
if [ ! -f "$DATA/postmaster.pid" ]; then
  echo "postgres-down: not running (no $DATA/postmaster.pid)" >&2
  exit 0
fi
if command -v pg_ctl >/dev/null 2>&1; then
  PG_CTL="$(command -v pg_ctl)"
else
  PG_CTL="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)/pg_ctl"
fi
OWNER="$(stat -c %U "$DATA")"
if [ "$(id -u)" -eq 0 ] && [ "$OWNER" != root ]; then
  as_owner() { runuser -u "$OWNER" -- "$@"; }
else
  as_owner() { "$@"; }
fi
if as_owner "$PG_CTL" -D "$DATA" status >/dev/null 2>&1; then
  as_owner "$PG_CTL" -D "$DATA" -m fast -w -t 60 stop >/dev/null
  echo "postgres-down: stopped PostgreSQL ($DATA)" >&2
else
  echo "postgres-down: PostgreSQL of $DATA was not running" >&2
fi
