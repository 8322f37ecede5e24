#!/usr/bin/env bash
# The Autobahn|Testsuite fuzzing client (RFC 6455 + RFC 7692 conformance) against percore.
#
#   tests/autobahn/run.sh            # every case (about 30 minutes: 12.x/13.x are slow)
#   tests/autobahn/run.sh --quick    # every case of 1.*-10.*, the first five sizes of each
#                                    # 12.x/13.x group (361 cases, under a minute; CI runs this)
#   CASES='["1.*","2.*","5.*"]' tests/autobahn/run.sh
#
# The suite (pip package autobahntestsuite) is Python 2.7 code; this script uses pyenv's 2.7
# (PYTHON2=... to point elsewhere) and installs the suite, with the dependency versions it was
# released against, under target/autobahn-python (about 10 s, once). It is not part of
# `cargo test`: Debian 12 has no Python 2.7. It starts a release percore on a free loopback
# port, runs the cases in parallel clients, prints a summary and exits non-zero if any case is
# neither OK nor INFORMATIONAL. Reports: target/autobahn/reports_*/index.html.
set -euo pipefail
cd "$(dirname "$0")/../.."

export PYENV_VERSION=2.7.18
PYTHON2=${PYTHON2:-$(pyenv which python2 2>/dev/null || command -v python2 || true)}
# Exit status 77 (the usual "skipped") tells CI that this machine cannot run the suite.
[ -n "$PYTHON2" ] || { echo "Autobahn skipped: needs Python 2.7 (pyenv install 2.7.18)"; exit 77; }
export PYTHONUSERBASE=$PWD/target/autobahn-python
WSTEST=$PYTHONUSERBASE/bin/wstest
if ! "$WSTEST" --help >/dev/null 2>&1; then
    "$PYTHON2" -m pip install --user -q --disable-pip-version-check --no-warn-script-location \
        autobahntestsuite==25.10.1 \
        "txaio==2.1.0" "Twisted==19.10.0" "incremental==16.10.1" "zope.interface==4.6.0" \
        "autobahn==0.10.9" "Jinja2==2.11.3" "MarkupSafe==1.1.1" "unittest2==1.1.0" \
        "klein==17.10.0" "Werkzeug==1.0.1" "pyOpenSSL==19.1.0" "service_identity==18.1.0"
fi

cargo build --release -q
out=target/autobahn
rm -rf "$out" && mkdir -p "$out"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
target/release/percore --bind 127.0.0.1 --ports "$port" --workers 1 --admin off \
    --root www --log-level warn 2>"$out/server.log" &
server=$!
clients=()
trap 'kill "${clients[@]}" "$server" 2>/dev/null || true' EXIT
sleep 0.5

if [ -n "${CASES:-}" ]; then
    parts=("$CASES")
elif [ "${1:-}" = --quick ]; then
    # Within each 12.x/13.x group the cases grow from 16 B to 128 KiB messages, and from the
    # sixth on they take seconds to minutes each in the Python client.
    deflate=$(for g in 12.1 12.2 12.3 12.4 12.5 13.1 13.2 13.3 13.4 13.5 13.6 13.7; do
        for n in 1 2 3 4 5; do printf '"%s.%s",' "$g" "$n"; done; done)
    parts=('["1.*","2.*","3.*","4.*","5.*","6.*","7.*","10.*"]' '["9.*"]' "[${deflate%,}]")
else
    parts=('["1.*","2.*","3.*","4.*","5.*","6.*","7.*","9.*","10.*"]' '["12.*"]' '["13.*"]')
fi
i=0
for cases in "${parts[@]}"; do
    i=$((i + 1))
    cat > "$out/spec_$i.json" <<JSON
{"outdir": "$out/reports_$i", "servers": [{"agent": "percore", "url": "ws://127.0.0.1:$port/ws"}],
 "cases": $cases, "exclude-cases": [], "exclude-agent-cases": {}}
JSON
    "$WSTEST" -m fuzzingclient -s "$out/spec_$i.json" >"$out/client_$i.log" 2>&1 &
    clients+=($!)
done
for pid in "${clients[@]}"; do wait "$pid"; done
python3 tests/autobahn/summary.py "$out"/reports_*/index.json
