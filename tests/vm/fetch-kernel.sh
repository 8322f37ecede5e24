#!/usr/bin/env bash
# Fetches the kernel of the kernel-TLS tests' VM (tests/it/harness/vm.rs): Debian 12's current
# cloud kernel, whose tls.ko module gives the kernel TLS ULP that a host kernel may lack.
#
#   tests/vm/fetch-kernel.sh [DIR]     # DIR defaults to target/vm-kernel under the repo root
#
# Resolves the version from the linux-image-cloud-amd64 metapackage (so it follows Debian's
# updates), downloads that package with `apt-get download` into a temporary directory and
# extracts into DIR only `vmlinuz` and, under `lib/modules/VERSION/`, the modules of kernel TLS
# and of the ciphers it uses (net/tls, crypto, arch/x86/crypto, lib/crypto, with the
# modules.order and modules.builtin lists that depmod reads), plus `version`, for the record.
# Does nothing when they are there already. Needs Debian 12's package lists (`apt-get update`).
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
dir="${1:-$root/target/vm-kernel}"

if [ -s "$dir/vmlinuz" ] && [ -s "$dir/version" ] &&
    [ -s "$dir/lib/modules/$(cat "$dir/version")/kernel/net/tls/tls.ko" ]; then
    exit 0
fi

# The kernel package the metapackage depends on, e.g. linux-image-6.1.0-57-cloud-amd64;
# nothing when apt does not know the metapackage.
resolve() {
    { apt-cache depends linux-image-cloud-amd64 2>/dev/null || true; } |
        sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-cloud-amd64\)$/\1/p' | sed -n 1p
}
pkg="$(resolve)"
if [ -z "$pkg" ]; then
    # No package lists yet (a fresh machine): fetch them once and ask again.
    apt-get update -qq
    pkg="$(resolve)"
fi
if [ -z "$pkg" ]; then
    echo "fetch-kernel.sh: apt-cache knows no linux-image-cloud-amd64 (not Debian 12?)" >&2
    exit 1
fi
version="${pkg#linux-image-}"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# apt downloads as its _apt user where that user may write; otherwise it warns and downloads as
# root, which is harmless too.
chown _apt "$tmp" 2>/dev/null || true
(cd "$tmp" && apt-get download -qq "$pkg") || {
    # Lists older than the mirror name a package it no longer has: refresh them and retry.
    apt-get update -qq
    pkg="$(resolve)"
    version="${pkg#linux-image-}"
    (cd "$tmp" && apt-get download -qq "$pkg")
}
deb="$(ls "$tmp"/"$pkg"_*.deb)"

mkdir -p "$dir" "$tmp/x"
mods="./lib/modules/$version"
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp/x" "./boot/vmlinuz-$version" \
    "$mods/kernel/net/tls" "$mods/kernel/crypto" "$mods/kernel/arch/x86/crypto" \
    "$mods/kernel/lib/crypto" "$mods/modules.order" "$mods/modules.builtin" \
    "$mods/modules.builtin.modinfo"
[ -s "$tmp/x/boot/vmlinuz-$version" ] && [ -s "$tmp/x/$mods/kernel/net/tls/tls.ko" ] || {
    echo "fetch-kernel.sh: $deb lacks boot/vmlinuz-$version or net/tls/tls.ko" >&2
    exit 1
}
# Moved in last (the version file at the very end), so an interrupted run never leaves a half
# kernel that counts as present.
rm -rf "$dir/lib" "$dir/tls.ko"
mkdir -p "$dir/lib/modules"
mv "$tmp/x/$mods" "$dir/lib/modules/$version"
mv "$tmp/x/boot/vmlinuz-$version" "$dir/vmlinuz"
echo "$version" >"$dir/version"
echo "fetch-kernel.sh: $version's vmlinuz and TLS and crypto modules in $dir"
