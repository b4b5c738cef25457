#!/usr/bin/env bash
# Starts a local PostgreSQL server (Debian's packages) for complaintflow's PostgreSQL sink,
# bound to 127.0.0.1 only, with a database and a role `complaintflow`, and prints the
# connection URL (postgres://complaintflow@127.0.0.1:PORT/complaintflow) as its LAST line.
# Idempotent: a server already running from the same state directory is reused and the same
# URL is printed.
#
#   scripts/postgres-up.sh [--state-dir DIR] [--port P]
#
#   --state-dir DIR   cluster data, log, passwords (default ./state/postgres); data survives
#                     a restart with the same DIR
#   --port P          TCP port on 127.0.0.1 (default 5432; remembered in DIR for later runs)
#
# The URL carries no password. The role's password is generated on first start and kept in
# DIR/password (mode 0600); give it to complaintflow through the environment:
#
#   export PGPASSWORD="$(cat DIR/password)"
#
# Installs `postgresql` with apt-get when initdb is missing. Run as root, the server runs as
# the `postgres` system user (initdb refuses root): DIR and its parents must then be
# traversable by that user (e.g. under /tmp or /srv, not /root). Authentication is
# scram-sha-256 over TCP; no Unix socket is opened. Stop it with
# scripts/postgres-down.sh --state-dir DIR.
set -euo pipefail

STATE="./state/postgres"
PORT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --state-dir) STATE="$2"; shift 2 ;;
    --state-dir=*) STATE="${1#*=}"; shift ;;
    --port) PORT="$2"; shift 2 ;;
    --port=*) PORT="${1#*=}"; shift ;;
    -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "postgres-up: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$PORT" in *[!0-9]*) echo "postgres-up: --port must be a number" >&2; exit 2 ;; esac

DB=complaintflow
ROLE=complaintflow

# --- binaries: PATH first, then Debian's versioned directory; install when missing.
find_bindir() {
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(readlink -f "$(command -v initdb)")"
    return 0
  fi
  local d
  d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  [ -n "$d" ] && [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  return 1
}
if ! BIN="$(find_bindir)"; then
  echo "postgres-up: initdb not found; installing Debian's postgresql package" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >&2
  # The package starts a system cluster on 5432 on some setups; ours is separate.
  BIN="$(find_bindir)" || { echo "postgres-up: initdb still missing after installing postgresql" >&2; exit 1; }
fi
PSQL="$BIN/psql"; [ -x "$PSQL" ] || PSQL="$(command -v psql)"

mkdir -p "$STATE"
STATE="$(cd "$STATE" && pwd)"
DATA="$STATE/data"
LOG="$STATE/postgres.log"
PORTFILE="$STATE/port"
PWFILE="$STATE/password"
SUPERPW="$STATE/superuser-password"

# --- who runs the server: ourselves, or `postgres` when we are root.
if [ "$(id -u)" -eq 0 ]; then
  RUNAS=postgres
  id "$RUNAS" >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /usr/sbin/nologin "$RUNAS"
  as_owner() { runuser -u "$RUNAS" -- "$@"; }
  if ! as_owner test -x "$STATE"; then
    echo "postgres-up: the server runs as user '$RUNAS', which cannot enter $STATE (a parent directory is private); choose a --state-dir under /tmp or /srv" >&2
    exit 1
  fi
else
  RUNAS="$(id -un)"
  as_owner() { "$@"; }
fi

running() { [ -f "$DATA/postmaster.pid" ] && as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

RECORDED=""; [ -f "$PORTFILE" ] && RECORDED="$(cat "$PORTFILE")"
if running; then
  if [ -n "$PORT" ] && [ "$PORT" != "$RECORDED" ]; then
    echo "postgres-up: already running on port $RECORDED (not $PORT); stop it first to change the port" >&2
  else
    echo "postgres-up: already running (port $RECORDED, state $STATE)" >&2
  fi
  PORT="$RECORDED"
else
  PORT="${PORT:-${RECORDED:-5432}}"
  if answers "$PORT"; then
    echo "postgres-up: port $PORT on 127.0.0.1 is in use by another process; choose another with --port" >&2
    exit 1
  fi
  if [ ! -f "$DATA/PG_VERSION" ]; then
    rm -rf "$DATA"
    umask 077
    [ -s "$PWFILE" ] || od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$PWFILE"
    [ -s "$SUPERPW" ] || od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$SUPERPW"
    umask 022
    mkdir -p "$DATA"
    if [ "$(id -u)" -eq 0 ]; then
      chown "$RUNAS" "$DATA"
      # initdb reads the superuser password file as the server user.
      install -m 0600 -o "$RUNAS" "$SUPERPW" "$STATE/.initdb-pw"
    else
      install -m 0600 "$SUPERPW" "$STATE/.initdb-pw"
    fi
    chmod 0700 "$DATA"
    echo "postgres-up: initdb in $DATA (server user $RUNAS)" >&2
    as_owner "$BIN/initdb" -D "$DATA" -U postgres --pwfile="$STATE/.initdb-pw" \
      --auth-host=scram-sha-256 --auth-local=scram-sha-256 -E UTF8 --locale=C.UTF-8 >>"$LOG.initdb" 2>&1 \
      || { rm -f "$STATE/.initdb-pw"; echo "postgres-up: initdb failed; see $LOG.initdb" >&2; exit 1; }
    rm -f "$STATE/.initdb-pw"
  fi
  # Our settings, rewritten on every start (a later --port takes effect here).
  CONF="$STATE/complaintflow.conf"
  cat >"$CONF" <<EOF
# Written by scripts/postgres-up.sh on every start: loopback only, no Unix socket.
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = ''
password_encryption = 'scram-sha-256'
EOF
  chmod 0644 "$CONF"
  grep -q "^include '$CONF'" "$DATA/postgresql.conf" 2>/dev/null \
    || as_owner sh -c "echo \"include '$CONF'\" >>'$DATA/postgresql.conf'"
  touch "$LOG"; [ "$(id -u)" -eq 0 ] && chown "$RUNAS" "$LOG"
  echo "$PORT" >"$PORTFILE"
  if ! as_owner "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start >/dev/null; then
    echo "postgres-up: the server did not start; last lines of $LOG:" >&2
    tail -n 20 "$LOG" >&2 || true
    exit 1
  fi
  echo "postgres-up: started PostgreSQL ($("$BIN/postgres" --version | awk '{print $3}')) on 127.0.0.1:$PORT as $RUNAS, log $LOG" >&2
fi

for _ in $(seq 1 100); do answers "$PORT" && break; sleep 0.1; done
answers "$PORT" || { echo "postgres-up: nothing answers on 127.0.0.1:$PORT (log $LOG)" >&2; exit 1; }

# --- role and database (idempotent). Passwords go through the environment, never argv.
super() { PGPASSWORD="$(cat "$SUPERPW")" "$PSQL" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres "$@"; }
APPPW="$(cat "$PWFILE")"
if [ "$(super -d postgres -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" != "1" ]; then
  super -d postgres <<EOF
CREATE ROLE $ROLE LOGIN PASSWORD '$APPPW';
EOF
  echo "postgres-up: created role $ROLE" >&2
fi
if [ "$(super -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != "1" ]; then
  super -d postgres -c "CREATE DATABASE $DB OWNER $ROLE"
  echo "postgres-up: created database $DB" >&2
fi
# The sink creates its tables in the `public` schema (or the one configured): let the role
# own it (PostgreSQL 15 no longer grants CREATE on public to everyone).
super -d "$DB" -c "ALTER SCHEMA public OWNER TO $ROLE"

echo "postgres-up: password in $PWFILE (export PGPASSWORD=\"\$(cat $PWFILE)\")" >&2
echo "postgres://$ROLE@127.0.0.1:$PORT/$DB"
