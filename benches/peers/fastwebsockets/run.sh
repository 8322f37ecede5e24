#!/usr/bin/env bash
# fastwebsockets WebSocket echo peer: run.sh PORT [CPUS=0] [NPORTS=1]
# Runs build/target/release/fastwebsockets-peer (built by ./build.sh on first use) in the
# foreground, pinned to CPUS, with one tokio runtime worker per CPU in CPUS (one CPU: a
# current-thread runtime), echoing on any path of 127.0.0.1 PORT..PORT+NPORTS-1.
# FASTWEBSOCKETS_FLAGS: more flags for it, e.g. --nodelay (TCP_NODELAY; off by default, as in
# fastwebsockets' example).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
port="${1:-9911}"; cpus="${2:-0}"; nports="${3:-1}"
bin="$here/build/target/release/fastwebsockets-peer"
[[ -x $bin ]] || "$here/build.sh" >&2
threads=$(taskset -c "$cpus" nproc)
ports=()
for ((p = port; p < port + nports; p++)); do ports+=("$p"); done
read -r -a flags <<<"${FASTWEBSOCKETS_FLAGS:-}"
exec taskset -c "$cpus" "$bin" --threads "$threads" "${flags[@]}" "${ports[@]}"
