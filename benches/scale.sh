#!/usr/bin/env bash
# Connection scale: server memory per idle connection, percore vs nginx, at several connection counts.
#
# Usage: benches/scale.sh [K...]      (default: 1000 5000 15000)
# For each K, three fresh servers in turn, each listening on the same 30 loopback ports:
#   percore --workers 1 with K idle HTTP keep-alive connections,
#   nginx (benches/nginx.conf.in as compare.sh fills it in, worker_processes 1, listening on the
#     30 ports, worker_connections 9K/8+200) with K idle HTTP keep-alive connections,
#   percore --workers 1 with K idle WebSockets (nginx has no WebSocket echo to compare with).
# benches/idle_connections.py opens the connections (each completes one GET / or one upgrade on
# /ws) and reports the growth of the server's resident memory (VmRSS) per connection. For nginx
# it measures the worker process, which owns every connection, not the master. It also reports
# the kernel's slab growth, which is system-wide and counts both sockets of each loopback pair.
# Results go to benches/results/scale.md.
# Knobs (environment):
#   PERCORE_BIN   use this binary instead of running `cargo build --release`
#   SERVER_CPUS=0 CPU(s) for the server; CLIENT_CPUS=1 CPU(s) for idle_connections.py
#   SETTLE=65     at most this many seconds to wait before each run for the previous run's
#                 TIME_WAIT sockets to expire (they are slab memory too)
set -euo pipefail
# shellcheck source=benches/lib.sh
source "$(dirname "$0")/lib.sh"

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$BENCH_DIR")
SERVER_CPUS=${SERVER_CPUS:-0}
CLIENT_CPUS=${CLIENT_CPUS:-1}
SETTLE=${SETTLE:-65}
PORT_COUNT=30
COUNTS=("$@")
[ ${#COUNTS[@]} -gt 0 ] || COUNTS=(1000 5000 15000)
COMMAND_LINE="$0${*:+ $*}"

case "${1:-}" in -h | --help)
    sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
esac
for k in "${COUNTS[@]}"; do
    [[ "$k" =~ ^[1-9][0-9]*$ ]] || die "connection count '$k' is not a positive integer"
done
for tool in nginx curl ss taskset python3 timeout; do
    command -v "$tool" >/dev/null 2>&1 || die "missing tool: $tool (apt-get install -y nginx curl iproute2 util-linux python3)"
done

raise_nofile_for "${COUNTS[@]}"
percore_bin "$REPO_DIR"

TMP=$(mktemp -d /tmp/percore-scale.XXXXXX)
chmod 755 "$TMP"
ROOT=$TMP/www
mkdir -p "$ROOT"
printf '<!doctype html>\n<html><body><p>index</p></body></html>\n' >"$ROOT/index.html"
SERVER_PID=""

cleanup() {
    stop_server "$SERVER_PID"
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- ports and servers

# The first port of 30 consecutive free ports at or above $1.
pick_port_range() {
    local first=$1 port
    while [ "$first" -lt $(($1 + 2000)) ]; do
        for port in $(seq "$first" $((first + PORT_COUNT - 1))); do
            port_is_free "$port" || break
        done
        if [ "$port" -eq $((first + PORT_COUNT - 1)) ] && port_is_free "$port"; then
            echo "$first"
            return 0
        fi
        first=$((port + 1))
    done
    die "no $PORT_COUNT consecutive free TCP ports in $1..$(($1 + 2000))"
}

FIRST_PORT=$(pick_port_range 21000)
LAST_PORT=$((FIRST_PORT + PORT_COUNT - 1))
PORTS=$FIRST_PORT-$LAST_PORT

# Waits until the server answers GET / on every port; fails if the process exits first.
wait_until_serving() {
    local name=$1 pid=$2 log=$3 port
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || {
            echo "scale.sh: $name exited during startup; last lines of $log:" >&2
            tail -n 20 "$log" >&2 || true
            exit 1
        }
        for port in $(seq "$FIRST_PORT" "$LAST_PORT"); do
            curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$port/" 2>/dev/null || continue 2
        done
        return 0
    done
    echo "scale.sh: $name did not answer on every port of $PORTS within about 10 s; last lines of $log:" >&2
    tail -n 20 "$log" >&2 || true
    exit 1
}

start_percore() {
    taskset -c "$SERVER_CPUS" "$PERCORE_BIN" --bind 127.0.0.1 --ports "$PORTS" --workers 1 \
        --root "$ROOT" --admin off --log-level warn >"$TMP/percore.log" 2>&1 &
    SERVER_PID=$!
    wait_until_serving percore "$SERVER_PID" "$TMP/percore.log"
}

# nginx closes idle keep-alive connections to make room once fewer than 1/16 of its
# worker_connections are free (ngx_drain_connections), so give it that much headroom beyond K
# connections and the 30 listeners.
nginx_slots() {
    echo $(($1 * 9 / 8 + 200))
}

# nginx from the same template as compare.sh (its listen options too), with one listen line per
# port and room for K.
start_nginx() {
    local k=$1 listens port
    listens=$(for port in $(seq "$FIRST_PORT" "$LAST_PORT"); do
        printf '        listen 127.0.0.1:%s reuseport deferred;\\n' "$port"
    done)
    sed -e "s|@WORKERS@|1|g" -e "s|@TMP@|$TMP|g" -e "s|@ROOT@|$ROOT|g" \
        -e "s|^\( *\)listen 127.0.0.1:@PORT@ [^;]*;|${listens%\\n}|" \
        -e "s|worker_connections [0-9]*;|worker_connections $(nginx_slots "$k");|" \
        -e "s|worker_rlimit_nofile [0-9]*;|worker_rlimit_nofile $HARD_NOFILE;|" \
        "$BENCH_DIR/nginx.conf.in" >"$TMP/nginx.conf"
    [ "$(grep -c 'listen 127.0.0.1:' "$TMP/nginx.conf")" -eq "$PORT_COUNT" ] ||
        die "could not put $PORT_COUNT listen lines into $TMP/nginx.conf"
    nginx -t -q -p "$TMP" -e "$TMP/nginx-error.log" -c "$TMP/nginx.conf" -g 'daemon off;' ||
        die "nginx rejected the generated config $TMP/nginx.conf"
    taskset -c "$SERVER_CPUS" nginx -p "$TMP" -e "$TMP/nginx-error.log" -c "$TMP/nginx.conf" \
        -g 'daemon off;' >"$TMP/nginx.log" 2>&1 &
    SERVER_PID=$!
    wait_until_serving nginx "$SERVER_PID" "$TMP/nginx-error.log"
}

# The only child of nginx's master: the worker, which holds every connection.
nginx_worker_pid() {
    local children
    children=$(ps -o pid= --ppid "$SERVER_PID" | tr -d ' ')
    [ "$(wc -w <<<"$children")" -eq 1 ] || die "expected one nginx worker under master $SERVER_PID, found: ${children:-none}"
    echo "$children"
}

rss_kib() {
    awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status"
}

# TIME_WAIT sockets of connections to our ports (the client closes first, so they are its sockets).
time_wait_count() {
    ss -Htan state time-wait "( dport >= :$FIRST_PORT and dport <= :$LAST_PORT )" | wc -l
}

# The previous run's client sockets linger in TIME_WAIT, in slab memory, and would expire
# during the next measurement; wait (bounded) until few are left.
settle() {
    local waited=0
    while [ "$waited" -lt "$SETTLE" ] && [ "$(time_wait_count)" -gt 100 ]; do
        sleep 1
        waited=$((waited + 1))
    done
    TIME_WAIT_LEFT=$(time_wait_count)
}

# ---------------------------------------------------------------- measuring

RESULTS=$TMP/results.tsv
RAW_LOG=$BENCH_DIR/results/scale-raw.log
mkdir -p "$BENCH_DIR/results"
: >"$RESULTS"
: >"$RAW_LOG"

# The N of "N bytes per ..." on the first input line matching $1.
bytes_per_connection() {
    awk -v re="$1" '$0 ~ re { for (i = 2; i <= NF; i++) if ($i == "bytes" && $(i + 1) == "per") { print $(i - 1); exit } }'
}

# One run: fresh server, K idle connections, one line of results; prints a progress line.
run() {
    local server=$1 k=$2 mode=$3 pid measured out per_conn slab rss_start
    settle
    case "$server" in
    percore) start_percore ;;
    nginx) start_nginx "$k" ;;
    esac
    pid=$SERVER_PID
    measured="pid $pid"
    if [ "$server" = nginx ]; then
        pid=$(nginx_worker_pid)
        measured="worker pid $pid (master $SERVER_PID)"
    fi
    rss_start=$(rss_kib "$pid")
    local args=("$k" --pid "$pid" --host 127.0.0.1 --ports "$PORTS")
    [ "$mode" = ws ] && args+=(--ws)
    out=$(timeout 300 taskset -c "$CLIENT_CPUS" python3 "$BENCH_DIR/idle_connections.py" "${args[@]}" 2>&1) || {
        printf '%s\n' "$out" >&2
        die "idle_connections.py failed against $server ($mode, K=$k)"
    }
    kill -0 "$SERVER_PID" 2>/dev/null || die "$server died during the run (K=$k, $mode)"
    printf '=== K=%s %s %s, measured %s, TIME_WAIT sockets at start %s\n%s\n\n' \
        "$k" "$server" "$mode" "$measured" "$TIME_WAIT_LEFT" "$out" >>"$RAW_LOG"
    per_conn=$(bytes_per_connection '^server RSS:' <<<"$out")
    slab=$(bytes_per_connection '^kernel slab:' <<<"$out")
    [ -n "$per_conn" ] && [ -n "$slab" ] || {
        printf '%s\n' "$out" >&2
        die "could not parse idle_connections.py output ($server, $mode, K=$k)"
    }
    stop_server "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$k" "$server" "$mode" "$per_conn" "$slab" "$rss_start" >>"$RESULTS"
    printf '  K=%-6s %-8s %-5s %7s B/conn RSS  %7s B/conn slab  (measured %s; RSS at start %s KiB)\n' \
        "$k" "$server" "$mode" "$per_conn" "$slab" "$measured" "$rss_start"
}

echo "percore: $PERCORE_BIN --workers 1; nginx: $(nginx -v 2>&1 | sed 's/^nginx version: //'), worker_processes 1"
echo "ports $PORTS on 127.0.0.1; server on CPU(s) $SERVER_CPUS, idle_connections.py on CPU(s) $CLIENT_CPUS"
echo "open-files hard limit $HARD_NOFILE; connection counts: ${COUNTS[*]}"
for k in "${COUNTS[@]}"; do
    run percore "$k" http
    run nginx "$k" http
    run percore "$k" ws
done

# ---------------------------------------------------------------- report

value() {
    awk -F'\t' -v k="$1" -v s="$2" -v m="$3" -v c="$4" '$1 == k && $2 == s && $3 == m { print $c; exit }' "$RESULTS"
}

table() {
    echo "| idle connections | percore HTTP B/conn | nginx HTTP B/conn (worker) | percore WebSocket B/conn | kernel slab B/conn (client + server socket; percore HTTP / nginx / WebSocket run) |"
    echo "|---:|---:|---:|---:|---:|"
    local k
    for k in "${COUNTS[@]}"; do
        printf '| %s | %s | %s | %s | %s / %s / %s |\n' "$k" \
            "$(value "$k" percore http 4)" "$(value "$k" nginx http 4)" "$(value "$k" percore ws 4)" \
            "$(value "$k" percore http 5)" "$(value "$k" nginx http 5)" "$(value "$k" percore ws 5)"
    done
}

# nginx allocates its connection and event arrays (worker_connections of each) when the worker
# starts, so they are in its RSS before the first connection and not in the B/conn column.
# The slope of the worker's starting RSS against worker_connections estimates that share.
nginx_prealloc_note() {
    local lo=${COUNTS[0]} hi=${COUNTS[-1]}
    [ "$lo" != "$hi" ] || return 0
    awk -v lo="$lo" -v hi="$hi" -v rlo="$(value "$lo" nginx http 6)" -v rhi="$(value "$hi" nginx http 6)" \
        -v slo="$(nginx_slots "$lo")" -v shi="$(nginx_slots "$hi")" 'BEGIN {
        printf "nginx allocates its connection and event arrays (worker_connections entries, here 9K/8+200) when\n"
        printf "the worker starts, so they are in the worker'"'"'s RSS before the first connection and not in its\n"
        printf "B/conn column: the worker started at %d KiB with %d slots (K=%d) and %d KiB with %d slots (K=%d),\n",
            rlo, slo, lo, rhi, shi, hi
        printf "about %.0f B per slot more.\n", (rhi - rlo) * 1024 / (shi - slo)
    }'
}

report=$(
    echo "# Idle connections: memory per connection, percore vs nginx"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "- machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), kernel $(uname -r), open-files hard limit $HARD_NOFILE"
    echo "- percore: $(cd "$REPO_DIR" && git rev-parse --short HEAD 2>/dev/null || echo unknown), --workers 1 --admin off, 30 ports"
    echo "- nginx: $(nginx -v 2>&1 | sed 's/^nginx version: //'), benches/nginx.conf.in with worker_processes 1, the same 30 ports,"
    echo "  worker_connections 9K/8+200 (nginx starts closing idle keep-alive connections when fewer than"
    echo "  1/16 are free), worker_rlimit_nofile $HARD_NOFILE"
    echo "- command: \`$COMMAND_LINE\`"
    echo "- method: a fresh server per row and column; benches/idle_connections.py opens K connections spread"
    echo "  over the 30 ports (each completes one GET /, or one WebSocket upgrade on /ws offering"
    echo "  permessage-deflate), waits 1 s, and divides the growth of the server's VmRSS by K. For nginx"
    echo "  that is the worker process's VmRSS (the master holds no connections). Kernel slab growth is"
    echo "  system-wide (/proc/meminfo Slab:), counts both ends of each loopback connection, and picks up"
    echo "  anything else the machine does meanwhile, so it is the noisier figure."
    echo
    table
    echo
    nginx_prealloc_note
    echo
    echo "Raw output of each run: benches/results/scale-raw.log."
)
echo
echo "$report"
echo "$report" >"$BENCH_DIR/results/scale.md"
echo
echo "Written to benches/results/scale.md"
