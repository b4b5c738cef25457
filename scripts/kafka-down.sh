#!/usr/bin/env bash
# Stops the broker started by scripts/kafka-up.sh (by its pid file). Idempotent: nothing
# to do when it is not running. Data stays in the state directory.
#
#   scripts/kafka-down.sh [--state-dir DIR]     (default ./state/kafka)
set -euo pipefail

STATE="./state/kafka"
while [ $# -gt 0 ]; do
  case "$1" in
    --state-dir) STATE="$2"; shift 2 ;;
    --state-dir=*) STATE="${1#*=}"; shift ;;
    --port|--port=*) [ "$1" = "--port" ] && shift; shift ;;  # accepted for symmetry
    -h|--help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "kafka-down: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
PIDFILE="$STATE/tansu.pid"
if [ ! -f "$PIDFILE" ]; then
  echo "kafka-down: not running (no $PIDFILE)" >&2
  exit 0
fi
PID="$(cat "$PIDFILE")"
if kill -0 "$PID" 2>/dev/null && ps -p "$PID" -o comm= | grep -q tansu; then
  kill -TERM "$PID" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$PID" 2>/dev/null; then
    echo "kafka-down: tansu (pid $PID) did not stop after 10 s; killing it" >&2
    kill -KILL "$PID" 2>/dev/null || true
  fi
  echo "kafka-down: stopped tansu (pid $PID)" >&2
else
  echo "kafka-down: tansu (pid $PID) was not running" >&2
fi
rm -f "$PIDFILE"
