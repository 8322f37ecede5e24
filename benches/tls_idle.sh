#!/usr/bin/env bash
# Idle TLS connections: server memory per idle HTTPS keep-alive connection, percore vs nginx vs
# h2o, each with one worker, one TLS port and the same ECDSA P-256 certificate; the client
# speaks TLS 1.3.
#
# Usage: benches/tls_idle.sh [K...]      (default: 10000)
# For each K and each server in turn (a fresh server per run): benches/idle_connections.py --tls
# opens K connections (Python's ssl: TLS 1.3, AES-128-GCM, ALPN http/1.1), each completes one
# GET / and stays open and idle; the growth of the server's VmRSS over K is the figure. For
# nginx that is its one worker process; h2o runs one process with one thread. h2o is measured
# when installed (Debian: apt-get install h2o), skipped with a note otherwise.
# Results go to benches/results/tls-idle.md (raw output: tls-idle-raw.log).
# Knobs (environment):
#   PERCORE_BIN   use this binary instead of running `cargo build --release`
#   SERVER_CPUS=0 CPU(s) for the server; CLIENT_CPUS=1 CPU(s) for idle_connections.py
#   RUNS=2        runs per server and K (servers alternate within each run)
set -euo pipefail
# shellcheck source=benches/lib.sh
source "$(dirname "$0")/lib.sh"

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$BENCH_DIR")
SERVER_CPUS=${SERVER_CPUS:-0}
CLIENT_CPUS=${CLIENT_CPUS:-1}
RUNS=${RUNS:-2}
COUNTS=("$@")
[ ${#COUNTS[@]} -gt 0 ] || COUNTS=(10000)
COMMAND_LINE="$0${*:+ $*}"

case "${1:-}" in -h | --help)
    sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
esac
for k in "${COUNTS[@]}"; do
    [[ "$k" =~ ^[1-9][0-9]*$ ]] || die "connection count '$k' is not a positive integer"
done
for tool in nginx openssl curl taskset python3 timeout ss; do
    command -v "$tool" >/dev/null 2>&1 || die "missing tool: $tool"
done
SERVERS=(percore nginx)
H2O_NOTE="h2o: not installed (apt-get install h2o), not measured"
if command -v h2o >/dev/null 2>&1; then
    SERVERS+=(h2o)
    H2O_NOTE="h2o: $(h2o --version 2>&1 | head -n 1), num-threads 1"
fi

raise_nofile_for "${COUNTS[@]}"
percore_bin "$REPO_DIR"

TMP=$(mktemp -d /tmp/percore-tls-idle.XXXXXX)
chmod 755 "$TMP"
ROOT=$TMP/www
mkdir -p "$ROOT"
printf '<!doctype html>\n<html><body><p>index</p></body></html>\n' >"$ROOT/index.html"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null ||
    die "openssl could not make a test certificate"
SERVER_PID=""

cleanup() {
    stop_server "$SERVER_PID"
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PORT=24443
while ! port_is_free "$PORT"; do PORT=$((PORT + 1)); done

# Waits until the server answers GET / over TLS; fails if the process exits first.
wait_until_serving() {
    local name=$1 log=$2
    for _ in $(seq 100); do
        kill -0 "$SERVER_PID" 2>/dev/null || {
            echo "tls_idle.sh: $name exited during startup; last lines of $log:" >&2
            tail -n 20 "$log" >&2 || true
            exit 1
        }
        curl -kfsS -o /dev/null --max-time 1 "https://127.0.0.1:$PORT/" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "tls_idle.sh: $name did not answer on https://127.0.0.1:$PORT/ within about 10 s" >&2
    tail -n 20 "$log" >&2 || true
    exit 1
}

start_percore() {
    taskset -c "$SERVER_CPUS" "$PERCORE_BIN" --bind 127.0.0.1 --ports "$PORT" --tls-ports "$PORT" \
        --tls-cert "$TMP/cert.pem" --tls-key "$TMP/key.pem" --workers 1 --root "$ROOT" \
        --admin off --log-level warn >"$TMP/percore.log" 2>&1 &
    SERVER_PID=$!
    wait_until_serving percore "$TMP/percore.log"
    MEASURED=$SERVER_PID
}

start_nginx() {
    local k=$1
    mkdir -p "$TMP/nginx"
    cat >"$TMP/nginx.conf" <<NGINX
user root;
worker_processes 1;
worker_rlimit_nofile $HARD_NOFILE;
pid $TMP/nginx.pid;
error_log $TMP/nginx-error.log warn;
events { worker_connections $((k * 9 / 8 + 200)); }
http {
    access_log off;
    keepalive_timeout 300s;
    client_body_temp_path $TMP/nginx;
    proxy_temp_path $TMP/nginx;
    fastcgi_temp_path $TMP/nginx;
    uwsgi_temp_path $TMP/nginx;
    scgi_temp_path $TMP/nginx;
    server {
        listen 127.0.0.1:$PORT ssl reuseport;
        ssl_certificate $TMP/cert.pem;
        ssl_certificate_key $TMP/key.pem;
        ssl_protocols TLSv1.3;
        ssl_session_cache shared:SSL:10m;
        ssl_session_tickets on;
        root $ROOT;
    }
}
NGINX
    taskset -c "$SERVER_CPUS" nginx -p "$TMP" -e "$TMP/nginx-error.log" -c "$TMP/nginx.conf" \
        -g 'daemon off;' >"$TMP/nginx.log" 2>&1 &
    SERVER_PID=$!
    wait_until_serving nginx "$TMP/nginx-error.log"
    local children
    children=$(ps -o pid= --ppid "$SERVER_PID" | tr -d ' ')
    [ "$(wc -w <<<"$children")" -eq 1 ] || die "expected one nginx worker, found: ${children:-none}"
    MEASURED=$children
}

start_h2o() {
    write_h2o_conf "$TMP/h2o.conf" 1 "$PORT" "$TMP/cert.pem" "$TMP/key.pem" "$ROOT" "$TMP"
    taskset -c "$SERVER_CPUS" h2o -c "$TMP/h2o.conf" >"$TMP/h2o.log" 2>&1 &
    SERVER_PID=$!
    wait_until_serving h2o "$TMP/h2o.log"
    MEASURED=$SERVER_PID
}

RESULTS=$TMP/results.tsv
RAW_LOG=$BENCH_DIR/results/tls-idle-raw.log
mkdir -p "$BENCH_DIR/results"
: >"$RESULTS"
: >"$RAW_LOG"

run() {
    local server=$1 k=$2 out per_conn
    "start_$server" "$k"
    out=$(timeout 600 taskset -c "$CLIENT_CPUS" python3 "$BENCH_DIR/idle_connections.py" "$k" \
        --pid "$MEASURED" --host 127.0.0.1 --ports "$PORT" --tls 2>&1) || {
        printf '%s\n' "$out" >&2
        die "idle_connections.py failed against $server (K=$k)"
    }
    kill -0 "$SERVER_PID" 2>/dev/null || die "$server died during the run (K=$k)"
    printf '=== K=%s %s, measured pid %s\n%s\n\n' "$k" "$server" "$MEASURED" "$out" >>"$RAW_LOG"
    per_conn=$(awk '/^server RSS:/ { for (i = 2; i <= NF; i++) if ($i == "bytes") { print $(i - 1); exit } }' <<<"$out")
    [ -n "$per_conn" ] || die "could not parse idle_connections.py output ($server, K=$k)"
    stop_server "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
    printf '%s\t%s\t%s\n' "$k" "$server" "$per_conn" >>"$RESULTS"
    printf '  K=%-6s %-8s %7s B per idle TLS connection\n' "$k" "$server" "$per_conn"
}

echo "percore: $PERCORE_BIN; nginx: $(nginx -v 2>&1 | sed 's/^nginx version: //'); $H2O_NOTE"
echo "TLS port $PORT on 127.0.0.1; server on CPU(s) $SERVER_CPUS, client on CPU(s) $CLIENT_CPUS"
for k in "${COUNTS[@]}"; do
    for _ in $(seq "$RUNS"); do
        for server in "${SERVERS[@]}"; do
            run "$server" "$k"
        done
    done
done

# The runs of one server and K, as "a–b" (or one figure).
span() {
    awk -F'\t' -v k="$1" -v s="$2" '$1 == k && $2 == s { print $3 }' "$RESULTS" | sort -n |
        awk 'NR == 1 { lo = $1 } { hi = $1 } END { if (lo == hi) print lo; else print lo "–" hi }'
}

report=$(
    echo "# Idle TLS connections: memory per connection, percore vs nginx vs h2o"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "- machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), kernel $(uname -r)"
    echo "- percore: $(cd "$REPO_DIR" && git rev-parse --short HEAD 2>/dev/null || echo unknown), --workers 1"
    echo "- nginx: $(nginx -v 2>&1 | sed 's/^nginx version: //'), worker_processes 1, ssl_session_cache and tickets on"
    echo "- $H2O_NOTE"
    echo "- all: one TLS port, one ECDSA P-256 certificate; the client speaks TLS 1.3"
    echo "- command: \`$COMMAND_LINE\` ($RUNS runs each, servers alternating)"
    echo "- method: a fresh server per run; benches/idle_connections.py --tls opens K connections (Python's"
    echo "  ssl: TLS 1.3, AES-128-GCM), each completes one GET / and stays idle; the growth of the"
    echo "  server's VmRSS (nginx: its worker's) divided by K"
    echo
    printf '| idle TLS connections |'
    for server in "${SERVERS[@]}"; do printf ' %s B/conn |' "$server"; done
    printf '\n|---:|'
    for _ in "${SERVERS[@]}"; do printf -- '---:|'; done
    echo
    for k in "${COUNTS[@]}"; do
        printf '| %s |' "$k"
        for server in "${SERVERS[@]}"; do printf ' %s |' "$(span "$k" "$server")"; done
        echo
    done
    echo
    echo "Raw output of each run: benches/results/tls-idle-raw.log."
)
echo
echo "$report"
echo "$report" >"$BENCH_DIR/results/tls-idle.md"
