#!/usr/bin/env bash
# Beyond one host: three percore "hosts" (network namespaces on one machine) behind HAProxy in
# TCP mode, health-checked on /readyz, then a rolling restart and a rolling reload of all three
# while wrk keeps up a load through HAProxy. Fails unless wrk saw zero failed requests.
#
# Usage: sudo deploy/multihost.sh            (root: it makes namespaces, veths and a bridge)
# Needs: ip (iproute2), haproxy, wrk, curl; percore from PERCORE_BIN or `cargo build --release`.
# Everything it starts is stopped by PID and everything it creates is removed on exit.
#
# The recipe it runs, for a real deployment:
#   - each host runs percore with its admin endpoint on an address the balancer reaches
#     (--admin HOST:7391); HAProxy checks GET /readyz there (`option httpchk`, `check port
#     7391`): 503 while a host drains or a worker is down takes it out of rotation;
#   - rolling restart, one host at a time: `set server be/hN state maint` on HAProxy's runtime
#     socket (no new connections), wait until HAProxy holds none to it, SIGTERM percore (it
#     finishes what is in flight and exits 0), start it again, wait for /readyz, `state ready`;
#   - rolling reload, one host at a time: SIGHUP (percore reloads without refusing or
#     resetting a connection, so the balancer need not be told).
# The load is wrk with `Connection: close` (a new connection per request, spread by HAProxy),
# so that a restart meets no idle keep-alive connection pinned to the host it stops.
set -euo pipefail
cd "$(dirname "$0")/.."

HOSTS=3
PORT=8080
ADMIN_PORT=7391
FRONT_PORT=${FRONT_PORT:-18800}
DURATION=${DURATION:-40}
NET=10.77.0
PREFIX=pcmh
TMP=$(mktemp -d)
PIDS=()

die() {
    echo "multihost.sh: $*" >&2
    exit 1
}

[ "$(id -u)" -eq 0 ] || die "run as root (it creates network namespaces)"
for tool in ip haproxy wrk curl; do
    command -v "$tool" >/dev/null || die "missing $tool (apt-get install -y iproute2 haproxy wrk curl)"
done
if [ -z "${PERCORE_BIN:-}" ]; then
    cargo build --release --quiet
    PERCORE_BIN=$PWD/target/release/percore
fi

cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    for i in $(seq 1 $HOSTS); do ip netns del "$PREFIX$i" 2>/dev/null || true; done
    ip link del "${PREFIX}br" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- the hosts

ip link add "${PREFIX}br" type bridge
ip addr add "$NET.1/24" dev "${PREFIX}br"
ip link set "${PREFIX}br" up
for i in $(seq 1 $HOSTS); do
    ns=$PREFIX$i
    ip netns add "$ns"
    ip link add "${ns}v" type veth peer name eth0 netns "$ns"
    ip link set "${ns}v" master "${PREFIX}br" up
    ip -n "$ns" addr add "$NET.1$i/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
done

# percore on host i, started in its namespace; its PID goes to PERCORE_PID[i].
declare -A PERCORE_PID
start_host() {
    local i=$1
    ip netns exec "$PREFIX$i" "$PERCORE_BIN" --bind "$NET.1$i" --ports "$PORT" --workers 1 \
        --root www --admin "$NET.1$i:$ADMIN_PORT" >>"$TMP/h$i.log" 2>&1 &
    PERCORE_PID[$i]=$!
    PIDS+=("$!")
    for _ in $(seq 100); do
        curl -fsS -o /dev/null --max-time 1 "http://$NET.1$i:$ADMIN_PORT/readyz" 2>/dev/null && return 0
        sleep 0.1
    done
    die "host $i did not become ready; its log: $(cat "$TMP/h$i.log")"
}
for i in $(seq 1 $HOSTS); do start_host "$i"; done

# ---------------------------------------------------------------- the balancer

{
    cat <<EOF
global
    stats socket $TMP/haproxy.sock mode 600 level admin
    maxconn 4000
defaults
    mode tcp
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    retries 3
    option redispatch
frontend front
    bind 127.0.0.1:$FRONT_PORT
    default_backend be
backend be
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
EOF
    for i in $(seq 1 $HOSTS); do
        echo "    server h$i $NET.1$i:$PORT check port $ADMIN_PORT inter 200ms fall 1 rise 2"
    done
} >"$TMP/haproxy.cfg"
haproxy -c -q -f "$TMP/haproxy.cfg" || die "haproxy rejected $TMP/haproxy.cfg"
haproxy -f "$TMP/haproxy.cfg" -db >"$TMP/haproxy.log" 2>&1 &
PIDS+=("$!")

haproxy_cmd() { echo "$*" | socat - "UNIX-CONNECT:$TMP/haproxy.sock" 2>/dev/null ||
    python3 - "$TMP/haproxy.sock" "$*" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(sys.argv[2].encode() + b"\n")
out = b""
while True:
    d = s.recv(65536)
    if not d: break
    out += d
sys.stdout.write(out.decode())
PY
}
# Sessions HAProxy holds to server hN now (`show servers state` has no such column; `show stat`
# has scur, the 5th field).
server_sessions() { haproxy_cmd "show stat" | awk -F, -v s="h$1" '$1 == "be" && $2 == s { print $5 }'; }
server_up() { haproxy_cmd "show stat" | awk -F, -v s="h$1" '$1 == "be" && $2 == s { print $18 }'; }

for _ in $(seq 100); do
    up=0
    for i in $(seq 1 $HOSTS); do [ "$(server_up "$i")" = UP ] && up=$((up + 1)); done
    [ "$up" = $HOSTS ] && break
    sleep 0.1
done
[ "$up" = $HOSTS ] || die "HAProxy sees $up of $HOSTS hosts up; its log: $(cat "$TMP/haproxy.log")"
curl -fsS -o /dev/null "http://127.0.0.1:$FRONT_PORT/" || die "no answer through HAProxy"
echo "three hosts up behind HAProxy on 127.0.0.1:$FRONT_PORT"

# ---------------------------------------------------------------- load, restart, reload

wrk -t1 -c50 -d"${DURATION}s" -H 'Connection: close' "http://127.0.0.1:$FRONT_PORT/" >"$TMP/wrk.log" 2>&1 &
WRK_PID=$!
PIDS+=("$WRK_PID")
sleep 3

for i in $(seq 1 $HOSTS); do
    # UNSAFE_RESTART=1 skips taking the host out of rotation first, to see what that costs.
    [ -n "${UNSAFE_RESTART:-}" ] || haproxy_cmd "set server be/h$i state maint" >/dev/null
    for _ in $(seq 100); do
        [ "$(server_sessions "$i")" = 0 ] && break
        sleep 0.05
    done
    old=${PERCORE_PID[$i]}
    kill -TERM "$old"
    wait "$old" || die "host $i exited with status $? on SIGTERM"
    start_host "$i"
    haproxy_cmd "set server be/h$i state ready" >/dev/null
    for _ in $(seq 100); do
        [ "$(server_up "$i")" = UP ] && break
        sleep 0.05
    done
    echo "host $i restarted (PID $old -> ${PERCORE_PID[$i]})"
    sleep 2
done

for i in $(seq 1 $HOSTS); do
    kill -HUP "${PERCORE_PID[$i]}"
    for _ in $(seq 100); do
        grep -q "SIGHUP: configuration reloaded" "$TMP/h$i.log" && break
        sleep 0.05
    done
    grep -q "SIGHUP: configuration reloaded" "$TMP/h$i.log" ||
        die "host $i did not reload; its log: $(cat "$TMP/h$i.log")"
    echo "host $i reloaded"
    sleep 2
done

wait "$WRK_PID" || true
cat "$TMP/wrk.log"
requests=$(awk '/requests in/ { print $1 }' "$TMP/wrk.log")
errors=$(awk '/Socket errors/ { gsub(",", ""); print $4 + $6 + $8 + $10 }' "$TMP/wrk.log")
non2xx=$(awk '/Non-2xx/ { print $NF }' "$TMP/wrk.log")
errors=${errors:-0} non2xx=${non2xx:-0}
echo "requests: $requests, socket errors: $errors, non-2xx: $non2xx"
[ "$errors" = 0 ] && [ "$non2xx" = 0 ] || die "failed requests during the rolling restart and reload"
echo "multihost: OK, zero failed requests through $HOSTS rolling restarts and $HOSTS rolling reloads"
