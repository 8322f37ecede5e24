#!/usr/bin/env bash
# lwan peer: run.sh PORT [CPUS=0] [NPORTS=1]; serves $DOCROOT (default: the repository's www/)
# Runs build/cmake/src/bin/lwan/lwan (built by ./build.sh on first use) in the foreground
# with lwan.conf filled in (build/lwan-PORT.conf): threads = number of CPUs in CPUS,
# listener 127.0.0.1:PORT. lwan supports exactly one HTTP listener per process, so only
# PORT is opened: an NPORTS above 1 is reported and ignored (compare.sh starts this peer
# with NPORTS=1, see README).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
port="${1:-9851}"; cpus="${2:-0}"; nports="${3:-1}"
bin="$here/build/cmake/src/bin/lwan/lwan"
[[ -x $bin ]] || "$here/build.sh" >&2
if ((nports > 1)); then
    echo "lwan peer: lwan has one listener per process: listening on $port only (NPORTS=$nports ignored)" >&2
fi
docroot="$(cd "${DOCROOT:-$here/../../../www}" && pwd)"
threads=$(taskset -c "$cpus" nproc)
conf="$here/build/lwan-$port.conf"
t=$(<"$here/lwan.conf")
t=${t//@LISTENER@/127.0.0.1:$port}; t=${t//@THREADS@/$threads}; t=${t//@DOCROOT@/$docroot}
printf '%s\n' "$t" >"$conf"
echo "lwan: $bin -c $conf (listener 127.0.0.1:$port, $threads thread(s) on cpus $cpus, root $docroot)" >&2
exec taskset -c "$cpus" "$bin" -c "$conf"
