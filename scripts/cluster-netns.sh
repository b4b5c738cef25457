#!/usr/bin/env bash
# A simulated multi-machine network on one host: one Linux network namespace per cluster
# process and one for the broker, joined by veth pairs to a bridge in a hub namespace, on
# the project's own test subnet 10.77.0.0/24. Traffic stays inside these namespaces (no
# route to the host or the internet). Needs root (or CAP_NET_ADMIN) and iproute2.
#
#   scripts/cluster-netns.sh up [--prefix P] [--processes N]   # create (idempotent); prints "NAME ADDRESS" lines
#   scripts/cluster-netns.sh down [--prefix P]                 # remove everything it made
#   scripts/cluster-netns.sh cut NAME [--prefix P]             # cut NAME's link (e.g. p1): packets are dropped, no RST
#   scripts/cluster-netns.sh heal NAME [--prefix P]            # restore it
#   scripts/cluster-netns.sh exec NAME [--prefix P] -- CMD…    # run CMD inside NAME's namespace
#
# Names: "broker" (10.77.0.1) and p0, p1, … (10.77.0.10, .11, …). A cut link is silent, as a
# pulled cable is, so a peer notices it through TCP retransmission timeouts: `up` sets
# net.ipv4.tcp_retries2=4 inside each namespace (a few seconds instead of ~15 minutes; on real
# machines set it, or keepalive, the same way) so that survivors stop within seconds.
set -euo pipefail

cmd="${1:-}"; shift || true
PREFIX=cf
PROCESSES=2
NAME=""
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX="$2"; shift 2 ;;
    --processes) PROCESSES="$2"; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) if [ -z "$NAME" ]; then NAME="$1"; shift; else break; fi ;;
  esac
done
case "$PROCESSES" in ''|*[!0-9]*) echo "cluster-netns: --processes must be a number" >&2; exit 2 ;; esac

hub="$PREFIX-hub"
members() { echo broker; for ((i = 0; i < PROCESSES; i++)); do echo "p$i"; done; }
addr_of() {
  case "$1" in
    broker) echo 10.77.0.1 ;;
    p[0-9]*) echo "10.77.0.$((10 + ${1#p}))" ;;
    *) echo "cluster-netns: unknown member $1 (broker, p0, p1, …)" >&2; exit 2 ;;
  esac
}
exists() { ip netns list | awk '{print $1}' | grep -qx "$1"; }

case "$cmd" in
  up)
    exists "$hub" || ip netns add "$hub"
    ip -n "$hub" link show br0 >/dev/null 2>&1 || ip -n "$hub" link add br0 type bridge
    ip -n "$hub" link set lo up
    ip -n "$hub" link set br0 up
    for m in $(members); do
      ns="$PREFIX-$m"; a="$(addr_of "$m")"
      exists "$ns" || ip netns add "$ns"
      if ! ip -n "$hub" link show "$m-h" >/dev/null 2>&1; then
        ip -n "$hub" link add "$m-h" type veth peer name eth0 netns "$ns"
        ip -n "$hub" link set "$m-h" master br0
      fi
      ip -n "$hub" link set "$m-h" up
      ip -n "$ns" link set lo up
      ip -n "$ns" addr replace "$a/24" dev eth0
      ip -n "$ns" link set eth0 up
      ip netns exec "$ns" sysctl -q -w net.ipv4.tcp_retries2=4 >/dev/null
      echo "$m $a"
    done
    ;;
  down)
    for m in $(members); do exists "$PREFIX-$m" && ip netns del "$PREFIX-$m"; done
    # Members beyond --processes from an earlier `up`.
    for ns in $(ip netns list | awk '{print $1}' | grep "^$PREFIX-p[0-9]*$" || true); do ip netns del "$ns"; done
    exists "$hub" && ip netns del "$hub"
    true
    ;;
  cut|heal)
    [ -n "$NAME" ] || { echo "cluster-netns: $cmd needs a member name (e.g. p1)" >&2; exit 2; }
    addr_of "$NAME" >/dev/null
    state=down; [ "$cmd" = heal ] && state=up
    ip -n "$hub" link set "$NAME-h" "$state"
    if [ "$cmd" = heal ]; then
      # While the link was down, ARP for the peers failed and the kernel remembers that
      # (neighbour state FAILED: "No route to host" for a while). Forget it everywhere.
      for ns in $(ip netns list | awk '{print $1}' | grep "^$PREFIX-" || true); do
        ip -n "$ns" neigh flush all >/dev/null 2>&1 || true
      done
    fi
    ;;
  exec)
    [ -n "$NAME" ] || { echo "cluster-netns: exec needs a member name" >&2; exit 2; }
    addr_of "$NAME" >/dev/null
    exec ip netns exec "$PREFIX-$NAME" "$@"
    ;;
  *) echo "usage: scripts/cluster-netns.sh up|down|cut|heal|exec … (see --help)" >&2; exit 2 ;;
esac
