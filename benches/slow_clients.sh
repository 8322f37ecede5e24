#!/usr/bin/env bash
# Slow clients: good clients' requests/s with and without slow-loris connections and slow
# readers, percore beside nginx with the same timeouts, and server memory per slow connection.
#
# Usage: benches/slow_clients.sh
# Every round measures percore and nginx once each (the order alternates round by round), each
# on a fresh server pinned to SERVER_CPUS, one worker:
#   1. wrk -t1 -c50 (keep-alive, the 150 B small.html), 2 s warm-up, then DURATION s: req/s
#      without attack; the server's RSS one second later is "before";
#   2. benches/slow_clients.py opens LORIS slow-loris connections (a request head, one byte every
#      2 s, never finished; each one the server closes is replaced) and READERS slow readers
#      (GET /1m.bin, then 1 KiB read per second), waits until they are open, then ATTACK_SETTLE
#      s more so that the slow-loris connections have been closed and replaced at least once;
#   3. wrk again for DURATION s under attack; one second later RSS "during" and the server's
#      established connections (ss), the attack still on;
#   4. the attacker closes everything; AFTER s later RSS "after".
# RSS per slow connection = (during - before) / established connections at "during". For nginx
# RSS is the worker's (it holds every connection), for percore the process's.
# percore: --header-timeout 10s --send-timeout 60s --keepalive-timeout 60s (its defaults).
# nginx: benches/nginx.conf.in (keepalive_timeout 60s, keepalive_requests 100000, sendfile, ...)
#   plus client_header_timeout 10s and send_timeout 60s, worker_connections for the attack,
#   and the listen backlog of percore's listeners (net.core.somaxconn).
# wrk and the attacker share CLIENT_CPUS. Results go to benches/results/slow-clients.md, raw
# output (wrk, the attacker's JSON summaries) to benches/results/slow-clients-raw.log.
# Knobs (environment):
#   ROUNDS=3  DURATION=10  LORIS=5000  READERS=500  ATTACK_SETTLE=12  AFTER=5
#   SERVER_CPUS=0  CLIENT_CPUS=1  PERCORE_BIN (default: cargo build --release)
set -euo pipefail
# shellcheck source=benches/lib.sh
source "$(dirname "$0")/lib.sh"

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$BENCH_DIR")
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
LORIS=${LORIS:-5000}
READERS=${READERS:-500}
ATTACK_SETTLE=${ATTACK_SETTLE:-12}
AFTER=${AFTER:-5}
SERVER_CPUS=${SERVER_CPUS:-0}
CLIENT_CPUS=${CLIENT_CPUS:-1}
HEADER_TIMEOUT=10
SEND_TIMEOUT=60
WRK_CONNS=50
COMMAND_LINE="$0${*:+ $*}"

case "${1:-}" in
-h | --help)
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
    exit 0
    ;;
"") ;;
*) die "no arguments expected (knobs are environment variables; see --help)" ;;
esac
for knob in ROUNDS DURATION ATTACK_SETTLE AFTER; do
    [[ "${!knob}" =~ ^[1-9][0-9]*$ ]] || die "$knob must be a positive integer"
done
for knob in LORIS READERS; do
    [[ "${!knob}" =~ ^[0-9]+$ ]] || die "$knob must be a non-negative integer"
done
for tool in wrk nginx curl ss taskset python3 getconf; do
    command -v "$tool" >/dev/null 2>&1 ||
        die "missing tool: $tool (apt-get install -y wrk nginx curl iproute2 util-linux python3)"
done

# The server and the attacker each hold every slow connection; neither may pass the hard limit.
HARD_NOFILE=$(ulimit -Hn)
ulimit -n "$HARD_NOFILE"
ATTACK=$((LORIS + READERS))
[ "$HARD_NOFILE" = unlimited ] || [ $((ATTACK + 200)) -le "$HARD_NOFILE" ] ||
    die "$ATTACK slow connections need $((ATTACK + 200)) open files per process; the hard limit is $HARD_NOFILE"
SOMAXCONN=$(cat /proc/sys/net/core/somaxconn)
CLK_TCK=$(getconf CLK_TCK)

percore_bin "$REPO_DIR"

TMP=$(mktemp -d /tmp/percore-slow.XXXXXX)
chmod 755 "$TMP"
ROOT=$TMP/www
SERVER_PID=""
ATTACK_PID=""

cleanup() {
    if [ -n "$ATTACK_PID" ]; then
        kill "$ATTACK_PID" 2>/dev/null || true
        wait "$ATTACK_PID" 2>/dev/null || true
    fi
    stop_server "$SERVER_PID"
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The same files as compare.sh: small.html is exactly 150 bytes.
make_root() {
    mkdir -p "$ROOT"
    {
        printf '<!doctype html>\n<html><head><title>small</title></head>\n'
        printf '<body><p>percore vs nginx: a small static page.</p></body></html>\n'
    } >"$ROOT/small.html"
    local pad=$((150 - $(stat -c %s "$ROOT/small.html")))
    if [ "$pad" -ge 1 ]; then printf '%*s\n' "$((pad - 1))" '' >>"$ROOT/small.html"; fi
    head -c 1048576 /dev/urandom >"$ROOT/1m.bin"
    printf '<!doctype html>\n<html><body><p>index</p></body></html>\n' >"$ROOT/index.html"
}

# ---------------------------------------------------------------- servers

NEXT_PORT=18300

# A port nobody listens on, never the same twice in a run: the previous server's connections
# may still be in TIME_WAIT on its port.
next_port() {
    while ! port_is_free "$NEXT_PORT"; do NEXT_PORT=$((NEXT_PORT + 1)); done
    PORT=$NEXT_PORT
    NEXT_PORT=$((NEXT_PORT + 1))
}

wait_until_serving() {
    local name=$1 log=$2
    for _ in $(seq 100); do
        kill -0 "$SERVER_PID" 2>/dev/null || {
            echo "slow_clients.sh: $name exited during startup; last lines of $log:" >&2
            tail -n 20 "$log" >&2 || true
            exit 1
        }
        curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$PORT/small.html" 2>/dev/null && return 0
        sleep 0.1
    done
    die "$name did not answer on port $PORT within 10 s (log: $log)"
}

start_percore() {
    taskset -c "$SERVER_CPUS" "$PERCORE_BIN" --bind 127.0.0.1 --ports "$PORT" --workers 1 \
        --root "$ROOT" --admin off --log-level warn --header-timeout "${HEADER_TIMEOUT}s" \
        --send-timeout "${SEND_TIMEOUT}s" --keepalive-timeout 60s >"$TMP/percore.log" 2>&1 &
    SERVER_PID=$!
    wait_until_serving percore "$TMP/percore.log"
}

# Room for every slow connection, wrk's and the reconnections in flight, with nginx's 1/16
# headroom (it starts closing idle keep-alive connections when fewer slots are free).
nginx_slots() {
    echo $(((ATTACK + WRK_CONNS) * 9 / 8 + 200))
}

# compare.sh's nginx configuration with the limits of the percore above.
write_nginx_conf() {
    sed -e "s|@WORKERS@|1|g" -e "s|@TMP@|$TMP|g" -e "s|@PORT@|$PORT|g" -e "s|@ROOT@|$ROOT|g" \
        -e "s|worker_connections [0-9]*;|worker_connections $(nginx_slots);|" \
        -e "s|worker_rlimit_nofile [0-9]*;|worker_rlimit_nofile $HARD_NOFILE;|" \
        -e "s|reuseport deferred;|reuseport deferred backlog=$SOMAXCONN;|" \
        -e "s|^\( *\)keepalive_requests .*|&\n\1client_header_timeout ${HEADER_TIMEOUT}s;\n\1send_timeout ${SEND_TIMEOUT}s;|" \
        "$BENCH_DIR/nginx.conf.in" >"$TMP/nginx.conf"
    local line
    for line in "worker_connections $(nginx_slots);" "client_header_timeout ${HEADER_TIMEOUT}s;" \
        "send_timeout ${SEND_TIMEOUT}s;" "backlog=$SOMAXCONN;" "keepalive_timeout 60s;"; do
        grep -qF "$line" "$TMP/nginx.conf" || die "could not put '$line' into $TMP/nginx.conf"
    done
}

start_nginx() {
    write_nginx_conf
    nginx -t -q -p "$TMP" -e "$TMP/nginx-error.log" -c "$TMP/nginx.conf" -g 'daemon off;' ||
        die "nginx rejected the generated config $TMP/nginx.conf"
    taskset -c "$SERVER_CPUS" nginx -p "$TMP" -e "$TMP/nginx-error.log" -c "$TMP/nginx.conf" \
        -g 'daemon off;' >"$TMP/nginx.log" 2>&1 &
    SERVER_PID=$!
    wait_until_serving nginx "$TMP/nginx-error.log"
}

# The process that holds the connections: percore itself, or nginx's only worker.
measured_pid() {
    [ "$1" = percore ] && {
        echo "$SERVER_PID"
        return
    }
    local children
    children=$(ps -o pid= --ppid "$SERVER_PID" | tr -d ' ')
    [ "$(wc -w <<<"$children")" -eq 1 ] || die "expected one nginx worker under master $SERVER_PID, found: ${children:-none}"
    echo "$children"
}

# ---------------------------------------------------------------- measuring

rss_kib() {
    awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status"
}

# Established server-side connections on the port (accepted or waiting in the listen queue).
established() {
    ss -Htn state established "( sport = :$PORT )" | wc -l
}

# Kernel memory of all TCP sockets, KiB (the pages of /proc/net/sockstat's "TCP: ... mem").
tcp_mem_kib() {
    awk -v page="$(getconf PAGESIZE)" '$1 == "TCP:" { for (i = 2; i < NF; i++) if ($i == "mem") print $(i + 1) * page / 1024 }' /proc/net/sockstat
}

# CPU clock ticks (utime + stime) of process $1.
cpu_ticks() {
    sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

# Busy clock ticks of the whole machine, all CPUs (user, nice, system, irq, softirq, steal).
machine_ticks() {
    awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat
}

# wrk against the current server; prints its output.
run_wrk() {
    taskset -c "$CLIENT_CPUS" wrk -t1 -c"$WRK_CONNS" -d"$1s" --latency "http://127.0.0.1:$PORT/small.html" 2>&1
}

# Runs wrk for DURATION s against the server whose connections process $1 holds and logs its
# output under the title $2. Sets the caller's rps, p99 (ms), errors (socket errors + non-2xx/3xx),
# cpu_us (the server's CPU time per good request, attack included), and, as % of one CPU over
# wrk's run: server_pct, attack_pct (the attacker, if running), and other_pct: every other
# process on the machine plus interrupt time not charged to a process.
measure_wrk() {
    local pid=$1 title=$2 out s0 s1 m0 m1 a0=0 a1=0 real user sys requests
    s0=$(cpu_ticks "$pid") m0=$(machine_ticks)
    if [ -n "$ATTACK_PID" ]; then a0=$(cpu_ticks "$ATTACK_PID"); fi
    local TIMEFORMAT='wrk-time: %R %U %S'
    out=$({ time run_wrk "$DURATION"; } 2>&1)
    s1=$(cpu_ticks "$pid") m1=$(machine_ticks)
    if [ -n "$ATTACK_PID" ]; then a1=$(cpu_ticks "$ATTACK_PID"); fi
    printf '=== %s\n%s\n\n' "$title" "$out" >>"$RAW_LOG"
    rps=$(awk '/^Requests\/sec:/ { print $2; exit }' <<<"$out")
    requests=$(awk '/ requests in / { print $1; exit }' <<<"$out")
    p99=$(awk '$1 == "99%" { v = $2; n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n *= 1000; printf "%.2f", n; exit }' <<<"$out")
    errors=$(awk '/Socket errors:/ { gsub(",", ""); n += $4 + $6 + $8 + $10 } /Non-2xx or 3xx responses:/ { n += $NF } END { print n + 0 }' <<<"$out")
    read -r real user sys < <(awk '$1 == "wrk-time:" { print $2, $3, $4 }' <<<"$out")
    if [ -z "$rps" ] || [ -z "$requests" ] || [ -z "$p99" ] || [ -z "${sys:-}" ]; then
        printf '%s\n' "$out" >&2
        die "could not parse wrk output ($title)"
    fi
    read -r server_pct attack_pct other_pct < <(awk -v hz="$CLK_TCK" -v r="$real" -v wrk="$user $sys" \
        -v s=$((s1 - s0)) -v a=$((a1 - a0)) -v m=$((m1 - m0)) 'BEGIN {
            split(wrk, w, " ")
            other = (m / hz - s / hz - a / hz - w[1] - w[2]) / r * 100
            printf "%.0f %.0f %.0f\n", s / hz / r * 100, a / hz / r * 100, (other > 0 ? other : 0)
        }')
    cpu_us=$(awk -v t=$((s1 - s0)) -v hz="$CLK_TCK" -v n="$requests" 'BEGIN { printf "%.2f", (n > 0 ? t / hz * 1e6 / n : 0) }')
}

start_attack() {
    rm -f "$TMP/attack.json"
    taskset -c "$CLIENT_CPUS" python3 "$BENCH_DIR/slow_clients.py" --port "$PORT" \
        --loris "$LORIS" --readers "$READERS" --status-file "$TMP/attack.json" \
        >"$TMP/attack.out" 2>&1 &
    ATTACK_PID=$!
}

# One field of the attacker's status file.
attack_status() {
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$TMP/attack.json" "$1"
}

# Waits until 99 % of the slow connections are open (at most 60 s), then ATTACK_SETTLE s.
wait_for_attack() {
    local open=0
    for _ in $(seq 600); do
        kill -0 "$ATTACK_PID" 2>/dev/null || die "slow_clients.py exited: $(cat "$TMP/attack.out")"
        if [ -f "$TMP/attack.json" ]; then
            open=$(($(attack_status loris_open) + $(attack_status readers_open)))
            [ $((open * 100)) -ge $((ATTACK * 99)) ] && break
        fi
        sleep 0.1
    done
    [ $((open * 100)) -ge $((ATTACK * 99)) ] || die "only $open of $ATTACK slow connections opened within 60 s"
    sleep "$ATTACK_SETTLE"
}

# Stops the attacker (its JSON summary is then the last line of attack.out). Not in a
# subshell: only this shell can wait for it.
stop_attack() {
    kill "$ATTACK_PID"
    wait "$ATTACK_PID" || die "slow_clients.py failed: $(cat "$TMP/attack.out")"
    ATTACK_PID=""
}

# The median of a JSON summary's slow-loris lifetimes, a tab, and its outcomes ("408 x123, ...").
loris_outcome() {
    python3 -c 'import json, sys
s = json.loads(sys.argv[1])
life = s["loris_lifetime_s"] or {"median": "nan"}
outcomes = ", ".join("%s x%d" % kv for kv in sorted(s["loris_outcomes"].items()))
print("%s\t%s" % (life["median"], outcomes or "none"))' "$1"
}

RESULTS=$TMP/results.tsv
RAW_LOG=$BENCH_DIR/results/slow-clients-raw.log
mkdir -p "$BENCH_DIR/results"
: >"$RAW_LOG"
FIELDS=(server round load rps0 rps1 ratio p99_0 p99_1 err0 err1 server_pct0 server_pct1 cpu_us0 cpu_us1 attack_pct
    other_pct0 other_pct1 rss0 rss1 rss2 conns per_conn tcp0 tcp1 loris_life loris_outcomes attacker_open)
(IFS=$'\t' && echo "${FIELDS[*]}") >"$RESULTS"

# One run: fresh server, wrk, attack, wrk under attack, memory; appends a line to RESULTS.
run() {
    local server=$1 round=$2 pid load rps p99 errors server_pct attack_pct other_pct cpu_us
    local rps0 p99_0 err0 server_pct0 other_pct0 cpu_us0 rss0 rss1 rss2 conns tcp0 tcp1 open summary
    local loris_life loris_outcomes
    next_port
    "start_$server"
    pid=$(measured_pid "$server")
    load=$(cut -d' ' -f1 /proc/loadavg)
    run_wrk 2 >/dev/null
    measure_wrk "$pid" "round $round $server, no attack (port $PORT, measured pid $pid, load average $load)"
    rps0=$rps p99_0=$p99 err0=$errors server_pct0=$server_pct other_pct0=$other_pct cpu_us0=$cpu_us
    sleep 1
    rss0=$(rss_kib "$pid") tcp0=$(tcp_mem_kib)

    start_attack
    wait_for_attack
    measure_wrk "$pid" "round $round $server, under attack"
    sleep 1
    rss1=$(rss_kib "$pid") tcp1=$(tcp_mem_kib) conns=$(established)
    open="$(attack_status loris_open) slow-loris + $(attack_status readers_open) readers"
    stop_attack
    summary=$(tail -n 1 "$TMP/attack.out")
    printf '=== round %s %s, attacker summary (at "during": %s established, attacker: %s open)\n%s\n\n' \
        "$round" "$server" "$conns" "$open" "$summary" >>"$RAW_LOG"
    sleep "$AFTER"
    kill -0 "$pid" 2>/dev/null || die "$server died during the attack"
    rss2=$(rss_kib "$pid")
    stop_server "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""

    IFS=$'\t' read -r loris_life loris_outcomes <<<"$(loris_outcome "$summary")"
    local values=("$server" "$round" "$load" "$rps0" "$rps"
        "$(awk -v a="$rps0" -v b="$rps" 'BEGIN { printf "%.3f", (a > 0 ? b / a : 0) }')"
        "$p99_0" "$p99" "$err0" "$errors" "$server_pct0" "$server_pct" "$cpu_us0" "$cpu_us" "$attack_pct"
        "$other_pct0" "$other_pct" "$rss0" "$rss1" "$rss2" "$conns"
        "$(awk -v a="$rss0" -v b="$rss1" -v n="$conns" 'BEGIN { printf "%.0f", (n > 0 ? (b - a) * 1024 / n : 0) }')"
        "$tcp0" "$tcp1" "$loris_life" "$loris_outcomes" "$open")
    (IFS=$'\t' && echo "${values[*]}") >>"$RESULTS"
    printf '  round %s %-8s %9s -> %9s req/s  p99 %s -> %s ms  wrk errors %s/%s  RSS %s -> %s -> %s KiB, %s conns: %s B each\n' \
        "$round" "$server" "$rps0" "$rps" "$p99_0" "$p99" "$err0" "$errors" "$rss0" "$rss1" "$rss2" \
        "$conns" "${values[21]}"
    printf '         CPU %%: server %s -> %s (%s -> %s us/req), attacker %s, others %s -> %s (load average %s); slow-loris closed after %s s: %s\n' \
        "$server_pct0" "$server_pct" "$cpu_us0" "$cpu_us" "$attack_pct" "$other_pct0" "$other_pct" "$load" "$loris_life" "$loris_outcomes"
}

make_root
echo "percore: $PERCORE_BIN --workers 1; nginx: $(nginx -v 2>&1 | sed 's/^nginx version: //'), worker_processes 1"
echo "servers on CPU(s) $SERVER_CPUS; wrk and slow_clients.py on CPU(s) $CLIENT_CPUS"
echo "attack: $LORIS slow-loris + $READERS slow readers; wrk -t1 -c$WRK_CONNS ${DURATION}s; $ROUNDS rounds"
for round in $(seq "$ROUNDS"); do
    echo "Round $round/$ROUNDS"
    order=(percore nginx)
    if [ $((round % 2)) -eq 0 ]; then order=(nginx percore); fi
    for server in "${order[@]}"; do
        run "$server" "$round"
    done
done

# ---------------------------------------------------------------- report

# The values of column $2 (by name) in the rows of server $1, one a line.
column() {
    awk -F'\t' -v s="$1" -v name="$2" '
        NR == 1 { for (i = 1; i <= NF; i++) if ($i == name) c = i; next }
        $1 == s { print $c }' "$RESULTS"
}

median() {
    column "$1" "$2" | sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "nan"; exit }
        if (NR % 2) m = v[(NR + 1) / 2]; else m = (v[NR / 2] + v[NR / 2 + 1]) / 2
        print m
    }'
}

# "min-max" of column $2 in the rows of server $1, each printed with format $3.
range() {
    column "$1" "$2" | sort -g | awk -v f="$3" 'NR == 1 { lo = $1 } { hi = $1 } END { printf f "-" f "\n", lo, hi }'
}

# Every value of column $2 for server $1, round by round, comma-separated.
values() {
    column "$1" "$2" | paste -sd ',' - | sed 's/,/, /g'
}

# A table row: label, then both servers' median and min-max of column $3 in awk format $2.
row() {
    local label=$1 fmt=$2 name=$3
    awk -v l="$label" -v f="$fmt" -v p="$(median percore "$name")" -v n="$(median nginx "$name")" \
        -v pr="$(range percore "$name" "$fmt")" -v nr="$(range nginx "$name" "$fmt")" \
        'BEGIN { printf "| %s | " f " | %s | " f " | %s |\n", l, p, pr, n, nr }'
}

percore_rev=$(cd "$REPO_DIR" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(cd "$REPO_DIR" && git status --porcelain -- src 2>/dev/null)" ]; then percore_rev="$percore_rev (src modified)"; fi
report=$(
    echo "# Slow clients: percore vs nginx under slow-loris and slow readers"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "- machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), kernel $(uname -r)"
    echo "- percore: $percore_rev, --workers 1 --header-timeout ${HEADER_TIMEOUT}s --send-timeout ${SEND_TIMEOUT}s --keepalive-timeout 60s"
    echo "- nginx: $(nginx -v 2>&1 | sed 's/^nginx version: //'), worker_processes 1, benches/nginx.conf.in plus client_header_timeout ${HEADER_TIMEOUT}s,"
    echo "  send_timeout ${SEND_TIMEOUT}s, worker_connections $(nginx_slots), listen backlog=$SOMAXCONN (percore's: net.core.somaxconn)"
    echo "- good clients: wrk -t1 -c$WRK_CONNS -d${DURATION}s, keep-alive GET /small.html (150 B)"
    echo "- attack (benches/slow_clients.py, one process): $LORIS slow-loris connections (a head byte every 2 s, never"
    echo "  finished, replaced when closed) + $READERS slow readers (GET /1m.bin, 1 KiB read per second, kernel default"
    echo "  receive buffer); measured after they were open for ${ATTACK_SETTLE}+ s"
    echo "- servers pinned to CPU $SERVER_CPUS; wrk and the attacker share CPU $CLIENT_CPUS"
    echo "- command: \`ROUNDS=$ROUNDS DURATION=$DURATION LORIS=$LORIS READERS=$READERS $COMMAND_LINE\`"
    echo "- medians of $ROUNDS rounds, server order alternating; min-max over the rounds beside each median"
    echo
    echo "| | percore | min-max | nginx | min-max |"
    echo "|---|---:|---|---:|---|"
    row "req/s without attack" "%.0f" rps0
    row "req/s under attack" "%.0f" rps1
    row "**under attack / without**" "%.3f" ratio
    row "wrk p99 ms without attack" "%.2f" p99_0
    row "wrk p99 ms under attack" "%.2f" p99_1
    row "server RSS before, KiB" "%.0f" rss0
    row "server RSS during, KiB" "%.0f" rss1
    row "server RSS ${AFTER} s after, KiB" "%.0f" rss2
    row "established connections at \"during\"" "%.0f" conns
    row "**RSS per slow connection, B**" "%.0f" per_conn
    row "server CPU % without attack (of one CPU)" "%.0f" server_pct0
    row "server CPU % under attack" "%.0f" server_pct1
    row "server CPU µs per good request without attack" "%.2f" cpu_us0
    row "server CPU µs per good request under attack (attack's work included)" "%.2f" cpu_us1
    row "attacker CPU % (on wrk's CPU)" "%.0f" attack_pct
    row "other CPU % without attack (noise)" "%.0f" other_pct0
    row "other CPU % under attack" "%.0f" other_pct1
    row "kernel TCP memory before, KiB (system-wide)" "%.0f" tcp0
    row "kernel TCP memory during, KiB" "%.0f" tcp1
    row "slow-loris lifetime, median s (connect to close)" "%.2f" loris_life
    echo
    echo "wrk errors (socket errors + non-2xx/3xx), round by round: percore $(values percore err0) without attack,"
    echo "$(values percore err1) under attack; nginx $(values nginx err0) without, $(values nginx err1) under attack."
    echo "Load average (1 min) at the start of each run: percore $(values percore load); nginx $(values nginx load)."
    echo
    echo "How the servers closed the slow-loris connections (the attacker's count over each whole attack):"
    echo
    awk -F'\t' 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
        { printf "- round %s, %s: %s (open at \"during\", as the attacker counts them: %s)\n",
            $c["round"], $c["server"], $c["loris_outcomes"], $c["attacker_open"] }' "$RESULTS"
    echo
    echo "RSS per slow connection = (during - before) / established connections at \"during\" (slow-loris and"
    echo "slow readers together, all held by the server at once). RSS is percore's whole process, nginx's worker."
    echo "Kernel TCP memory is /proc/net/sockstat's TCP mem (all sockets on the machine, both ends of each"
    echo "loopback connection): where the slow readers' unread 1 MiB responses wait, for both servers."
    echo "CPU % are shares of one CPU over wrk's run (utime + stime from /proc); \"other\" is the machine's busy"
    echo "time (/proc/stat) minus server, wrk and attacker: other users' work, plus interrupt time charged to no"
    echo "process (on loopback some of the TCP work), so it is the noise indicator."
)
echo
echo "$report"
echo "$report" >"$BENCH_DIR/results/slow-clients.md"
echo
echo "Written to benches/results/slow-clients.md (raw output: benches/results/slow-clients-raw.log)"
