#!/usr/bin/env bash
# Starts a local Kafka-compatible broker (tansu 0.6.0, SQLite storage) on 127.0.0.1, creates
# the complaintflow topics, and prints the bootstrap address (HOST:PORT) as its LAST line.
# Idempotent: a broker already running from the same state directory is reused.
#
#   scripts/kafka-up.sh [--state-dir DIR] [--port N] [--host ADDR]
#
#   --state-dir DIR   broker data, pid file and log (default ./state/kafka); data and
#                     committed group offsets survive a restart with the same DIR
#   --port N          listener port (default 9092)
#   --host ADDR       listener address (default 127.0.0.1: loopback unless told otherwise;
#                     scripts/cluster-netns.sh runs it on 10.77.0.1 in its own namespace)
#   --maintenance D   tansu's periodic storage maintenance (retention, compaction, VACUUM
#                     INTO) every D, e.g. 10m (default: off). tansu 0.6.0's own default is
#                     10 minutes, and its first run on a busy SQLite store ends the storage
#                     service (every later request fails with Storage(UnableToSend)), which
#                     ended every soak at the 10-minute mark; a local test broker needs no
#                     retention, so the default here is a year
#
#   CF_TANSU_STORAGE  (environment) tansu's --storage-engine instead of the SQLite file in the
#                     state directory, e.g. memory://tansu/ (nothing survives a restart; used
#                     to separate the broker's storage cost from the engine's in benchmarks)
#
# Installs tansu on first use (scripts/install-tansu.sh, ~9 minutes cold). Stop it with
# scripts/kafka-down.sh --state-dir DIR. Users with a real Kafka cluster skip this and pass
# --brokers to complaintflow.
set -euo pipefail

STATE="./state/kafka"
PORT=9092
HOST=127.0.0.1
MAINTENANCE=365days
while [ $# -gt 0 ]; do
  case "$1" in
    --state-dir) STATE="$2"; shift 2 ;;
    --state-dir=*) STATE="${1#*=}"; shift ;;
    --port) PORT="$2"; shift 2 ;;
    --port=*) PORT="${1#*=}"; shift ;;
    --host) HOST="$2"; shift 2 ;;
    --host=*) HOST="${1#*=}"; shift ;;
    --maintenance) MAINTENANCE="$2"; shift 2 ;;
    -h|--help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "kafka-up: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$PORT" in ''|*[!0-9]*) echo "kafka-up: --port must be a number" >&2; exit 2 ;; esac

HERE="$(cd "$(dirname "$0")" && pwd)"
TANSU="$(bash "$HERE/install-tansu.sh" | tail -n 1)"
mkdir -p "$STATE"
STATE="$(cd "$STATE" && pwd)"
PIDFILE="$STATE/tansu.pid"
LOG="$STATE/tansu.log"
ADDR="$HOST:$PORT"
BROKER="tcp://$ADDR"

answers() { (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; }
running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

if running; then
  echo "kafka-up: tansu already running (pid $(cat "$PIDFILE"), state $STATE)" >&2
else
  rm -f "$PIDFILE"
  if answers; then
    echo "kafka-up: port $PORT is already in use by another process; choose another with --port" >&2
    exit 1
  fi
  # The SQLite URL must be relative (an absolute path after sqlite:// gets mangled), so the
  # broker runs in the state directory.
  (
    cd "$STATE"
    CLUSTER_ID="complaintflow" nohup "$TANSU" broker \
      --listener-url "$BROKER" \
      --advertised-listener-url "$BROKER" \
      --storage-engine "${CF_TANSU_STORAGE:-sqlite://tansu.db?maintenance_interval=$MAINTENANCE}" \
      >>"$LOG" 2>&1 &
    echo $! >"$PIDFILE"
  )
  echo "kafka-up: started tansu (pid $(cat "$PIDFILE"), log $LOG)" >&2
fi

# Wait until it accepts connections and answers requests (topic creation is a request).
for _ in $(seq 1 300); do
  answers && break
  if ! running; then
    echo "kafka-up: tansu exited during start-up; last lines of $LOG:" >&2
    tail -n 20 "$LOG" >&2 || true
    exit 1
  fi
  sleep 0.1
done
answers || { echo "kafka-up: tansu does not accept connections on $ADDR after 30 s (log $LOG)" >&2; exit 1; }

create() { # NAME PARTITIONS [--config KEY=VALUE]
  local out name="$1" parts="$2"
  shift 2
  for _ in $(seq 1 50); do
    if out="$("$TANSU" topic create --broker "$BROKER" --partitions "$parts" "$@" "$name" 2>&1)"; then
      echo "kafka-up: created topic $name ($parts partitions)" >&2
      return 0
    fi
    case "$out" in
      *[Aa]lready*[Ee]xist*|*TopicAlreadyExists*) return 0 ;;
    esac
    sleep 0.2
  done
  echo "kafka-up: cannot create topic $name: $out" >&2
  return 1
}
# The outputs are keyed (complaint_id; source/partition/offset; dimension|key) so that a
# replay after a crash overwrites: ask for compaction (tansu 0.6 accepts the setting but
# does not compact; consumers de-duplicate by key, as the tests do).
create complaints-input 4
create complaints-predictions 4 --config cleanup.policy=compact
create complaints-dlq 1 --config cleanup.policy=compact
create complaints-aggregates 1 --config cleanup.policy=compact

echo "$ADDR"
