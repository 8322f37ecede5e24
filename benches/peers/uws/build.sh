#!/usr/bin/env bash
# Build the uWebSockets echo peer (echo.cpp) into build/uws-echo (git-ignored): build.sh
# Idempotent: does nothing when build/uws-echo exists and build/.built records the pinned
# commits, the current echo.cpp and the flags below. Otherwise clones UWS_GIT into
# build/uWebSockets and USOCKETS_GIT into build/uWebSockets/uSockets (the submodule's place;
# each once), checks out the pinned commits (uSockets at the commit uWebSockets pins as its
# submodule) and builds with the flags of uWebSockets' own example build (build.c, Makefile):
#   uSockets: gcc -O3 -flto -DLIBUS_NO_SSL -std=c11 (plain epoll event loop, no TLS)
#   echo:     g++ -std=c++20 -O3 -march=native -flto -DLIBUS_NO_SSL ... -lz (zlib for the
#             permessage-deflate code that uWS always compiles in; compression is DISABLED in
#             echo.cpp)
# Needs git, gcc, g++ and zlib (apt-get install -y g++ zlib1g-dev).
# Without network access point UWS_GIT / USOCKETS_GIT at local clones or mirrors.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
UWS_GIT=${UWS_GIT:-https://github.com/uNetworking/uWebSockets.git}
UWS_COMMIT=${UWS_COMMIT:-66dcff3dd48f0c19dd1703426365d062039321d0}             # master of 2026-08-18 (v20.79.0-17)
USOCKETS_GIT=${USOCKETS_GIT:-https://github.com/uNetworking/uSockets.git}
USOCKETS_COMMIT=${USOCKETS_COMMIT:-86097c490263ab662d62e8e7b541390bdec7d149}   # uWebSockets' submodule pin (v0.8.8-17)
CC=${CC:-gcc}; CXX=${CXX:-g++}
CFLAGS_US=(-O3 -flto -DLIBUS_NO_SSL -std=c11)
CXXFLAGS_ECHO=(-std=c++20 -O3 -march=native -flto -DLIBUS_NO_SSL)
b="$here/build"; bin="$b/uws-echo"
uws="$b/uWebSockets"; us="$uws/uSockets"
at() { [[ -d $1/.git && $(git -C "$1" rev-parse HEAD 2>/dev/null) == "$2" ]]; }
stamp="$b/.built"
want="$UWS_COMMIT $USOCKETS_COMMIT $(sha256sum <"$here/echo.cpp" | cut -d' ' -f1) $CC ${CFLAGS_US[*]} $CXX ${CXXFLAGS_ECHO[*]}"
if [[ -x $bin && -f $stamp && $(<"$stamp") == "$want" ]] && at "$uws" "$UWS_COMMIT" && at "$us" "$USOCKETS_COMMIT"; then
    exit 0
fi
for tool in git "$CC" "$CXX"; do
    command -v "$tool" >/dev/null || { echo "uws/build.sh: $tool not found (apt-get install -y g++ zlib1g-dev)" >&2; exit 1; }
done
[[ -f /usr/include/zlib.h ]] || { echo "uws/build.sh: zlib.h not found (apt-get install -y zlib1g-dev)" >&2; exit 1; }
checkout() {  # dir url commit
    if [[ ! -d $1/.git ]]; then rm -rf "$1"; mkdir -p "$(dirname "$1")"; git clone --quiet "$2" "$1"; fi
    if ! at "$1" "$3"; then
        git -C "$1" cat-file -e "$3^{commit}" 2>/dev/null || git -C "$1" fetch --quiet "$2"
        git -C "$1" -c advice.detachedHead=false checkout --quiet "$3"
    fi
}
checkout "$uws" "$UWS_GIT" "$UWS_COMMIT"
checkout "$us" "$USOCKETS_GIT" "$USOCKETS_COMMIT"
echo "uws/build.sh: building uWebSockets $(git -C "$uws" describe --tags --always) + uSockets $(git -C "$us" describe --tags --always)" >&2
rm -rf "$b/obj" "$stamp"; mkdir -p "$b/obj"
(cd "$b/obj" && "$CC" "${CFLAGS_US[@]}" -I"$us/src" -c "$us"/src/*.c "$us"/src/eventing/*.c "$us"/src/crypto/*.c) \
    >"$b/build.log" 2>&1 || { tail -30 "$b/build.log" >&2; exit 1; }
"$CXX" "${CXXFLAGS_ECHO[@]}" -I"$uws/src" -I"$us/src" "$here/echo.cpp" "$b"/obj/*.o -lz -o "$bin.tmp" \
    >>"$b/build.log" 2>&1 || { tail -30 "$b/build.log" >&2; exit 1; }
mv "$bin.tmp" "$bin"
echo "$want" >"$stamp"
echo "uws/build.sh: built $bin" >&2
