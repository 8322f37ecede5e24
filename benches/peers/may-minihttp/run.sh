#!/usr/bin/env bash
# may_minihttp peer: run.sh PORT [CPUS=0] [NPORTS=1]; serves $DOCROOT (default: the
# repository's www/) from memory
# Runs build/target/release/may-minihttp-peer (built by ./build.sh on first use) in the
# foreground, pinned to CPUS, with one may worker thread per CPU in CPUS (may pins its workers
# to those CPUs in order), listening on 127.0.0.1 PORT..PORT+NPORTS-1.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
port="${1:-9861}"; cpus="${2:-0}"; nports="${3:-1}"
bin="$here/build/target/release/may-minihttp-peer"
[[ -x $bin ]] || "$here/build.sh" >&2
docroot="$(cd "${DOCROOT:-$here/../../../www}" && pwd)"
workers=$(taskset -c "$cpus" nproc)
ports=()
for ((p = port; p < port + nports; p++)); do ports+=("$p"); done
exec taskset -c "$cpus" "$bin" --root "$docroot" --workers "$workers" "${ports[@]}"
