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

# Raises the soft open-files limit to the hard one; fails unless each count of connections
# given (plus 200 for everything else) fits under it: a server and its client each need that many.
raise_nofile_for() {
    HARD_NOFILE=$(ulimit -Hn)
    ulimit -n "$HARD_NOFILE"
    local k
    for k in "$@"; do
        [ "$HARD_NOFILE" = unlimited ] || [ $((k + 200)) -le "$HARD_NOFILE" ] ||
            die "K=$k needs $((k + 200)) open files per process; the hard limit here is $HARD_NOFILE"
    done
}

# Sets PERCORE_BIN: the given binary if it is one, else a fresh `cargo build --release` in $1.
percore_bin() {
    if [ -n "${PERCORE_BIN:-}" ]; then
        [ -x "$PERCORE_BIN" ] || die "PERCORE_BIN=$PERCORE_BIN is not executable"
    else
        echo "Building percore (cargo build --release)..."
        (cd "$1" && cargo build --release --quiet) || die "cargo build --release failed"
        PERCORE_BIN=$1/target/release/percore
    fi
}

# Writes an h2o configuration to $1: $2 threads, one TLS 1.2/1.3 listener on 127.0.0.1:$3 with the
# certificate $4 and key $5, serving the files under $6, its pid file and error log in $7.
# TLS 1.2 offers one suite, ECDHE-ECDSA-AES128-GCM-SHA256; h2o 2.2 has no setting for TLS 1.3
# suites (compare.sh gives it one through OPENSSL_CONF).
write_h2o_conf() {
    cat >"$1" <<H2O
num-threads: $2
user: $(id -un)
max-connections: $(ulimit -Hn)
http1-request-timeout: 300
pid-file: $7/h2o.pid
error-log: $7/h2o-error.log
listen:
  host: 127.0.0.1
  port: $3
  ssl:
    certificate-file: $4
    key-file: $5
    min-version: TLSv1.2
    cipher-suite: ECDHE-ECDSA-AES128-GCM-SHA256
    cipher-preference: server
    ocsp-update-interval: 0
hosts:
  default:
    paths:
      /:
        file.dir: $6
H2O
}

# Writes an OpenSSL configuration file to $1 whose default TLS settings are the remaining
# arguments (lines such as "MaxProtocol = TLSv1.2"): a program that loads OpenSSL's default
# configuration (OPENSSL_CONF=$1) applies them to every TLS context it makes.
write_openssl_conf() {
    local file=$1
    shift
    printf '%s\n' "openssl_conf = conf" "[conf]" "ssl_conf = ssl" "[ssl]" "system_default = tls" "[tls]" "$@" >"$file"
}
