#!/usr/bin/env bash
# Build the fastwebsockets peer (src/main.rs) into build/target (git-ignored): build.sh
#   cargo build --release --locked --manifest-path benches/peers/fastwebsockets/Cargo.toml \
#       --target-dir benches/peers/fastwebsockets/build/target
# Its own [workspace], so it is no part of percore's build; the versions are in Cargo.lock.
# Cargo does nothing when the binary is up to date. Needs a Rust toolchain and crates.io
# (or a vendored registry); CARGO_BUILD_JOBS=1 keeps it to one compiler job.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="$here/build/target/release/fastwebsockets-peer"
cargo build --release --quiet --locked --manifest-path "$here/Cargo.toml" --target-dir "$here/build/target"
[[ -x $bin ]] || { echo "fastwebsockets/build.sh: $bin was not built" >&2; exit 1; }
echo "fastwebsockets/build.sh: built $bin" >&2
