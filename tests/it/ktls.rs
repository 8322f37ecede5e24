//! Kernel TLS (`--ktls true`). This host's kernel may have no TLS, so the hand-over is tested
//! in a VM: Debian 12's cloud kernel with its TLS and cipher modules, booted under QEMU by
//! `harness::vm`, with the real percore binary, curl and openssl inside, talking over the
//! guest's loopback. On this host, the same flag must leave a kernel without TLS to rustls.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::tls::{tls_port, TlsFiles};
use crate::harness::vm::{host_program, Guest};
use std::io::Write;

use crate::harness::{bin, patterned, read_response, Options, Root, Server};

/// The boot takes about 2.5 s here and the script 10–20 more under emulation; the rest is
/// slack for a busy machine (TCG runs the guest on the host's CPUs, beside the other tests).
const VM_TIMEOUT: Duration = Duration::from_secs(180);

/// In the VM, every TLS 1.3 session goes to the kernel after its handshake, with each of the
/// three ciphers, and the kernel then carries everything a connection does: a small file and
/// a large one (sendfile) on one keep-alive connection, a range, a slow reader of 6 MiB (the
/// socket fills and sendfile resumes on the next edge), a WebSocket echo (`wss://`), and
/// close_notify both ways (curl reports the server's, and the server closes on the client's),
/// resumption by a ticket sent before the hand-over, and the keep-alive timeout's close.
/// TLS 1.2 stays with rustls. The counters and the start log say so.
#[test]
fn in_a_kernel_with_tls_sessions_go_to_the_kernel_and_everything_still_works() {
    let tls = TlsFiles::new();
    let read = |path: &Path| std::fs::read(path).unwrap_or_else(|e| panic!("{e}"));
    let big = patterned(300 * 1024 + 7);
    let huge = patterned(6 * 1024 * 1024 + 3);
    let guest = Guest::new()
        .binary(Path::new(bin()))
        .binary(&host_program("curl", "curl"))
        .binary(&host_program("openssl", "openssl"))
        .file("/etc/percore/ca.pem", &read(&tls.ca))
        .file("/etc/percore/fullchain.pem", &read(&tls.cert))
        .file("/etc/percore/privkey.pem", &read(&tls.key))
        .file("/srv/www/small.txt", b"small over kTLS\n")
        .file("/srv/www/big.bin", &big)
        .file("/srv/www/huge.bin", &huge);
    let script = format!(
        r#"set -e
cd /etc/percore
{percore} --ports 8080,8443 --tls-ports 8443 --tls-cert fullchain.pem --tls-key privkey.pem \
    --ktls true --bind 127.0.0.1 --workers 1 --root /srv/www --admin 127.0.0.1:7391 \
    --keepalive-timeout 2s \
    2>/tmp/percore.log &
pid=$!
tries=0
until grep -q 'ready:' /tmp/percore.log; do
    tries=$((tries + 1))
    if ! kill -0 $pid 2>/dev/null || [ $tries -ge 600 ]; then
        echo "percore did not start; its log:"; cat /tmp/percore.log; exit 1
    fi
    sleep 0.05
done
get() {{ curl -sS --max-time 60 --cacert ca.pem "$@"; }}
url=https://localhost:8443
# Keep-alive: the second and third requests go over the kernel's TLS.
get -o /tmp/small -o /tmp/big1 -o /tmp/big2 $url/small.txt $url/big.bin $url/big.bin
cmp /tmp/small /srv/www/small.txt && cmp /tmp/big1 /srv/www/big.bin \
    && cmp /tmp/big2 /srv/www/big.bin && echo "keep-alive identical"
for cipher in TLS_AES_128_GCM_SHA256 TLS_AES_256_GCM_SHA384 TLS_CHACHA20_POLY1305_SHA256; do
    get --tls13-ciphers $cipher -o /tmp/a -o /tmp/b $url/small.txt $url/big.bin
    cmp /tmp/a /srv/www/small.txt && cmp /tmp/b /srv/www/big.bin && echo "$cipher identical"
done
get -o /tmp/s -o /tmp/range -r 1000-70999 $url/small.txt $url/big.bin
dd if=/srv/www/big.bin of=/tmp/want bs=1000 skip=1 count=70 2>/dev/null
cmp /tmp/range /tmp/want && echo "range identical"
get --limit-rate 3M -o /tmp/s -o /tmp/huge $url/small.txt $url/huge.bin
cmp /tmp/huge /srv/www/huge.bin && echo "slow reader identical"
get --tlsv1.2 --tls-max 1.2 -o /tmp/s -o /tmp/b12 $url/small.txt $url/big.bin
cmp /tmp/b12 /srv/www/big.bin && echo "tls1.2 identical"
get -v -H 'Connection: close' -o /tmp/c $url/small.txt 2>/tmp/close.txt
grep -q 'close notify' /tmp/close.txt && echo "close_notify received"
# A ticket from one connection resumes the next; each stays idle until the keep-alive timeout,
# so the kernel has it, and the server's close after the timeout is the kernel's too.
sclient() {{
    printf 'GET /small.txt HTTP/1.1\r\nHost: localhost\r\n\r\n' |
        timeout 30 openssl s_client -ign_eof -CAfile ca.pem -servername localhost \
            -connect 127.0.0.1:8443 "$@" 2>&1 || true
}}
sclient -sess_out /tmp/session >/tmp/s1.out
grep -q 'New, TLSv1.3' /tmp/s1.out && grep -q 'small over kTLS' /tmp/s1.out && echo "session new"
sclient -sess_in /tmp/session >/tmp/s2.out
grep -q 'Reused, TLSv1.3' /tmp/s2.out && grep -q 'small over kTLS' /tmp/s2.out \
    && echo "session resumed"
# WebSocket over TLS: the upgrade, RFC 6455's masked "Hello", then a close frame (1000).
{{
    printf 'GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n'
    printf 'Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n'
    printf 'Sec-WebSocket-Version: 13\r\n\r\n'
    sleep 1
    printf '\201\205\067\372\041\075\177\237\115\121\130'
    sleep 1
    printf '\210\202\000\000\000\000\003\350'
    sleep 1
}} | timeout 30 openssl s_client -quiet -connect 127.0.0.1:8443 -servername localhost \
    -CAfile ca.pem >/tmp/ws.out 2>/tmp/ws.err || true
grep -q '101 Switching Protocols' /tmp/ws.out && echo "wss upgraded"
grep -q 'Hello' /tmp/ws.out && echo "wss echoed"
sleep 1.2
curl -s http://127.0.0.1:7391/metrics | grep -E 'percore_tls_(kernel|handshakes)' | grep -v '^#'
grep -- '--ktls' /tmp/percore.log || true
kill -TERM $pid
status=0
wait $pid || status=$?
echo "percore exited $status"
"#,
        percore = bin()
    );
    let started = Instant::now();
    let out = Guest::run(guest, &script, VM_TIMEOUT);
    eprintln!("VM run took {:.1?}\n{out}", started.elapsed());
    for line in [
        "keep-alive identical",
        "TLS_AES_128_GCM_SHA256 identical",
        "TLS_AES_256_GCM_SHA384 identical",
        "TLS_CHACHA20_POLY1305_SHA256 identical",
        "range identical",
        "slow reader identical",
        "tls1.2 identical",
        "close_notify received",
        "session new",
        "session resumed",
        "wss upgraded",
        "wss echoed",
        "the kernel encrypts TLS 1.3 with AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305",
        "percore exited 0",
    ] {
        assert!(out.contains(line), "expected {line:?} in:\n{out}");
    }
    // Connections over TLS 1.3: one keep-alive, three ciphers, the range, the slow reader, the
    // close, two by s_client (the second resumed), the WebSocket. Each that went idle went to
    // the kernel; the one that asked for a close may have had its answer before it ever went
    // idle (its request can arrive with the client's Finished). None was declined or lost.
    let counter = |name: &str| -> u64 {
        out.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{out}"))
    };
    let tls13 = counter(r#"percore_tls_handshakes_total{worker="0",version="1.3",kind="full"}"#);
    let offloaded = counter(r#"percore_tls_kernel_offloads_total{worker="0",result="offloaded"}"#);
    let resumed =
        counter(r#"percore_tls_handshakes_total{worker="0",version="1.3",kind="resumed"}"#);
    assert_eq!((tls13, resumed), (9, 1), "{out}");
    assert!(
        offloaded == tls13 + resumed || offloaded + 1 == tls13 + resumed,
        "{out}"
    );
    assert_eq!(
        counter(r#"percore_tls_kernel_offloads_total{worker="0",result="failed"}"#),
        0
    );
    assert_eq!(
        counter(r#"percore_tls_kernel_offloads_total{worker="0",result="declined"}"#),
        0
    );
    assert_eq!(
        counter(r#"percore_tls_handshakes_total{worker="0",version="1.2",kind="full"}"#),
        1
    );
}

/// On this host, whatever its kernel: `--ktls true` serves HTTPS as without it, keep-alive
/// included. Where the kernel has no TLS, the start log says so and no session is offered;
/// where it has, both sessions go to it.
#[test]
fn with_ktls_on_this_host_https_works_whether_or_not_the_kernel_has_tls() {
    let root = Root::new();
    let big = patterned(300 * 1024 + 7);
    root.write("big.bin", &big);
    let tls = TlsFiles::new();
    let mut flags = tls.flags();
    flags.extend(["--ktls".to_owned(), "true".to_owned()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = Server::start_with(
        &root,
        Options {
            ports: 2,
            tls_ports: 1,
            admin: true,
            extra: &flags,
            ..Options::default()
        },
    );
    for _ in 0..2 {
        let mut stream = tls.connect(tls_port(&server));
        for path in ["/hello.txt", "/big.bin"] {
            let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
            stream
                .write_all(request.as_bytes())
                .unwrap_or_else(|e| panic!("{e}"));
            let resp = read_response(&mut stream, false);
            let expected = match path {
                "/big.bin" => &big[..],
                _ => &b"hello, world\n"[..],
            };
            assert_eq!(resp.status, 200);
            assert!(resp.body == expected, "{path} differs");
        }
    }
    let handshakes = r#"percore_tls_handshakes_total{worker="0",version="1.3",kind="full"} 2"#;
    server.wait_for_metrics(&[handshakes.to_owned()], Duration::from_secs(10));
    let log = server.log();
    let offloaded = match log.contains("--ktls: the kernel has no TLS") {
        true => 0,
        false => {
            assert!(
                log.contains("--ktls: the kernel encrypts TLS 1.3 with"),
                "no --ktls line in the log:\n{log}"
            );
            2
        }
    };
    let line = format!(
        r#"percore_tls_kernel_offloads_total{{worker="0",result="offloaded"}} {offloaded}"#
    );
    server.wait_for_metrics(&[line], Duration::from_secs(10));
}
