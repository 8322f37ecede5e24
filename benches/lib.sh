# Shell helpers shared by the benchmark scripts (sourced, not run).

die() {
    echo "$(basename "$0"): $*" >&2
    exit 1
}

# Stops a server by PID: SIGTERM, up to 10 s to exit, then SIGKILL.
stop_server() {
    local pid=$1
    [ -n "$pid" ] || return 0
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
}

port_is_free() {
    ! ss -Htln "sport = :$1" | grep -q .
}
