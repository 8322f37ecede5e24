#!/usr/bin/env bash
# Side-by-side benchmark of percore and nginx serving the same static files on the same CPU(s),
# and of percore's WebSocket echo (/ws) and a tokio-tungstenite echo server (benches/tokio-echo).
#
# Usage: benches/compare.sh [WORKLOAD...]      (default: every workload)
# HTTP workloads (percore vs nginx, load from wrk): small-ka small-c500 4k 1m close pipeline16
#   js js-gz (a 10 KiB script, plain and, with Accept-Encoding: br, gzip, its precompressed
#   app.js.gz: percore --precompressed --compress off, so that both send app.js.gz, nginx
#   gzip_static on) js-br (Accept-Encoding: br: with BASELINE_BIN, percore's compression on
#   the fly, once, which the default build does; nginx has no brotli and sends the script)
#   tls-small tls-1m tls-close tls-full (HTTPS, TLS 1.3 TLS_AES_128_GCM_SHA256, one ECDSA P-256
#   certificate for all; nginx with ssl_session_cache and tickets; tls-close asks for a new
#   connection per request, which wrk resumes from its TLS session; tls-full too, with wrk's
#   session reuse disabled by benches/no_resume.c, so every connection is a full handshake);
#   tls12-small (tls-small over TLS 1.2 with ECDHE-ECDSA-AES128-GCM-SHA256: wrk is held to it
#   by an OpenSSL configuration file, every server allows TLS 1.2 with that suite).
#   The TLS rows also run h2o (Debian's h2o package, the same certificate, suite and port
#   setup) when it is installed; small-ka small-c500 4k 1m close pipeline16 also run lwan
#   (one thread per server CPU) once benches/peers/lwan/build.sh has built it, and all of them
#   but close run may-minihttp (the files from memory, one may worker per server CPU; it
#   ignores Connection: close) once benches/peers/may-minihttp/build.sh has built it.
# WebSocket workloads (percore vs tokio-echo, load from wsload): ws64 ws16k ws16k-text ws64-deep
#   (ws16k-text: text messages, which every server checks for UTF-8; ws64-deep: 64 messages in
#   flight per connection instead of WS_PIPELINE), and uWebSockets'
#   echo (one thread, its own App and event loop, per server CPU; no compression) once
#   benches/peers/uws/build.sh has built it, and a fastwebsockets echo (hyper 1 + tokio, one
#   runtime worker per server CPU) once benches/peers/fastwebsockets/build.sh has built it;
#   and percore alone (tokio-tungstenite has no permessage-deflate): ws64-deflate ws16k-deflate
#   and wss64 (ws64 over TLS on percore's TLS port: wsload --tls; beside ws64, the cost of TLS)
# Knobs (environment):
#   DURATION=5      seconds per measured wrk/wsload run
#   ROUNDS=5        rounds; each round runs every workload once on each server, order alternating
#   WORKERS=1       percore --workers, nginx worker_processes and tokio-echo --threads (the peers
#                   of benches/peers run one thread per CPU in SERVER_CPUS)
#   SERVER_CPUS     CPUs for the servers (default 0..WORKERS-1), one server at a time runs
#   CLIENT_CPUS     CPUs for wrk and wsload (default: the CPU after SERVER_CPUS)
#   WRK_THREADS=1   wrk -t
#   WSLOAD_THREADS=1  wsload -t
#   WS_PIPELINE=16  wsload --pipeline: WebSocket messages in flight per connection
#   PERCORE_BIN     use this binary instead of running `cargo build --release`
#   WSLOAD_BIN      default: wsload next to PERCORE_BIN
#   TOKIO_ECHO_BIN  use this binary instead of building benches/tokio-echo
#   TCP_CC=cubic    the TCP congestion control of the run: sets the machine-wide
#                   net.ipv4.tcp_congestion_control and restores it on exit (root; otherwise a
#                   warning and the machine's); TCP_CC=keep keeps the machine's. cubic is the
#                   kernel's default; under bbr, pacing costs every server 2-7x the CPU per
#                   1 MiB response on loopback, except lwan, which sets reno on its sockets
#   PERCORE_FLAGS   extra flags for percore (not for a baseline), e.g. "--access-log FILE";
#                   with BASELINE_BIN set to the same binary this measures what a flag costs
#   FASTWEBSOCKETS_FLAGS  extra flags for the fastwebsockets peer, e.g. --nodelay
#   BASELINE_BIN    before/after mode: compare percore with this other percore build (e.g. one
#                   built from main before a change) instead of nginx and tokio-echo, on every
#                   workload; results go to benches/results/baseline.md only
#
# Servers run one at a time: while one is measured the others are idle. Server CPU time is read
# from /proc/PID/stat (utime+stime of all threads; for nginx, master plus worker processes)
# before and after each run and divided by the requests wrk completed (or the messages wsload
# got back). Results go to benches/results/latest.md, or latest-ws.md when only WebSocket
# workloads run (so such a run keeps the HTTP results), with the medians also in latest.csv
# (workload,server,rate,p99_ms,cpu_us,kernel_pct) and drawn by benches/chart.py as latest.svg.
set -euo pipefail
# shellcheck source=benches/lib.sh
source "$(dirname "$0")/lib.sh"

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$BENCH_DIR")
# The peers of issue 15, each once its benches/peers/NAME/build.sh has built it.
LWAN_BIN=$BENCH_DIR/peers/lwan/build/cmake/src/bin/lwan/lwan
MAY_MINIHTTP_BIN=$BENCH_DIR/peers/may-minihttp/build/target/release/may-minihttp-peer
UWS_BIN=$BENCH_DIR/peers/uws/build/uws-echo
FASTWEBSOCKETS_BIN=$BENCH_DIR/peers/fastwebsockets/build/target/release/fastwebsockets-peer
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-5}
WORKERS=${WORKERS:-1}
WRK_THREADS=${WRK_THREADS:-1}
WARMUP_SECONDS=2
WSLOAD_THREADS=${WSLOAD_THREADS:-1}
WS_PIPELINE=${WS_PIPELINE:-16}
ALL_WORKLOADS=(small-ka small-c500 4k 1m close pipeline16 js js-gz js-br tls-small tls-1m tls-close tls-full tls12-small ws64 ws16k ws16k-text ws64-deep ws64-deflate ws16k-deflate wss64)
COMMAND_LINE="$0 $*"

# Prints the comment block at the top of this file.
usage() {
    awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "${BASH_SOURCE[0]}"
}

# Each workload is "connections|path"; run_wrk adds the close header and the pipelining script.
workload_spec() {
    case "$1" in
    small-ka | close | pipeline16) echo "50|/small.html" ;;
    small-c500) echo "500|/small.html" ;;
    4k) echo "50|/4k.bin" ;;
    1m) echo "50|/1m.bin" ;;
    js | js-gz | js-br) echo "50|/app.js" ;;
    tls-small | tls-close | tls-full | tls12-small) echo "50|/small.html" ;;
    tls-1m) echo "50|/1m.bin" ;;
    *) return 1 ;;
    esac
}

# Each WebSocket workload is "connections|message bytes|deflate, text or empty (binary)|messages
# in flight per connection (empty: WS_PIPELINE)".
ws_spec() {
    case "$1" in
    ws64) echo "50|64||" ;;
    ws16k) echo "50|16384||" ;;
    ws16k-text) echo "50|16384|text|" ;;
    ws64-deep) echo "50|64||64" ;;
    ws64-deflate) echo "50|64|deflate|" ;;
    wss64) echo "50|64||" ;;
    ws16k-deflate) echo "50|16384|deflate|" ;;
    *) return 1 ;;
    esac
}

is_ws() { [[ "$1" == ws* ]]; }
is_tls() { [[ "$1" == tls* || "$1" == wss* ]]; }

# The servers a workload compares, in the order of odd rounds.
servers_for() {
    if [ -n "${BASELINE_BIN:-}" ]; then
        echo percore baseline
        return
    fi
    local list
    case "$1" in
    ws*-deflate | wss*) list=(percore) ;;
    ws*)
        list=(percore tokio)
        if [ -x "$UWS_BIN" ]; then list+=(uws); fi
        if [ -x "$FASTWEBSOCKETS_BIN" ]; then list+=(fastwebsockets); fi
        ;;
    tls*) if command -v h2o >/dev/null 2>&1; then list=(percore nginx h2o); else list=(percore nginx); fi ;;
    small-ka | small-c500 | 4k | 1m | close | pipeline16)
        list=(percore nginx)
        if [ -x "$LWAN_BIN" ]; then list+=(lwan); fi
        # may_minihttp keeps every connection open whatever the request says, so wrk would run
        # the close row over keep-alive connections against it: it has no close row.
        if [ -x "$MAY_MINIHTTP_BIN" ] && [ "$1" != close ]; then list+=(may-minihttp); fi
        ;;
    *) list=(percore nginx) ;;
    esac
    echo "${list[*]}"
}

workload_title() {
    case "$1" in
    ws64) echo "WebSocket echo, 64 B binary, 50 conns" ;;
    ws16k) echo "WebSocket echo, 16 KiB binary, 50 conns" ;;
    ws16k-text) echo "WebSocket echo, 16 KiB text (checked UTF-8), 50 conns" ;;
    ws64-deep) echo "WebSocket echo, 64 B binary, 50 conns, 64 in flight each" ;;
    ws64-deflate) echo "WebSocket echo, 64 B, permessage-deflate, 50 conns" ;;
    wss64) echo "WebSocket echo over TLS 1.3, 64 B binary, 50 conns" ;;
    ws16k-deflate) echo "WebSocket echo, 16 KiB, permessage-deflate, 50 conns" ;;
    small-ka) echo "small (150 B) keep-alive, 50 conns" ;;
    small-c500) echo "small (150 B) keep-alive, 500 conns" ;;
    4k) echo "4 KiB keep-alive, 50 conns" ;;
    1m) echo "1 MiB keep-alive, 50 conns" ;;
    close) echo "small, new connection per request, 50 conns" ;;
    pipeline16) echo "small, pipelined x16, 50 conns" ;;
    js) echo "10 KiB script keep-alive, 50 conns" ;;
    js-gz) echo "same script, Accept-Encoding: br, gzip (its .gz), 50 conns" ;;
    js-br) echo "same script, Accept-Encoding: br (percore: compressed once; nginx: plain)" ;;
    tls-small) echo "HTTPS small (150 B) keep-alive, 50 conns" ;;
    tls-1m) echo "HTTPS 1 MiB keep-alive, 50 conns" ;;
    tls-close) echo "HTTPS small, new (resumed) TLS connection per request, 50 conns" ;;
    tls-full) echo "HTTPS small, new TLS connection per request, full handshake, 50 conns" ;;
    tls12-small) echo "HTTPS small (150 B) keep-alive over TLS 1.2, 50 conns" ;;
    esac
}

# ---------------------------------------------------------------- arguments and tools

WORKLOADS=()
for arg in "$@"; do
    case "$arg" in
    -h | --help)
        usage
        exit 0
        ;;
    *)
        workload_spec "$arg" >/dev/null || ws_spec "$arg" >/dev/null ||
            die "unknown workload '$arg' (known: ${ALL_WORKLOADS[*]})"
        WORKLOADS+=("$arg")
        ;;
    esac
done
[ ${#WORKLOADS[@]} -gt 0 ] || WORKLOADS=("${ALL_WORKLOADS[@]}")

[[ "$DURATION" =~ ^[1-9][0-9]*$ ]] || die "DURATION must be a positive integer of seconds"
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
[[ "$WORKERS" =~ ^[1-9][0-9]*$ ]] || die "WORKERS must be a positive integer"
[[ "$WS_PIPELINE" =~ ^[1-9][0-9]*$ ]] || die "WS_PIPELINE must be a positive integer"

# Which servers and load generators the chosen workloads need.
NEED_NGINX=0 NEED_TOKIO=0 NEED_WSLOAD=0 NEED_WRK=0 NEED_TLS=0 NEED_H2O=0 NEED_SHIM=0 NEED_LWAN=0
NEED_MAY_MINIHTTP=0 NEED_UWS=0 NEED_FASTWEBSOCKETS=0
HTTP_WORKLOADS=() WS_WORKLOADS=()
for w in "${WORKLOADS[@]}"; do
    if is_ws "$w"; then
        NEED_WSLOAD=1
        WS_WORKLOADS+=("$w")
        if is_tls "$w"; then NEED_TLS=1; fi
        case " $(servers_for "$w") " in *" tokio "*) NEED_TOKIO=1 ;; esac
        case " $(servers_for "$w") " in *" uws "*) NEED_UWS=1 ;; esac
        case " $(servers_for "$w") " in *" fastwebsockets "*) NEED_FASTWEBSOCKETS=1 ;; esac
    else
        NEED_WRK=1
        if is_tls "$w"; then NEED_TLS=1; fi
        case " $(servers_for "$w") " in *" nginx "*) NEED_NGINX=1 ;; esac
        case " $(servers_for "$w") " in *" h2o "*) NEED_H2O=1 ;; esac
        case " $(servers_for "$w") " in *" lwan "*) NEED_LWAN=1 ;; esac
        case " $(servers_for "$w") " in *" may-minihttp "*) NEED_MAY_MINIHTTP=1 ;; esac
        [ "$w" = tls-full ] && NEED_SHIM=1
        HTTP_WORKLOADS+=("$w")
    fi
done
if [ -n "${BASELINE_BIN:-}" ]; then
    [ -x "$BASELINE_BIN" ] || die "BASELINE_BIN=$BASELINE_BIN is not executable"
fi

missing=()
tools=(curl taskset ss getconf)
[ "$NEED_WRK" = 1 ] && tools+=(wrk)
[ "$NEED_NGINX" = 1 ] && tools+=(nginx)
for tool in "${tools[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "compare.sh: missing tools: ${missing[*]}" >&2
    echo "Install them with: apt-get update && apt-get install -y wrk nginx curl util-linux iproute2" >&2
    exit 1
fi
if [ "$NEED_NGINX" = 1 ] && [ "$(id -u)" -ne 0 ]; then
    echo "compare.sh: warning: not root; nginx's 'user root;' line will be ignored" >&2
fi

NCPU=$(nproc)
SERVER_CPUS=${SERVER_CPUS:-0-$((WORKERS - 1))}
# The peers whose run.sh takes one thread per CPU in SERVER_CPUS run this many.
SERVER_NCPU=$(taskset -c "$SERVER_CPUS" nproc) || die "SERVER_CPUS=$SERVER_CPUS is not a CPU list taskset accepts"
if [ -z "${CLIENT_CPUS:-}" ]; then
    if [ "$WORKERS" -lt "$NCPU" ]; then
        CLIENT_CPUS=$WORKERS
    else
        CLIENT_CPUS=$((NCPU - 1))
        echo "compare.sh: warning: WORKERS=$WORKERS leaves no CPU for the load generator; it shares CPU $CLIENT_CPUS" >&2
    fi
fi
CLK_TCK=$(getconf CLK_TCK)
CC_SYSCTL=/proc/sys/net/ipv4/tcp_congestion_control
CC_BEFORE=$(cat "$CC_SYSCTL" 2>/dev/null || echo unknown)
CC_RESTORE=""
TCP_CC=${TCP_CC:-cubic}
if [ "$TCP_CC" != keep ] && [ "$TCP_CC" != "$CC_BEFORE" ]; then
    if echo "$TCP_CC" 2>/dev/null >"$CC_SYSCTL"; then
        CC_RESTORE=$CC_BEFORE
    else
        echo "compare.sh: warning: cannot set $CC_SYSCTL to $TCP_CC (root, and one of: $(cat /proc/sys/net/ipv4/tcp_available_congestion_control 2>/dev/null)); running with $CC_BEFORE" >&2
    fi
fi
TCP_CC=$(cat "$CC_SYSCTL" 2>/dev/null || echo unknown)
# wrk at 500 connections and nginx both need more descriptors than a default 1024.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ---------------------------------------------------------------- build and document root

percore_bin "$REPO_DIR"
WSLOAD_BIN=${WSLOAD_BIN:-$(dirname "$PERCORE_BIN")/wsload}
if [ "$NEED_WSLOAD" = 1 ]; then
    [ -x "$WSLOAD_BIN" ] || die "no wsload at $WSLOAD_BIN (cargo build --release at the top level builds it beside percore; or set WSLOAD_BIN)"
fi
if [ "$NEED_TOKIO" = 1 ] && [ -z "${TOKIO_ECHO_BIN:-}" ]; then
    echo "Building tokio-echo (cargo build --release --manifest-path benches/tokio-echo/Cargo.toml)..."
    cargo build --release --quiet --manifest-path "$BENCH_DIR/tokio-echo/Cargo.toml" ||
        die "building benches/tokio-echo failed"
    TOKIO_ECHO_BIN=$BENCH_DIR/tokio-echo/target/release/tokio-echo
fi
if [ "$NEED_TOKIO" = 1 ]; then
    [ -x "$TOKIO_ECHO_BIN" ] || die "TOKIO_ECHO_BIN=$TOKIO_ECHO_BIN is not executable"
fi

TMP=$(mktemp -d /tmp/percore-compare.XXXXXX)
chmod 755 "$TMP"
ROOT=$TMP/www
mkdir -p "$ROOT"
PERCORE_PID=""
NGINX_PID=""
TOKIO_PID=""
BASELINE_PID=""
H2O_PID=""
LWAN_PID=""
MAY_MINIHTTP_PID=""
UWS_PID=""
FASTWEBSOCKETS_PID=""

cleanup() {
    stop_server "$PERCORE_PID"
    stop_server "$BASELINE_PID"
    stop_server "$NGINX_PID"
    stop_server "$TOKIO_PID"
    stop_server "$H2O_PID"
    stop_server "$LWAN_PID"
    stop_server "$MAY_MINIHTTP_PID"
    stop_server "$UWS_PID"
    stop_server "$FASTWEBSOCKETS_PID"
    wait 2>/dev/null || true
    rm -rf "$TMP"
    if [ -n "$CC_RESTORE" ]; then echo "$CC_RESTORE" >"$CC_SYSCTL" || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# small.html is exactly 150 bytes so both servers send the same body.
{
    printf '<!doctype html>\n<html><head><title>small</title></head>\n'
    printf '<body><p>percore vs nginx: a small static page.</p></body></html>\n'
} >"$ROOT/small.html"
pad=$((150 - $(stat -c %s "$ROOT/small.html")))
if [ "$pad" -ge 1 ]; then printf '%*s\n' "$((pad - 1))" '' >>"$ROOT/small.html"; fi
head -c 4096 /dev/urandom >"$ROOT/4k.bin"
head -c 1048576 /dev/urandom >"$ROOT/1m.bin"
printf '<!doctype html>\n<html><body><p>index</p></body></html>\n' >"$ROOT/index.html"
# A small script and its precompressed sibling, as a site's build would leave them.
for i in $(seq 1 120); do
    printf 'export function handler%d(event) { return render("item-%d", event.target.value); }\n' "$i" "$i"
done >"$ROOT/app.js"
gzip -k -9 "$ROOT/app.js"

# ---------------------------------------------------------------- servers

pick_free_port() {
    local port
    for port in $(seq "$1" $(($1 + 200))); do
        if port_is_free "$port"; then
            echo "$port"
            return 0
        fi
    done
    die "no free TCP port in $1..$(($1 + 200))"
}

# Waits until the server answers HTTP on its port; fails if the process exits first.
wait_until_serving() {
    local name=$1 pid=$2 port=$3 log=$4
    for _ in $(seq 100); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "compare.sh: $name exited during startup; last lines of $log:" >&2
            tail -n 20 "$log" >&2 || true
            exit 1
        fi
        if curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$port/small.html" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "compare.sh: $name did not answer on port $port within 10 s; last lines of $log:" >&2
    tail -n 20 "$log" >&2 || true
    exit 1
}

PERCORE_PORT=$(pick_free_port 18080)
# HTTPS: one ECDSA P-256 certificate for every server, and one more port each.
TLS_FLAGS=() PERCORE_TLS_PORT="" BASELINE_TLS_PORT="" NGINX_TLS_PORT=""
if [ "$NEED_TLS" = 1 ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -keyout "$TMP/key.pem" -out "$TMP/cert.pem" -subj /CN=localhost \
        -addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null ||
        die "openssl could not make a test certificate"
    PERCORE_TLS_PORT=$(pick_free_port $((PERCORE_PORT + 10)))
    TLS_FLAGS=(--tls-ports "$PERCORE_TLS_PORT" --tls-cert "$TMP/cert.pem" --tls-key "$TMP/key.pem")
fi
# shellcheck disable=SC2086 # PERCORE_FLAGS is a list of words
taskset -c "$SERVER_CPUS" "$PERCORE_BIN" --bind 127.0.0.1 \
    --ports "$PERCORE_PORT${PERCORE_TLS_PORT:+,$PERCORE_TLS_PORT}" "${TLS_FLAGS[@]}" \
    --workers "$WORKERS" --root "$ROOT" --admin off --log-level warn ${PERCORE_FLAGS:-} \
    $([ -n "${BASELINE_BIN:-}" ] || echo --precompressed br,zstd,gzip --compress off) \
    >"$TMP/percore.log" 2>&1 &
PERCORE_PID=$!
wait_until_serving percore "$PERCORE_PID" "$PERCORE_PORT" "$TMP/percore.log"

# Fails the run unless the server `$1` on port `$2` sends the benchmark files byte for byte:
# otherwise the comparison is meaningless.
check_bodies() {
    local file
    for file in small.html 4k.bin 1m.bin; do
        curl -fsS "http://127.0.0.1:$2/$file" | cmp -s - "$ROOT/$file" ||
            die "$1 returned a different body for /$file"
    done
}

BASELINE_PORT=""
if [ -n "${BASELINE_BIN:-}" ]; then
    BASELINE_PORT=$(pick_free_port $((PERCORE_PORT + 3)))
    BASELINE_TLS_FLAGS=()
    if [ "$NEED_TLS" = 1 ]; then
        BASELINE_TLS_PORT=$(pick_free_port $((PERCORE_PORT + 13)))
        BASELINE_TLS_FLAGS=(--tls-ports "$BASELINE_TLS_PORT" --tls-cert "$TMP/cert.pem" --tls-key "$TMP/key.pem")
    fi
    taskset -c "$SERVER_CPUS" "$BASELINE_BIN" --bind 127.0.0.1 \
        --ports "$BASELINE_PORT${BASELINE_TLS_PORT:+,$BASELINE_TLS_PORT}" "${BASELINE_TLS_FLAGS[@]}" \
        --workers "$WORKERS" --root "$ROOT" --admin off --log-level warn \
        >"$TMP/baseline.log" 2>&1 &
    BASELINE_PID=$!
    wait_until_serving baseline "$BASELINE_PID" "$BASELINE_PORT" "$TMP/baseline.log"
    check_bodies "the baseline" "$BASELINE_PORT"
fi

NGINX_PORT=""
if [ "$NEED_NGINX" = 1 ]; then
    NGINX_PORT=$(pick_free_port $((PERCORE_PORT + 1)))
    mkdir -p "$TMP/nginx.d"
    if [ "$NEED_TLS" = 1 ]; then
        NGINX_TLS_PORT=$(pick_free_port $((PERCORE_PORT + 11)))
        # The same protocol, suite and certificate as percore's; a session cache and tickets,
        # as percore resumes by tickets.
        cat >"$TMP/nginx.d/tls.conf" <<NGINX_TLS
server {
    listen 127.0.0.1:$NGINX_TLS_PORT ssl reuseport deferred;
    ssl_certificate $TMP/cert.pem;
    ssl_certificate_key $TMP/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256;
    ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256;
    ssl_session_cache shared:SSL:10m;
    ssl_session_tickets on;
    root $ROOT;
    index index.html;
}
NGINX_TLS
    fi
    sed -e "s|@WORKERS@|$WORKERS|g" -e "s|@TMP@|$TMP|g" -e "s|@PORT@|$NGINX_PORT|g" \
        -e "s|@ROOT@|$ROOT|g" "$BENCH_DIR/nginx.conf.in" >"$TMP/nginx.conf"
    nginx -t -q -p "$TMP" -e "$TMP/nginx-error.log" -c "$TMP/nginx.conf" -g 'daemon off;' ||
        die "nginx rejected the generated config $TMP/nginx.conf"
    taskset -c "$SERVER_CPUS" nginx -p "$TMP" -e "$TMP/nginx-error.log" -c "$TMP/nginx.conf" \
        -g 'daemon off;' >"$TMP/nginx.log" 2>&1 &
    NGINX_PID=$!
    wait_until_serving nginx "$NGINX_PID" "$NGINX_PORT" "$TMP/nginx-error.log"

    check_bodies percore "$PERCORE_PORT"
    check_bodies nginx "$NGINX_PORT"
    for port in "$PERCORE_PORT" "$NGINX_PORT"; do
        curl -fsS -H 'Accept-Encoding: br, gzip' "http://127.0.0.1:$port/app.js" |
            cmp -s - "$ROOT/app.js.gz" || die "server on port $port did not send app.js.gz"
    done
fi

LWAN_PORT=""
if [ "$NEED_LWAN" = 1 ]; then
    LWAN_PORT=$(pick_free_port $((PERCORE_PORT + 4)))
    DOCROOT=$ROOT "$BENCH_DIR/peers/lwan/run.sh" "$LWAN_PORT" "$SERVER_CPUS" >"$TMP/lwan.log" 2>&1 &
    LWAN_PID=$!
    wait_until_serving lwan "$LWAN_PID" "$LWAN_PORT" "$TMP/lwan.log"
    check_bodies lwan "$LWAN_PORT"
fi

MAY_MINIHTTP_PORT=""
if [ "$NEED_MAY_MINIHTTP" = 1 ]; then
    # It reads the files into memory when it starts, so it starts after they are written.
    MAY_MINIHTTP_PORT=$(pick_free_port $((PERCORE_PORT + 5)))
    DOCROOT=$ROOT "$BENCH_DIR/peers/may-minihttp/run.sh" "$MAY_MINIHTTP_PORT" "$SERVER_CPUS" \
        >"$TMP/may-minihttp.log" 2>&1 &
    MAY_MINIHTTP_PID=$!
    wait_until_serving may-minihttp "$MAY_MINIHTTP_PID" "$MAY_MINIHTTP_PORT" "$TMP/may-minihttp.log"
    check_bodies may-minihttp "$MAY_MINIHTTP_PORT"
fi

H2O_TLS_PORT=""
if [ "$NEED_H2O" = 1 ]; then
    H2O_TLS_PORT=$(pick_free_port $((PERCORE_PORT + 12)))
    # h2o 2.2 has no setting for TLS 1.3 suites: OpenSSL's own configuration file gives it the
    # same one suite as the others.
    write_openssl_conf "$TMP/h2o-openssl.cnf" "Ciphersuites = TLS_AES_128_GCM_SHA256"
    write_h2o_conf "$TMP/h2o.conf" "$WORKERS" "$H2O_TLS_PORT" "$TMP/cert.pem" "$TMP/key.pem" "$ROOT" "$TMP"
    OPENSSL_CONF=$TMP/h2o-openssl.cnf taskset -c "$SERVER_CPUS" h2o -c "$TMP/h2o.conf" \
        >"$TMP/h2o.log" 2>&1 &
    H2O_PID=$!
    for _ in $(seq 100); do
        kill -0 "$H2O_PID" 2>/dev/null || { tail -n 20 "$TMP/h2o.log" >&2; die "h2o exited during startup"; }
        curl -kfsS -o /dev/null --max-time 1 "https://127.0.0.1:$H2O_TLS_PORT/small.html" 2>/dev/null && break
        sleep 0.1
    done
    openssl s_client -connect "127.0.0.1:$H2O_TLS_PORT" </dev/null 2>/dev/null |
        grep -q 'Cipher is TLS_AES_128_GCM_SHA256' || die "h2o did not choose TLS_AES_128_GCM_SHA256"
fi

# wrk speaks TLS 1.2 with one suite when OpenSSL's configuration says so (tls12-* rows).
write_openssl_conf "$TMP/tls12-client.cnf" "MaxProtocol = TLSv1.2" \
    "CipherString = ECDHE-ECDSA-AES128-GCM-SHA256"

NO_RESUME_SHIM=""
if [ "$NEED_SHIM" = 1 ]; then
    NO_RESUME_SHIM=$TMP/no_resume.so
    cc -shared -fPIC -O2 -o "$NO_RESUME_SHIM" "$BENCH_DIR/no_resume.c" -ldl ||
        die "could not build benches/no_resume.c (needs a C compiler)"
fi

# Over TLS too, every server must send the same bytes.
if [ "$NEED_TLS" = 1 ]; then
    for port in $PERCORE_TLS_PORT $BASELINE_TLS_PORT $NGINX_TLS_PORT $H2O_TLS_PORT; do
        for file in small.html 1m.bin; do
            curl -fsS --cacert "$TMP/cert.pem" "https://localhost:$port/$file" \
                --resolve "localhost:$port:127.0.0.1" | cmp -s - "$ROOT/$file" ||
                die "the TLS server on port $port returned a different body for /$file"
        done
    done
fi

# A few verified echoes through wsload; prints its report.
ws_probe() {
    "$WSLOAD_BIN" --ports "$1" -c 1 --messages 20 --size 1000 "${@:2}" 2>/dev/null
}

# Waits until a WebSocket echo server echoes; fails if the process exits first.
wait_until_echoing() {
    local name=$1 pid=$2 port=$3 log=$4
    for _ in $(seq 100); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "compare.sh: $name exited during startup; last lines of $log:" >&2
            tail -n 20 "$log" >&2 || true
            exit 1
        fi
        ws_probe "$port" >/dev/null && return 0
        sleep 0.1
    done
    echo "compare.sh: $name did not echo WebSocket messages on port $port within 10 s; last lines of $log:" >&2
    tail -n 20 "$log" >&2 || true
    exit 1
}

UWS_PORT=""
if [ "$NEED_UWS" = 1 ]; then
    UWS_PORT=$(pick_free_port $((PERCORE_PORT + 6)))
    "$BENCH_DIR/peers/uws/run.sh" "$UWS_PORT" "$SERVER_CPUS" >"$TMP/uws.log" 2>&1 &
    UWS_PID=$!
    wait_until_echoing uws "$UWS_PID" "$UWS_PORT" "$TMP/uws.log"
fi

FASTWEBSOCKETS_PORT=""
if [ "$NEED_FASTWEBSOCKETS" = 1 ]; then
    FASTWEBSOCKETS_PORT=$(pick_free_port $((PERCORE_PORT + 7)))
    "$BENCH_DIR/peers/fastwebsockets/run.sh" "$FASTWEBSOCKETS_PORT" "$SERVER_CPUS" >"$TMP/fastwebsockets.log" 2>&1 &
    FASTWEBSOCKETS_PID=$!
    wait_until_echoing fastwebsockets "$FASTWEBSOCKETS_PID" "$FASTWEBSOCKETS_PORT" "$TMP/fastwebsockets.log"
fi

TOKIO_PORT=""
if [ "$NEED_TOKIO" = 1 ]; then
    TOKIO_PORT=$(pick_free_port $((PERCORE_PORT + 2)))
    taskset -c "$SERVER_CPUS" "$TOKIO_ECHO_BIN" --bind 127.0.0.1 --port "$TOKIO_PORT" \
        --threads "$WORKERS" >"$TMP/tokio.log" 2>&1 &
    TOKIO_PID=$!
    wait_until_echoing tokio-echo "$TOKIO_PID" "$TOKIO_PORT" "$TMP/tokio.log"
fi
if [ "$NEED_WSLOAD" = 1 ]; then
    wait_until_echoing percore "$PERCORE_PID" "$PERCORE_PORT" "$TMP/percore.log"
    if [ -n "$BASELINE_PID" ]; then
        wait_until_echoing baseline "$BASELINE_PID" "$BASELINE_PORT" "$TMP/baseline.log"
    fi
    case " ${WS_WORKLOADS[*]} " in
    *-deflate" "*)
        ws_probe "$PERCORE_PORT" --deflate | grep -q 'negotiated on 1 of 1' ||
            die "percore did not negotiate permessage-deflate with wsload --deflate"
        ;;
    esac
fi

server_pid() {
    case "$1" in
    percore) echo "$PERCORE_PID" ;;
    baseline) echo "$BASELINE_PID" ;;
    nginx) echo "$NGINX_PID" ;;
    tokio) echo "$TOKIO_PID" ;;
    h2o) echo "$H2O_PID" ;;
    lwan) echo "$LWAN_PID" ;;
    may-minihttp) echo "$MAY_MINIHTTP_PID" ;;
    uws) echo "$UWS_PID" ;;
    fastwebsockets) echo "$FASTWEBSOCKETS_PID" ;;
    esac
}
server_tls_port() {
    case "$1" in
    percore) echo "$PERCORE_TLS_PORT" ;;
    baseline) echo "$BASELINE_TLS_PORT" ;;
    nginx) echo "$NGINX_TLS_PORT" ;;
    h2o) echo "$H2O_TLS_PORT" ;;
    esac
}
server_port() {
    case "$1" in
    percore) echo "$PERCORE_PORT" ;;
    baseline) echo "$BASELINE_PORT" ;;
    nginx) echo "$NGINX_PORT" ;;
    tokio) echo "$TOKIO_PORT" ;;
    lwan) echo "$LWAN_PORT" ;;
    may-minihttp) echo "$MAY_MINIHTTP_PORT" ;;
    uws) echo "$UWS_PORT" ;;
    fastwebsockets) echo "$FASTWEBSOCKETS_PORT" ;;
    esac
}
server_log() {
    case "$1" in
    percore) echo "$TMP/percore.log" ;;
    baseline) echo "$TMP/baseline.log" ;;
    nginx) echo "$TMP/nginx-error.log" ;;
    tokio) echo "$TMP/tokio.log" ;;
    h2o) echo "$TMP/h2o.log" ;;
    lwan) echo "$TMP/lwan.log" ;;
    may-minihttp) echo "$TMP/may-minihttp.log" ;;
    uws) echo "$TMP/uws.log" ;;
    fastwebsockets) echo "$TMP/fastwebsockets.log" ;;
    esac
}

# CPU clock ticks of a process and its child processes, as "utime stime" (fields 14 and 15 of
# /proc/PID/stat, counted after the ")" closing the command name).
cpu_ticks() {
    local pid user=0 sys=0 u s
    for pid in "$1" $(ps -o pid= --ppid "$1" 2>/dev/null); do
        read -r u s < <(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{ print $12, $13 }') || true
        user=$((user + ${u:-0}))
        sys=$((sys + ${s:-0}))
    done
    echo "$user $sys"
}

assert_alive() {
    kill -0 "$(server_pid "$1")" 2>/dev/null && return 0
    echo "compare.sh: $1 died; last lines of its log:" >&2
    tail -n 20 "$(server_log "$1")" >&2
    exit 1
}

# ---------------------------------------------------------------- measuring

RESULTS=$TMP/results.tsv
if [ -n "$BASELINE_PID" ]; then
    RESULT_NAME=baseline
elif [ ${#HTTP_WORKLOADS[@]} -gt 0 ]; then
    RESULT_NAME=latest
else
    RESULT_NAME=latest-ws
fi
RAW_LOG=$BENCH_DIR/results/$RESULT_NAME-raw.log
mkdir -p "$BENCH_DIR/results"
: >"$RESULTS"
: >"$RAW_LOG"

# Runs wrk against one server; prints the wrk output.
run_wrk() {
    local server=$1 workload=$2 seconds=$3 conns path
    IFS='|' read -r conns path <<<"$(workload_spec "$workload")"
    local args=(-t"$WRK_THREADS" -c"$conns" -d"${seconds}s" --latency)
    case "$workload" in
    close | tls-close | tls-full) args+=(-H 'Connection: close') ;;
    js-gz) args+=(-H 'Accept-Encoding: br, gzip') ;;
    js-br) args+=(-H 'Accept-Encoding: br') ;;
    pipeline16) args+=(-s "$BENCH_DIR/pipeline.lua") ;;
    esac
    if is_tls "$workload"; then
        args+=("https://127.0.0.1:$(server_tls_port "$server")$path")
    else
        args+=("http://127.0.0.1:$(server_port "$server")$path")
    fi
    [ "$workload" = pipeline16 ] && args+=(-- 16)
    if [ "$workload" = tls-full ]; then
        LD_PRELOAD=$NO_RESUME_SHIM taskset -c "$CLIENT_CPUS" wrk "${args[@]}" 2>&1
    elif [[ "$workload" == tls12-* ]]; then
        OPENSSL_CONF=$TMP/tls12-client.cnf taskset -c "$CLIENT_CPUS" wrk "${args[@]}" 2>&1
    else
        taskset -c "$CLIENT_CPUS" wrk "${args[@]}" 2>&1
    fi
}

# Converts a wrk latency such as 812.00us, 1.20ms or 2.01s to milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /m$/) n *= 60000; else if (v ~ /s$/) n *= 1000
        printf "%.3f", n
    }'
}

# Runs wsload against one server; prints its report and a line "wsload-time: real user sys".
# wsload exits 1 when it counted errors: the report says which, so that is not fatal here.
run_wsload() {
    local server=$1 workload=$2 seconds=$3 conns size mode pipeline status=0
    IFS='|' read -r conns size mode pipeline <<<"$(ws_spec "$workload")"
    local port
    port=$(if is_tls "$workload"; then server_tls_port "$server"; else server_port "$server"; fi)
    local args=(--host 127.0.0.1 --ports "$port" -c "$conns" --size "$size"
        --duration "$seconds" --pipeline "${pipeline:-$WS_PIPELINE}" -t "$WSLOAD_THREADS")
    if [ "$mode" = text ]; then args+=(--text); else args+=(--binary); fi
    is_tls "$workload" && args+=(--tls)
    [ "$mode" = deflate ] && args+=(--deflate)
    local TIMEFORMAT='wsload-time: %R %U %S'
    { time taskset -c "$CLIENT_CPUS" "$WSLOAD_BIN" "${args[@]}" 2>"$TMP/wsload.err"; } 2>&1 || status=$?
    [ "$status" -le 1 ] || {
        cat "$TMP/wsload.err"
        return 1
    }
}

# Runs `$4 server workload DURATION` (run_wrk or run_wsload) against one server and logs its
# output; sets the caller's `out` to that output, `ticks` to the server's CPU clock ticks
# (utime+stime) spent meanwhile and `kernel_pct` to stime's share of them.
run_measured() {
    local server=$1 workload=$2 round=$3 runner=$4 pid user0 sys0 user1 sys1
    pid=$(server_pid "$server")
    assert_alive "$server"
    read -r user0 sys0 <<<"$(cpu_ticks "$pid")"
    out=$("$runner" "$server" "$workload" "$DURATION") || {
        printf '%s\n' "$out" >&2
        die "${runner#run_} failed against $server ($workload)"
    }
    read -r user1 sys1 <<<"$(cpu_ticks "$pid")"
    ticks=$((user1 - user0 + sys1 - sys0))
    kernel_pct=$(awk -v s=$((sys1 - sys0)) -v t="$ticks" 'BEGIN { if (t > 0) printf "%.0f", s / t * 100; else print "nan" }')
    assert_alive "$server"
    printf '=== round %s %s %s\n%s\n\n' "$round" "$workload" "$server" "$out" >>"$RAW_LOG"
}

# Server CPU µs per item: ticks / CLK_TCK / n, or nan when nothing completed.
cpu_us_per() {
    awk -v t="$1" -v hz="$CLK_TCK" -v n="$2" 'BEGIN { if (n > 0) printf "%.3f", t / hz * 1e6 / n; else print "nan" }'
}

measure_ws() {
    local server=$1 workload=$2 round=$3 out ticks kernel_pct messages rate p99 cpu_us errors
    local real user sys conns server_busy client_busy
    run_measured "$server" "$workload" "$round" run_wsload
    messages=$(awk '$1 == "messages:" { print $2; exit }' <<<"$out")
    rate=$(awk '$1 == "messages/s:" { print $2; exit }' <<<"$out")
    p99=$(awk '$1 == "latency" { for (i = 1; i < NF; i++) if ($i == "p99") print $(i + 1); exit }' <<<"$out")
    read -r real user sys < <(awk '$1 == "wsload-time:" { print $2, $3, $4; exit }' <<<"$out")
    [ -n "$messages" ] && [ -n "$rate" ] && [ -n "$p99" ] && [ -n "${sys:-}" ] || {
        printf '%s\n' "$out" >&2
        die "could not parse wsload output for $server ($workload)"
    }
    cpu_us=$(cpu_us_per "$ticks" "$messages")
    server_busy=$(awk -v t="$ticks" -v hz="$CLK_TCK" -v r="$real" 'BEGIN { printf "%.0f", t / hz / r * 100 }')
    client_busy=$(awk -v u="$user" -v s="$sys" -v r="$real" 'BEGIN { printf "%.0f", (u + s) / r * 100 }')
    # Every echo verified and every connection closed with 1000, or the errors are shown.
    errors=$(awk '$1 == "errors:" && $2 != "0"' <<<"$out")
    conns=$(ws_spec "$workload" | cut -d'|' -f1)
    grep -qx "close codes: 1000 x$conns" <<<"$out" ||
        errors="${errors:+$errors; }$(grep '^close codes:' <<<"$out")"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$workload" "$server" "$round" "$rate" "$p99" "$cpu_us" \
        "${errors:-}" "$server_busy" "$client_busy" "$kernel_pct" >>"$RESULTS"
    printf '  round %s  %-13s %-12s %12s msg/s  p99 %9s ms  %8s CPU us/msg (%s%% kernel)  busy: server %s%% wsload %s%%%s\n' \
        "$round" "$workload" "$server" "$rate" "$p99" "$cpu_us" "$kernel_pct" "$server_busy" "$client_busy" \
        "${errors:+  ERRORS: $errors}"
}

measure() {
    if is_ws "$2"; then
        measure_ws "$@"
        return
    fi
    local server=$1 workload=$2 round=$3 out ticks kernel_pct requests rps p99 cpu_us errors
    run_measured "$server" "$workload" "$round" run_wrk
    requests=$(awk '/ requests in / { print $1; exit }' <<<"$out")
    rps=$(awk '/^Requests\/sec:/ { print $2; exit }' <<<"$out")
    p99=$(awk '$1 == "99%" { print $2; exit }' <<<"$out")
    [ -n "$requests" ] && [ -n "$rps" ] && [ -n "$p99" ] || {
        printf '%s\n' "$out" >&2
        die "could not parse wrk output for $server ($workload)"
    }
    p99=$(to_ms "$p99")
    cpu_us=$(cpu_us_per "$ticks" "$requests")
    errors=$(grep -E 'Socket errors|Non-2xx' <<<"$out" | sed 's/^ *//' | paste -sd ';' -) || true
    # Columns 8 and 9 (busy %) are the WebSocket rows' only.
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t\t\t%s\n' "$workload" "$server" "$round" "$rps" "$p99" "$cpu_us" "${errors:-}" \
        "$kernel_pct" >>"$RESULTS"
    printf '  round %s  %-10s %-12s %12s req/s  p99 %9s ms  %8s CPU us/req (%s%% kernel)%s\n' \
        "$round" "$workload" "$server" "$rps" "$p99" "$cpu_us" "$kernel_pct" "${errors:+  ERRORS: $errors}"
}

echo
echo "percore: $PERCORE_BIN on 127.0.0.1:$PERCORE_PORT (pid $PERCORE_PID)"
[ -n "$BASELINE_PID" ] && echo "baseline: $BASELINE_BIN on 127.0.0.1:$BASELINE_PORT (pid $BASELINE_PID)"
[ "$NEED_NGINX" = 1 ] && echo "nginx on 127.0.0.1:$NGINX_PORT (pid $NGINX_PID)"
[ "$NEED_TOKIO" = 1 ] && echo "tokio-echo: $TOKIO_ECHO_BIN on 127.0.0.1:$TOKIO_PORT (pid $TOKIO_PID)"
[ "$NEED_LWAN" = 1 ] && echo "lwan: $LWAN_BIN on 127.0.0.1:$LWAN_PORT (pid $LWAN_PID)"
[ "$NEED_MAY_MINIHTTP" = 1 ] && echo "may-minihttp: $MAY_MINIHTTP_BIN on 127.0.0.1:$MAY_MINIHTTP_PORT (pid $MAY_MINIHTTP_PID)"
[ "$NEED_UWS" = 1 ] && echo "uws: $UWS_BIN on 127.0.0.1:$UWS_PORT (pid $UWS_PID), $SERVER_NCPU thread(s)"
[ "$NEED_FASTWEBSOCKETS" = 1 ] && echo "fastwebsockets: $FASTWEBSOCKETS_BIN on 127.0.0.1:$FASTWEBSOCKETS_PORT (pid $FASTWEBSOCKETS_PID), $SERVER_NCPU runtime thread(s)"
echo "servers on CPU(s) $SERVER_CPUS, load generator on CPU(s) $CLIENT_CPUS; $WORKERS worker(s); ${DURATION}s x $ROUNDS rounds"
if [ "$NEED_NGINX" = 1 ]; then
    echo "nginx: keepalive_requests 100000 (its default of 1000 would force wrk to reconnect), access_log off,"
    echo "       sendfile, tcp_nopush, tcp_nodelay, open_file_cache max=1000 inactive=60s"
fi
if [ "$NEED_WSLOAD" = 1 ]; then
    echo "wsload: -t$WSLOAD_THREADS --pipeline $WS_PIPELINE, binary messages (text on ws16k-text), every echo verified"
    case " ${WS_WORKLOADS[*]} " in
    *-deflate" "*) echo "ws*-deflate rows run on percore only: tokio-tungstenite has no permessage-deflate" ;;
    esac
fi
echo
echo "Warming up (${WARMUP_SECONDS}s each)..."
if [ "$NEED_WRK" = 1 ]; then
    for server in $(servers_for "${HTTP_WORKLOADS[0]}"); do
        # h2o listens on its TLS port only.
        run_wrk "$server" "$([ "$server" = h2o ] && echo tls-small || echo small-ka)" \
            "$WARMUP_SECONDS" >/dev/null
        assert_alive "$server"
    done
fi
if [ "$NEED_WSLOAD" = 1 ]; then
    for server in $(servers_for "${WS_WORKLOADS[0]}"); do
        run_wsload "$server" "${WS_WORKLOADS[0]}" "$WARMUP_SECONDS" >/dev/null
        assert_alive "$server"
    done
fi

for round in $(seq "$ROUNDS"); do
    echo "Round $round/$ROUNDS"
    for workload in "${WORKLOADS[@]}"; do
        # Alternate which server goes first so neither always runs on a warmer machine.
        read -r -a order <<<"$(servers_for "$workload")"
        if [ $((round % 2)) -eq 0 ]; then order=("${order[@]:1}" "${order[0]}"); fi
        for server in "${order[@]}"; do
            measure "$server" "$workload" "$round"
        done
    done
done

# ---------------------------------------------------------------- report

# Median of the numbers in column $3 for workload $1 and server $2.
median() {
    awk -F'\t' -v w="$1" -v s="$2" -v c="$3" '$1 == w && $2 == s { print $c }' "$RESULTS" |
        sort -g | awk '{ v[NR] = $1 } END {
            if (NR == 0) { print "nan"; exit }
            if (NR % 2) m = v[(NR + 1) / 2]; else m = (v[NR / 2] + v[NR / 2 + 1]) / 2
            print m
        }'
}

nginx_version=$( ([ "$NEED_NGINX" = 1 ] && nginx -v 2>&1 | sed 's/^nginx version: //') || true)
tokio_versions=$(awk '/^name = "(tokio|tokio-tungstenite|tungstenite)"$/ { n = $3; getline; gsub(/"/, "", n); gsub(/"/, "", $3); printf "%s%s %s", sep, n, $3; sep = ", " }' \
    "$BENCH_DIR/tokio-echo/Cargo.lock" 2>/dev/null || true)
may_versions=$(awk '/^name = "(may|may_minihttp)"$/ { n = $3; getline; gsub(/"/, "", n); gsub(/"/, "", $3); printf "%s%s %s", sep, n, $3; sep = ", " }' \
    "$BENCH_DIR/peers/may-minihttp/Cargo.lock" 2>/dev/null || true)
uws_versions="uWebSockets $(git -C "$BENCH_DIR/peers/uws/build/uWebSockets" describe --tags --always 2>/dev/null || echo unknown)"
fastwebsockets_versions=$(awk '/^name = "(fastwebsockets|hyper|tokio)"$/ { n = $3; getline; gsub(/"/, "", n); gsub(/"/, "", $3); printf "%s%s %s", sep, n, $3; sep = ", " }' \
    "$BENCH_DIR/peers/fastwebsockets/Cargo.lock" 2>/dev/null || true)
uws_versions+=", uSockets $(git -C "$BENCH_DIR/peers/uws/build/uWebSockets/uSockets" describe --tags --always 2>/dev/null || echo unknown)"
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
percore_rev=$(cd "$REPO_DIR" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(cd "$REPO_DIR" && git status --porcelain -- src 2>/dev/null)" ]; then percore_rev="$percore_rev (src modified)"; fi

table() {
    echo "| workload | percore req/s | nginx req/s | percore/nginx | percore p99 ms | nginx p99 ms | percore CPU µs/req | nginx CPU µs/req | kernel % percore / nginx |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---|"
    local w prps nrps
    for w in "${HTTP_WORKLOADS[@]}"; do
        prps=$(median "$w" percore 4)
        nrps=$(median "$w" nginx 4)
        awk -v w="$(workload_title "$w")" -v id="$w" -v p="$prps" -v n="$nrps" \
            -v pl="$(median "$w" percore 5)" -v nl="$(median "$w" nginx 5)" \
            -v pc="$(median "$w" percore 6)" -v nc="$(median "$w" nginx 6)" \
            -v pk="$(median "$w" percore 10)" -v nk="$(median "$w" nginx 10)" 'BEGIN {
            # wrk 4.1 cannot measure pipelined latency (see the note below the table).
            if (id == "pipeline16") { pl = "n/a"; nl = "n/a" } else { pl = sprintf("%.2f", pl); nl = sprintf("%.2f", nl) }
            printf "| %s (`%s`) | %.0f | %.0f | %.2f | %s | %s | %.2f | %.2f | %.0f / %.0f |\n",
                w, id, p, n, (n > 0 ? p / n : 0), pl, nl, pc, nc, pk, nk
        }'
    done
    case " ${HTTP_WORKLOADS[*]} " in
    *" pipeline16 "*)
        echo
        echo "p99 is n/a for pipeline16: wrk 4.1 records one latency per batch of 16 but corrects for coordinated"
        echo "omission with an interval computed per response, so its percentiles are wrong (often 0)."
        echo "nginx's pipeline16 rate is held down by tcp_nopush: it keeps TCP_CORK set between pipelined"
        echo "responses, so each batch waits out a ~40 ms flush; with tcp_nopush off it does several times better."
        ;;
    esac
    case " ${HTTP_WORKLOADS[*]} " in
    *" 1m "*)
        echo
        echo "1m: wrk's one core (8 KiB reads) can be the limit; then the CPU columns are the comparison."
        if [ "$TCP_CC" = bbr ]; then
            echo "With bbr, TCP_CORK around sendfile (nginx's tcp_nopush) is slow: on the 2-core development VM it"
            echo "cost a corked percore 125-204 us CPU per response and left wrk's core ~20 % idle, against 104-128 us"
            echo "and a saturated wrk with MSG_MORE on the head instead (what percore does). With TCP_CC=cubic both"
            echo "servers saturate wrk and the rates are at parity."
        fi
        ;;
    esac
    case " ${HTTP_WORKLOADS[*]} " in
    *" close "*)
        echo
        echo "close: both servers defer accept until the request arrives (TCP_DEFER_ACCEPT; nginx's listen"
        echo "... deferred). On loopback wrk's core also runs the server side's handshake, child-socket and"
        echo "TIME_WAIT work, and it is the limit for both; the CPU columns are the comparison."
        ;;
    esac
}

ws_table() {
    echo "| workload | percore msg/s | tokio msg/s | percore/tokio | percore p99 ms | tokio p99 ms | percore CPU µs/msg | tokio CPU µs/msg | kernel % percore / tokio | busy % percore / tokio / wsload |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---|---|"
    local w
    for w in "${WS_WORKLOADS[@]}"; do
        awk -v w="$(workload_title "$w")" -v id="$w" \
            -v p="$(median "$w" percore 4)" -v t="$(median "$w" tokio 4)" \
            -v pl="$(median "$w" percore 5)" -v tl="$(median "$w" tokio 5)" \
            -v pc="$(median "$w" percore 6)" -v tc="$(median "$w" tokio 6)" \
            -v pb="$(median "$w" percore 8)" -v tb="$(median "$w" tokio 8)" \
            -v pk="$(median "$w" percore 10)" -v tk="$(median "$w" tokio 10)" \
            -v cb="$(awk -F'\t' -v w="$w" '$1 == w { print $9 }' "$RESULTS" | sort -n | sed -n '1p;$p' | paste -sd '-' -)" 'BEGIN {
            if (t == "nan") {
                printf "| %s (`%s`) | %.0f | n/a | n/a | %.2f | n/a | %.2f | n/a | %.0f / n/a | %.0f / n/a / %s |\n", w, id, p, pl, pc, pk, pb, cb
            } else {
                printf "| %s (`%s`) | %.0f | %.0f | %.2f | %.2f | %.2f | %.2f | %.2f | %.0f / %.0f | %.0f / %.0f / %s |\n",
                    w, id, p, t, (t > 0 ? p / t : 0), pl, tl, pc, tc, pk, tk, pb, tb, cb
            }
        }'
    done
    echo
    echo "wsload --pipeline $WS_PIPELINE: $WS_PIPELINE messages in flight per connection, so the server always has"
    echo "input queued and runs at ~100 % of its CPU (busy % = server or wsload CPU time / wall time of the"
    echo "run, medians for the servers, min-max for wsload). wsload does the mirror image of percore's work"
    echo "per batch (one epoll event, one read, one write per connection), so against percore it is nearly"
    echo "as busy as the server; one core cannot drive percore much harder. CPU µs/msg is the robust column."
    case " ${WS_WORKLOADS[*]} " in
    *" ws64-deep "*)
        echo "ws64-deep keeps 64 messages in flight per connection: each read and write then carries four times"
        echo "as many messages, so the kernel's fixed cost per system call weighs less and the servers' own"
        echo "per-message work (framing, unmasking, buffering) decides the ratio."
        ;;
    esac
    case " ${WS_WORKLOADS[*]} " in
    *-deflate" "*)
        echo "The -deflate rows are percore only: tokio-tungstenite does not implement permessage-deflate."
        echo "Messages are text-like (words and numbers), so they compress about as chat or JSON does."
        ;;
    esac
    case " ${WS_WORKLOADS[*]} " in
    *" wss64 "*)
        echo "wss64 is percore only (wsload --tls on its TLS port, TLS 1.3): beside ws64, what TLS costs per message."
        ;;
    esac
}

# What a peer is, for the line above a peer table.
peer_note() {
    case "$1" in
    lwan) echo "lwan: one thread per server CPU" ;;
    may-minihttp) echo "may-minihttp: the files from memory, one may worker per server CPU, no close row (it ignores Connection: close)" ;;
    h2o) echo "h2o on HTTPS" ;;
    uws) echo "uWebSockets' echo: $SERVER_NCPU thread(s), one App each, no compression" ;;
    fastwebsockets) echo "fastwebsockets' echo on hyper 1 + tokio: $SERVER_NCPU runtime thread(s), no compression" ;;
    *) echo "$1" ;;
    esac
}

# The rows that ran more servers than the main tables show (h2o on the TLS rows, lwan and
# may-minihttp on plain ones, uWebSockets and fastwebsockets on WebSocket ones) once more with them, a line per
# peer: each server's rate and CPU per request (or message), and percore's requests (or
# messages) per server CPU-second against the peer's. $1: http or ws.
peer_table() {
    local w peer second item noun rows=() servers=() peers=() notes="" workloads=()
    if [ "$1" = ws ]; then
        workloads=("${WS_WORKLOADS[@]}") second=tokio item=msg noun=messages
    else
        workloads=("${HTTP_WORKLOADS[@]}") second=nginx item=req noun=requests
    fi
    for w in "${workloads[@]}"; do
        read -r -a servers <<<"$(servers_for "$w")"
        if [ ${#servers[@]} -gt 2 ]; then
            rows+=("$w")
            peers+=("${servers[@]:2}")
        fi
    done
    [ ${#rows[@]} -gt 0 ] || return 0
    for peer in $(printf '%s\n' "${peers[@]}" | awk '!seen[$0]++'); do
        notes="${notes:+$notes; }$(peer_note "$peer")"
    done
    echo "With the fastest peers too ($notes; the same $([ "$1" = ws ] && echo load || echo files) and pinning):"
    echo
    echo "| workload | peer | percore $item/s | $second $item/s | peer $item/s | percore CPU µs/$item | $second CPU µs/$item | peer CPU µs/$item | percore ÷ peer, $noun per CPU-second |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
    for w in "${rows[@]}"; do
        read -r -a servers <<<"$(servers_for "$w")"
        for peer in "${servers[@]:2}"; do
            awk -v w="$(workload_title "$w")" -v id="$w" -v peer="$peer" \
                -v p="$(median "$w" percore 4)" -v n="$(median "$w" "$second" 4)" -v h="$(median "$w" "$peer" 4)" \
                -v pc="$(median "$w" percore 6)" -v nc="$(median "$w" "$second" 6)" -v hc="$(median "$w" "$peer" 6)" 'BEGIN {
                printf "| %s (`%s`) | %s | %.0f | %.0f | %.0f | %.2f | %.2f | %.2f | %.2f |\n",
                    w, id, peer, p, n, h, pc, nc, hc, (pc > 0 ? hc / pc : 0)
            }'
        done
    done
}

# Before/after: this build against BASELINE_BIN on every workload.
baseline_table() {
    echo "| workload | percore /s | baseline /s | percore/baseline | percore CPU µs | baseline CPU µs | CPU change | kernel % percore / baseline |"
    echo "|---|---:|---:|---:|---:|---:|---:|---|"
    local w
    for w in "${WORKLOADS[@]}"; do
        awk -v w="$(workload_title "$w")" -v id="$w" \
            -v p="$(median "$w" percore 4)" -v b="$(median "$w" baseline 4)" \
            -v pc="$(median "$w" percore 6)" -v bc="$(median "$w" baseline 6)" \
            -v pk="$(median "$w" percore 10)" -v bk="$(median "$w" baseline 10)" 'BEGIN {
            printf "| %s (`%s`) | %.0f | %.0f | %.3f | %.3f | %.3f | %+.1f %% | %.0f / %.0f |\n",
                w, id, p, b, (b > 0 ? p / b : 0), pc, bc, (bc > 0 ? (pc / bc - 1) * 100 : 0), pk, bk
        }'
    done
    echo
    echo "CPU change: percore's server CPU per request (or message) against the baseline's; negative is better."
}

errors_section() {
    local found
    found=$(awk -F'\t' '$7 != "" { printf "- round %s, %s, %s: %s\n", $3, $1, $2, $7 }' "$RESULTS")
    if [ -n "$found" ]; then
        echo "The load generators reported errors (full output in benches/results/$RESULT_NAME-raw.log):"
        echo
        echo "$found"
    else
        [ ${#HTTP_WORKLOADS[@]} -eq 0 ] || echo "wrk reported no socket errors and no non-2xx/3xx responses."
        [ ${#WS_WORKLOADS[@]} -eq 0 ] ||
            echo "wsload verified every echo (zero errors) and every connection closed with code 1000."
    fi
}

report=$(
    if [ -n "$BASELINE_PID" ]; then
        echo "# percore before/after: this build vs a baseline build"
    elif [ ${#HTTP_WORKLOADS[@]} -gt 0 ]; then
        echo "# percore vs nginx"
    else
        echo "# percore vs tokio-tungstenite (WebSocket echo)"
    fi
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "- machine: $NCPU CPUs, $cpu_model, kernel $(uname -r), TCP congestion control $TCP_CC"
    echo "- percore: $percore_rev, --workers $WORKERS${PERCORE_FLAGS:+ $PERCORE_FLAGS}"
    [ -n "$BASELINE_PID" ] && echo "- baseline: $BASELINE_BIN, --workers $WORKERS"
    [ "$NEED_NGINX" = 1 ] && echo "- nginx: $nginx_version, worker_processes $WORKERS; wrk -t$WRK_THREADS"
    [ "$NEED_H2O" = 1 ] && echo "- h2o: $(h2o --version 2>&1 | head -n 1), num-threads $WORKERS, TLS port only (TLS rows)"
    [ "$NEED_SHIM" = 1 ] && echo "- tls-full: wrk with LD_PRELOAD=benches/no_resume.c, so no session is resumed"
    [ "$NEED_LWAN" = 1 ] && echo "- lwan: $(git -C "$BENCH_DIR/peers/lwan/build/src" describe --tags --always 2>/dev/null || echo unknown), one thread per server CPU (benches/peers/lwan)"
    [ "$NEED_MAY_MINIHTTP" = 1 ] && echo "- may-minihttp (benches/peers/may-minihttp): $may_versions, one may worker per server CPU, the files from memory"
    [ "$NEED_TOKIO" = 1 ] && echo "- tokio-echo (benches/tokio-echo): $tokio_versions, $WORKERS runtime thread(s)"
    [ "$NEED_UWS" = 1 ] && echo "- uws (benches/peers/uws): $uws_versions, its EchoServerThreaded example with $SERVER_NCPU thread(s) (one per server CPU, each its own App and event loop, SO_REUSEPORT listeners), no compression"
    [ "$NEED_FASTWEBSOCKETS" = 1 ] && echo "- fastwebsockets (benches/peers/fastwebsockets): $fastwebsockets_versions, its echo_server example (upgrade on hyper 1) with $SERVER_NCPU runtime thread(s) ($([ "$SERVER_NCPU" = 1 ] && echo current-thread || echo multi-thread) runtime), one write per message, $(case " ${FASTWEBSOCKETS_FLAGS:-} " in *" --nodelay "*) echo TCP_NODELAY ;; *) echo "Nagle's algorithm on, as in the example" ;; esac), no compression"
    [ "$NEED_WSLOAD" = 1 ] && echo "- wsload -t$WSLOAD_THREADS --pipeline $WS_PIPELINE (binary messages, text on ws16k-text; each echo verified)"
    echo "- servers pinned to CPU(s) $SERVER_CPUS, load generator pinned to CPU(s) $CLIENT_CPUS"
    echo "- command: \`DURATION=$DURATION ROUNDS=$ROUNDS WORKERS=$WORKERS $COMMAND_LINE\`"
    echo "- medians of $ROUNDS rounds of ${DURATION}s; CPU µs/req (or /msg) = server utime+stime (all threads/processes)"
    echo "  / requests (or echoed messages); kernel % = stime's share of that CPU time (system calls and the TCP"
    echo "  stack, which on loopback includes the receiving side's processing of what the server sends)"
    if [ "$NEED_NGINX" = 1 ]; then
        echo "- nginx: keepalive_requests 100000 (the default 1000 would force reconnects), access_log off, sendfile,"
        echo "  tcp_nopush, tcp_nodelay, open_file_cache max=1000 inactive=60s"
    fi
    if [ -n "$BASELINE_PID" ]; then
        echo
        baseline_table
    else
        if [ ${#HTTP_WORKLOADS[@]} -gt 0 ]; then
            echo
            table
            if [ "$NEED_H2O" = 1 ] || [ "$NEED_LWAN" = 1 ] || [ "$NEED_MAY_MINIHTTP" = 1 ]; then
                echo
                peer_table http
            fi
        fi
        if [ ${#WS_WORKLOADS[@]} -gt 0 ]; then
            echo
            ws_table
            if [ "$NEED_UWS" = 1 ] || [ "$NEED_FASTWEBSOCKETS" = 1 ]; then
                echo
                peer_table ws
            fi
        fi
    fi
    echo
    errors_section
)
echo
echo "$report"
echo "$report" >"$BENCH_DIR/results/$RESULT_NAME.md"

# The same medians, machine-readable: one line per workload and server. p99 is empty where wrk
# cannot measure it (pipeline16).
{
    echo "workload,server,rate,p99_ms,cpu_us,kernel_pct"
    for w in "${WORKLOADS[@]}"; do
        for server in $(servers_for "$w"); do
            awk -v w="$w" -v s="$server" -v r="$(median "$w" "$server" 4)" -v l="$(median "$w" "$server" 5)" \
                -v c="$(median "$w" "$server" 6)" -v k="$(median "$w" "$server" 10)" \
                'BEGIN { if (w == "pipeline16") l = ""; else l = sprintf("%.3f", l); printf "%s,%s,%.0f,%s,%.2f,%.0f\n", w, s, r, l, c, k }'
        done
    done
} >"$BENCH_DIR/results/$RESULT_NAME.csv"
chart="$RESULT_NAME.svg"
if [ -n "$BASELINE_PID" ]; then
    chart="no chart (before/after mode)"
else
    python3 "$BENCH_DIR/chart.py" --csv "$BENCH_DIR/results/$RESULT_NAME.csv" --out "$BENCH_DIR/results/$RESULT_NAME.svg" \
        >/dev/null || chart="no chart (benches/chart.py failed)"
fi
echo
echo "Written to benches/results/$RESULT_NAME.md, $RESULT_NAME.csv and $chart"
echo "(raw load generator output: benches/results/$RESULT_NAME-raw.log)"
