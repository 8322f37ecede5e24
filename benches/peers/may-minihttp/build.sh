#!/usr/bin/env bash
# Build the may_minihttp peer (src/main.rs) into build/target (git-ignored): build.sh
#   cargo build --release --manifest-path benches/peers/may-minihttp/Cargo.toml \
#       --target-dir benches/peers/may-minihttp/build/target
# Its own [workspace], so it is no part of percore's build; the versions are in Cargo.lock.
# Cargo does nothing when the binary is up to date. Needs a Rust toolchain and crates.io
# (or a vendored registry); CARGO_BUILD_JOBS=1 keeps it to one compiler job.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="$here/build/target/release/may-minihttp-peer"
cargo build --release --quiet --locked --manifest-path "$here/Cargo.toml" --target-dir "$here/build/target"
[[ -x $bin ]] || { echo "may-minihttp/build.sh: $bin was not built" >&2; exit 1; }
echo "may-minihttp/build.sh: built $bin" >&2
