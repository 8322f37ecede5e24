#!/usr/bin/env bash
# Soak: MINUTES of mixed load against one percore, checking that nothing fails, that its memory
# stays flat and that every descriptor comes back.
#
# Usage: benches/soak.sh [MINUTES]      (default 10; decimals allowed, e.g. 1.5)
# One percore (--workers WORKERS, --ws-ping-interval 5s, other settings default) serves a root of
# small.html (150 B), 4k.bin, 64k.bin, 1m.bin and index.html on one loopback port. For MINUTES,
# all at once:
#   wrk -t1 -c50 -s benches/soak.lua   keep-alive GETs of every file, as fast as wrk can
#   benches/soak.py                    new-connection GETs (100/s), range requests (100/s),
#                                      conditional GETs and HEAD (100/s), 4 WebSockets with
#                                      echoes, pings and quiet spells the server must fill with
#                                      its own pings; every answer checked byte for byte
#   wsload -c 40 --deflate             WebSocket echo with permessage-deflate, 1 KiB, 20,000 msg/s
#   wsload -c 200 --rate 20            mostly quiet WebSockets, which the server pings
#   benches/slow_clients.py            20 slow-loris (each must get 408 at the 10 s header
#                                      timeout) and 10 slow readers of 1m.bin at 40 KiB/s
#                                      (every byte checked)
# Every SAMPLE s it records the server's RSS, open descriptors and established connections.
# Goals (exit status 1 if one is missed):
#   errors = 0, counting: wrk's socket errors (connect, read, write, timeout) and non-2xx/3xx
#     responses; each wsload's errors (handshake, mismatch, protocol, io, server-closed,
#     close-timeout) and connections not closed with 1000, except io errors after every
#     connection's close handshake completed (reported apart: a wsload artefact, see
#     wsload_errors below); soak.py's errors (see its --help);
#     slow_clients.py's unexpected outcomes and connect errors; a load generator exiting
#     non-zero; "error" lines or panics in percore's log; percore not exiting 0 on SIGTERM
#   RSS flat: the last sample, taken RSS_END s before the load ends, within RSS_TOLERANCE % (5)
#     of the sample at RSS_AT s (60)
#   descriptors: /proc/PID/fd back to its count before the load (taken after a warm-up that put
#     every file in both workers' caches) within 15 s after the load ends
# Results: benches/results/soak.md; raw output (load generators, metrics, descriptors, server
# log) in soak-raw.log; samples in soak-samples.csv.
# Knobs (environment): WORKERS=2 SAMPLE=10 RSS_AT=60 RSS_END=2 RSS_TOLERANCE=5
#   PERCORE_BIN (default: cargo build --release; wsload is taken from beside it)
set -euo pipefail
# shellcheck source=benches/lib.sh
source "$(dirname "$0")/lib.sh"

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$BENCH_DIR")
MINUTES=${1:-10}
WORKERS=${WORKERS:-2}
SAMPLE=${SAMPLE:-10}
RSS_AT=${RSS_AT:-60}
RSS_END=${RSS_END:-2}
RSS_TOLERANCE=${RSS_TOLERANCE:-5}
FD_WAIT=15
PING_INTERVAL=5
COMMAND_LINE="$0${*:+ $*}"

case "$MINUTES" in
-h | --help)
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
    exit 0
    ;;
esac
[[ "$MINUTES" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "MINUTES must be a number (got '$MINUTES')"
RUN_SECONDS=$(awk -v m="$MINUTES" 'BEGIN { printf "%d", m * 60 }')
for knob in WORKERS SAMPLE RSS_AT RSS_END RSS_TOLERANCE; do
    [[ "${!knob}" =~ ^[1-9][0-9]*$ ]] || die "$knob must be a positive integer"
done
[ $((RSS_AT + SAMPLE)) -lt "$RUN_SECONDS" ] ||
    die "a run of $RUN_SECONDS s is too short to compare RSS at ${RSS_AT} s with the end"
for tool in wrk curl ss python3; do
    command -v "$tool" >/dev/null 2>&1 || die "missing tool: $tool (apt-get install -y wrk curl iproute2 python3)"
done
ulimit -n "$(ulimit -Hn)"

percore_bin "$REPO_DIR"
WSLOAD_BIN=$(dirname "$PERCORE_BIN")/wsload
[ -x "$WSLOAD_BIN" ] || die "no wsload beside $PERCORE_BIN (cargo build --release at the top level builds it there)"

TMP=$(mktemp -d /tmp/percore-soak.XXXXXX)
chmod 755 "$TMP"
ROOT=$TMP/www
SERVER_PID=""
declare -A LOAD_PIDS=()

cleanup() {
    local name
    for name in "${!LOAD_PIDS[@]}"; do
        kill "${LOAD_PIDS[$name]}" 2>/dev/null || true
    done
    for name in "${!LOAD_PIDS[@]}"; do
        wait "${LOAD_PIDS[$name]}" 2>/dev/null || true
    done
    stop_server "$SERVER_PID"
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

make_root() {
    mkdir -p "$ROOT"
    {
        printf '<!doctype html>\n<html><head><title>small</title></head>\n'
        printf '<body><p>percore soak: a small static page.</p></body></html>\n'
    } >"$ROOT/small.html"
    local pad=$((150 - $(stat -c %s "$ROOT/small.html")))
    if [ "$pad" -ge 1 ]; then printf '%*s\n' "$((pad - 1))" '' >>"$ROOT/small.html"; fi
    head -c 4096 /dev/urandom >"$ROOT/4k.bin"
    head -c 65536 /dev/urandom >"$ROOT/64k.bin"
    head -c 1048576 /dev/urandom >"$ROOT/1m.bin"
    printf '<!doctype html>\n<html><body><p>index</p></body></html>\n' >"$ROOT/index.html"
}

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

start_percore() {
    PORT=$(pick_free_port 18400)
    ADMIN_PORT=$(pick_free_port $((PORT + 1)))
    "$PERCORE_BIN" --bind 127.0.0.1 --ports "$PORT" --workers "$WORKERS" --root "$ROOT" \
        --admin "127.0.0.1:$ADMIN_PORT" --log-level warn --ws-ping-interval "${PING_INTERVAL}s" \
        >"$TMP/percore.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do
        kill -0 "$SERVER_PID" 2>/dev/null || die "percore exited during startup: $(tail -n 5 "$TMP/percore.log")"
        curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$PORT/small.html" 2>/dev/null && return 0
        sleep 0.1
    done
    die "percore did not answer on port $PORT within 10 s"
}

# New connections for every file, enough that both workers (SO_REUSEPORT picks one per
# connection) have cached each: the descriptors held by the file cache then belong to the baseline.
warm_up() {
    local urls=() path
    for path in / small.html 4k.bin 64k.bin 1m.bin; do
        for _ in $(seq 16); do urls+=("http://127.0.0.1:$PORT/${path#/}"); done
    done
    curl -fsS -H "Connection: close" "${urls[@]}" >/dev/null || die "warm-up requests failed"
    sleep 2
}

# ---------------------------------------------------------------- measuring

rss_kib() {
    awk '$1 == "VmRSS:" { print $2 }' "/proc/$SERVER_PID/status"
}

fd_count() {
    find "/proc/$SERVER_PID/fd" -mindepth 1 -maxdepth 1 | wc -l
}

# What the server's descriptors are, by kind ("socket", "anon_inode:[eventpoll]", file paths).
fd_kinds() {
    find "/proc/$SERVER_PID/fd" -mindepth 1 -maxdepth 1 -printf '%l\n' |
        sed -e 's/^socket:.*/socket/' -e 's/^pipe:.*/pipe/' | sort | uniq -c
}

established() {
    ss -Htn state established "( sport = :$PORT )" | wc -l
}

server_cpu_ticks() {
    sed 's/.*) //' "/proc/$SERVER_PID/stat" | awk '{ print $12 + $13 }'
}

start_load() {
    local name=$1
    shift
    "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" &
    LOAD_PIDS[$name]=$!
}

start_all_load() {
    local url="http://127.0.0.1:$PORT"
    start_load wrk wrk -t1 -c50 -d"${RUN_SECONDS}s" --timeout 10s -s "$BENCH_DIR/soak.lua" "$url/"
    start_load soak-py python3 "$BENCH_DIR/soak.py" --port "$PORT" --root "$ROOT" --duration "$RUN_SECONDS"
    start_load wsload-deflate "$WSLOAD_BIN" --ports "$PORT" -c 40 --size 1024 --pipeline 4 --rate 20000 \
        --deflate --duration "$RUN_SECONDS"
    start_load wsload-quiet "$WSLOAD_BIN" --ports "$PORT" -c 200 --size 64 --rate 20 --duration "$RUN_SECONDS"
    start_load slow-clients python3 "$BENCH_DIR/slow_clients.py" --port "$PORT" --loris 20 --readers 10 \
        --read-size 4096 --read-interval 0.1 --expect-408-after 10 --verify-file "$ROOT/1m.bin" \
        --duration "$RUN_SECONDS"
}

any_load_running() {
    local name
    for name in "${!LOAD_PIDS[@]}"; do
        kill -0 "${LOAD_PIDS[$name]}" 2>/dev/null && return 0
    done
    return 1
}

# One line of soak-samples.csv, echoed as progress.
sample() {
    local t=$1 rss fds conns load
    kill -0 "$SERVER_PID" 2>/dev/null || die "percore died ${t} s into the load: $(tail -n 5 "$TMP/percore.log")"
    rss=$(rss_kib) fds=$(fd_count) conns=$(established) load=$(cut -d' ' -f1 /proc/loadavg)
    printf '%s,%s,%s,%s,%s\n' "$t" "$rss" "$fds" "$conns" "$load" >>"$SAMPLES"
    printf '  %4s s  RSS %6s KiB  %5s descriptors  %5s connections  load %s\n' "$t" "$rss" "$fds" "$conns" "$load"
}

# Samples every SAMPLE s, and once RSS_END s before the load ends (the "end" sample).
sample_during_load() {
    local next=$SAMPLE end=$((RUN_SECONDS - RSS_END))
    SECONDS=0
    while [ "$next" -le "$end" ]; do
        while [ "$SECONDS" -lt "$next" ]; do sleep 0.2; done
        sample "$next"
        if [ "$next" -eq "$end" ]; then break; fi
        next=$((next + SAMPLE))
        [ "$next" -le "$end" ] || next=$end
    done
}

# Waits for every load generator; records each one's exit status.
wait_for_load() {
    local name status deadline=$((RUN_SECONDS + 60))
    while any_load_running && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.5; done
    for name in "${!LOAD_PIDS[@]}"; do
        if kill -0 "${LOAD_PIDS[$name]}" 2>/dev/null; then
            kill "${LOAD_PIDS[$name]}" 2>/dev/null || true
            echo "$name did not finish within 60 s of the end; stopped" >>"$TMP/$name.err"
        fi
        status=0
        wait "${LOAD_PIDS[$name]}" || status=$?
        EXIT_STATUS[$name]=$status
    done
    LOAD_PIDS=()
}

# Waits (at most FD_WAIT s) until the server holds no more descriptors than before the load.
wait_for_descriptors() {
    local waited=0
    FD_AFTER=$(fd_count)
    while [ "$FD_AFTER" -gt "$FD_BEFORE" ] && [ "$waited" -lt $((FD_WAIT * 2)) ]; do
        sleep 0.5
        waited=$((waited + 1))
        FD_AFTER=$(fd_count)
    done
    FD_WAITED=$(awk -v n="$waited" 'BEGIN { printf "%.1f", n / 2 }')
}

# ---------------------------------------------------------------- counting errors

json_field() {
    python3 -c 'import json, sys
value = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
for key in sys.argv[2:]:
    value = value.get(key, 0) if isinstance(value, dict) else 0
print(json.dumps(value, separators=(", ", ": ")) if isinstance(value, (dict, list)) else value)' "$@"
}

wrk_errors() {
    awk '/Socket errors:/ { gsub(",", ""); n += $4 + $6 + $8 + $10 } /Non-2xx or 3xx responses:/ { n += $NF } END { print n + 0 }' "$TMP/wrk.out"
}

# Sets ERRORS[$1]: wsload's own error count plus connections closed with anything but 1000 (of
# $2 connections). When every connection completed its close handshake with 1000, its io errors
# came after it: wsload flushes a pong, queued for a server ping that crossed its close frame,
# into the socket it has already shut (benches/wsload/src/main.rs: on_event flushes a finished
# connection) and counts the failed write. Those are not the server's: WSLOAD_LATE_IO counts them.
wsload_errors() {
    local out=$TMP/$1.out conns=$2 errors io
    errors=$(awk '$1 == "errors:" { print $2; exit }' "$out")
    io=$(sed -n 's/^errors: .* io \([0-9]*\),.*/\1/p' "$out")
    if [ -z "$errors" ] || [ -z "$io" ]; then
        ERRORS[$1]=1 # no report: wsload failed
    elif grep -qx "close codes: 1000 x$conns" "$out"; then
        WSLOAD_LATE_IO[$1]=$io
        ERRORS[$1]=$((errors - io))
    else
        ERRORS[$1]=$((errors + 1))
    fi
}

log_errors() {
    grep -c -E '\] error: |panicked' "$TMP/percore.log" || true
}

count_errors() {
    ERRORS[wrk]=$(wrk_errors)
    wsload_errors wsload-deflate 40
    wsload_errors wsload-quiet 200
    ERRORS[soak-py]=$(json_field "$TMP/soak-py.out" error_total 2>/dev/null || echo 1)
    ERRORS[slow-clients]=$(($(json_field "$TMP/slow-clients.out" unexpected 2>/dev/null || echo 1) +
        $(python3 -c 'import json, sys; print(sum(json.loads(open(sys.argv[1]).read().splitlines()[-1])["connect_errors"].values()))' \
            "$TMP/slow-clients.out" 2>/dev/null || echo 1)))
    ERRORS[percore-log]=$(log_errors)
    local name
    for name in "${!EXIT_STATUS[@]}"; do
        # wsload exits 1 when it counted errors, which are counted above.
        case "$name:${EXIT_STATUS[$name]}" in *:0 | wsload-*:1) continue ;; esac
        ERRORS[$name]=$((${ERRORS[$name]:-0} + 1))
    done
    [ "$SERVER_EXIT" -eq 0 ] || ERRORS[percore-exit]=1
    ERROR_TOTAL=0
    for name in "${!ERRORS[@]}"; do ERROR_TOTAL=$((ERROR_TOTAL + ERRORS[$name])); done
}

# ---------------------------------------------------------------- the run

RAW_LOG=$BENCH_DIR/results/soak-raw.log
SAMPLES=$BENCH_DIR/results/soak-samples.csv
mkdir -p "$BENCH_DIR/results"
echo "t_s,rss_kib,descriptors,established,load1" >"$SAMPLES"
declare -A EXIT_STATUS=() ERRORS=() WSLOAD_LATE_IO=()

make_root
start_percore
warm_up
FD_BEFORE=$(fd_count)
FD_KINDS_BEFORE=$(fd_kinds)
RSS_BEFORE=$(rss_kib)
CPU_BEFORE=$(server_cpu_ticks)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
echo "percore $PERCORE_BIN (pid $SERVER_PID) on 127.0.0.1:$PORT, --workers $WORKERS; admin on $ADMIN_PORT"
echo "before the load: RSS $RSS_BEFORE KiB, $FD_BEFORE descriptors; load average $LOAD_START"
echo "load for $RUN_SECONDS s: wrk, soak.py, 2 x wsload, slow_clients.py"
start_all_load
sample_during_load
wait_for_load
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
CPU_AFTER=$(server_cpu_ticks)
wait_for_descriptors
FD_KINDS_AFTER=$(fd_kinds)
RSS_AFTER=$(rss_kib)
sleep 2 # workers report their counters once a second
METRICS=$(curl -fsS --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics" 2>&1 || true)
stop_server "$SERVER_PID"
SERVER_EXIT=0
wait "$SERVER_PID" || SERVER_EXIT=$?
SERVER_PID=""
count_errors

# ---------------------------------------------------------------- report

{
    for name in wrk soak-py wsload-deflate wsload-quiet slow-clients; do
        printf '=== %s (exit status %s)\n' "$name" "${EXIT_STATUS[$name]}"
        cat "$TMP/$name.out"
        [ ! -s "$TMP/$name.err" ] || tail -n 20 "$TMP/$name.err"
        echo
    done
    printf '=== descriptors before the load (%s)\n%s\n\n' "$FD_BEFORE" "$FD_KINDS_BEFORE"
    printf '=== descriptors %s s after the load (%s)\n%s\n\n' "$FD_WAITED" "$FD_AFTER" "$FD_KINDS_AFTER"
    printf '=== /metrics after the load (percore_requests_total, connections, WebSocket)\n'
    grep -E '^percore_(requests_total|connections_(accepted_total|closed_total|active)|ws_(upgrades_total|closed_total|close_frames_total|connections_active))' <<<"$METRICS" || true
    printf '\n=== percore log (warn and above)\n'
    cat "$TMP/percore.log"
} >"$RAW_LOG"

sample_at() {
    awk -F, -v t="$1" 'NR > 1 && $1 >= t { print $2; exit }' "$SAMPLES"
}
RSS_1M=$(sample_at "$RSS_AT")
RSS_LAST=$(tail -n 1 "$SAMPLES" | cut -d, -f2)
RSS_DRIFT=$(awk -v a="$RSS_1M" -v b="$RSS_LAST" 'BEGIN { printf "%+.1f", (b / a - 1) * 100 }')
RSS_MIN_MAX=$(awk -F, 'NR > 1 { if (min == "" || $2 < min) min = $2; if ($2 > max) max = $2 } END { print min "-" max }' "$SAMPLES")
CPU_PCT=$(awk -v t=$((CPU_AFTER - CPU_BEFORE)) -v hz="$(getconf CLK_TCK)" -v s="$RUN_SECONDS" 'BEGIN { printf "%.0f", t / hz / s * 100 }')

verdict() { if [ "$1" = 1 ]; then echo "met"; else echo "**MISSED**"; fi; }
GOAL_ERRORS=0 GOAL_FDS=0
if [ "$ERROR_TOTAL" -eq 0 ]; then GOAL_ERRORS=1; fi
if [ "$FD_AFTER" -le "$FD_BEFORE" ]; then GOAL_FDS=1; fi
GOAL_RSS=$(awk -v d="$RSS_DRIFT" -v t="$RSS_TOLERANCE" 'BEGIN { print (d <= t && d >= -t) ? 1 : 0 }')

counts() {
    echo "| load | what it did |"
    echo "|---|---|"
    echo "| wrk -t1 -c50, keep-alive GETs (benches/soak.lua) | $(awk '/ requests in / { print $1 " requests, " $5 " read" }' "$TMP/wrk.out"); $(awk '/^Requests\/sec:/ { printf "%.0f req/s", $2 }' "$TMP/wrk.out") |"
    echo "| soak.py, checked HTTP and WebSocket | $(json_field "$TMP/soak-py.out" checked); server pings seen: $(json_field "$TMP/soak-py.out" ws_server_pings) |"
    echo "| wsload -c 40 --deflate, 1 KiB | $(awk '$1 == "messages:" { print $2 " messages" } $1 == "permessage-deflate:" { print "deflate on " $4 " of " $6 }' "$TMP/wsload-deflate.out" | paste -sd ',' - | sed 's/,/, /') |"
    echo "| wsload -c 200 --rate 20 (quiet, pinged) | $(awk '$1 == "messages:" { print $2 " messages" }' "$TMP/wsload-quiet.out") |"
    echo "| slow_clients.py, 20 slow-loris + 10 slow readers | slow-loris closed: $(json_field "$TMP/slow-clients.out" loris_outcomes), lifetime $(json_field "$TMP/slow-clients.out" loris_lifetime_s); reader responses read whole: $(json_field "$TMP/slow-clients.out" reader_responses_completed) |"
}

errors_table() {
    echo "| source | errors |"
    echo "|---|---:|"
    local name
    for name in wrk soak-py wsload-deflate wsload-quiet slow-clients percore-log percore-exit; do
        echo "| $name | ${ERRORS[$name]:-0} |"
    done
    for name in wsload-deflate wsload-quiet; do
        [ "${WSLOAD_LATE_IO[$name]:-0}" -eq 0 ] ||
            echo "| $name: io errors after a completed close handshake (wsload's, not counted; see benches/README.md) | ${WSLOAD_LATE_IO[$name]} |"
    done
}

percore_rev=$(cd "$REPO_DIR" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(cd "$REPO_DIR" && git status --porcelain -- src 2>/dev/null)" ]; then percore_rev="$percore_rev (src modified)"; fi
report=$(
    echo "# Soak: $MINUTES minutes of mixed load against one percore"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "- machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), kernel $(uname -r)"
    echo "- percore: $percore_rev, --workers $WORKERS --ws-ping-interval ${PING_INTERVAL}s, other settings default; server and load unpinned"
    echo "- command: \`WORKERS=$WORKERS SAMPLE=$SAMPLE RSS_AT=$RSS_AT $COMMAND_LINE\`"
    echo "- load average (1, 5, 15 min) at the start: $LOAD_START; at the end: $LOAD_END; percore used $CPU_PCT % of one CPU"
    echo
    echo "| goal | result | |"
    echo "|---|---|---|"
    echo "| errors = 0 | $ERROR_TOTAL | $(verdict "$GOAL_ERRORS") |"
    echo "| RSS at the end within ${RSS_TOLERANCE} % of RSS at ${RSS_AT} s | $RSS_1M → $RSS_LAST KiB ($RSS_DRIFT %) | $(verdict "$GOAL_RSS") |"
    echo "| descriptors back to the count before the load | $FD_BEFORE before, $FD_AFTER ${FD_WAITED} s after the load | $(verdict "$GOAL_FDS") |"
    echo
    echo "RSS before the load $RSS_BEFORE KiB, over the samples $RSS_MIN_MAX KiB, after the load $RSS_AFTER KiB"
    echo "(every ${SAMPLE} s in benches/results/soak-samples.csv)."
    echo
    counts
    echo
    errors_table
    echo
    echo "Raw output of every load generator, the descriptors by kind, /metrics and percore's log:"
    echo "benches/results/soak-raw.log."
)
echo
echo "$report"
echo "$report" >"$BENCH_DIR/results/soak.md"
echo
echo "Written to benches/results/soak.md (raw: soak-raw.log, samples: soak-samples.csv)"
[ "$GOAL_ERRORS" = 1 ] && [ "$GOAL_RSS" = 1 ] && [ "$GOAL_FDS" = 1 ]
