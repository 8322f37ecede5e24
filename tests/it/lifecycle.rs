//! Workers, metrics and shutdown: what operators see.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use crate::harness::{connect, read_response, Options, Root, Server};

/// A deterministic 10 MiB body that is not all one byte, so a misplaced chunk is caught.
fn big_body() -> Vec<u8> {
    (0..10 * 1024 * 1024u32)
        .map(|i| (i % 251) as u8 ^ (i >> 16) as u8)
        .collect()
}

fn metric(text: &str, name: &str, worker: usize) -> u64 {
    let prefix = format!("{name}{{worker=\"{worker}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn two_workers_both_accept_and_report_per_worker_counters() {
    let root = Root::new();
    let server = Server::start_with(
        &root,
        Options {
            workers: 2,
            admin: true,
            ..Options::default()
        },
    );
    // SO_REUSEPORT hashes each new connection's 4-tuple; 200 connections reach both workers.
    for _ in 0..200 {
        let mut s = connect(server.port());
        s.write_all(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        assert_eq!(read_response(&mut s, false).status, 200);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = server.metrics();
        let w0 = metric(&text, "percore_connections_accepted_total", 0);
        let w1 = metric(&text, "percore_connections_accepted_total", 1);
        if w0 + w1 == 200 {
            assert!(
                w0 > 0 && w1 > 0,
                "one worker took every connection: {w0} / {w1}"
            );
            assert!(
                text.contains("percore_requests_total{worker=\"0\",code=\"200\",class=\"2xx\"}")
            );
            assert!(text.contains("percore_request_duration_seconds_bucket"));
            return;
        }
        assert!(
            Instant::now() < deadline,
            "counters never reached 200:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_10_mib_file_arrives_byte_exact() {
    let root = Root::new();
    let body = big_body();
    root.write("big.bin", &body);
    let server = Server::start(&root);
    let mut s = connect(server.port());
    s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let resp = read_response(&mut s, false);
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("Content-Type"),
        Some("application/octet-stream")
    );
    assert!(resp.body == body, "10 MiB body differs");
    // Keep-alive continues after a sendfile body.
    s.write_all(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut s, false).body, b"hello, world\n");
}

#[test]
fn sigterm_lets_a_slow_download_finish_then_exits_0() {
    let root = Root::new();
    let body = big_body();
    root.write("big.bin", &body);
    let mut server = Server::start_with_flags(&root, &["--drain-timeout", "20s"]);
    let mut s = connect(server.port());
    s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut first = vec![0u8; 64 * 1024];
    s.read_exact(&mut first).unwrap();
    // An idle keep-alive connection is closed at once by the drain.
    let mut idle = connect(server.port());
    idle.write_all(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut idle, false).status, 200);

    server.terminate();
    std::thread::sleep(Duration::from_millis(300));
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    let mut all = first;
    all.extend_from_slice(&rest);
    let head_end = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(
        all[head_end..] == body[..],
        "download cut short by shutdown: {} of {} bytes",
        all.len() - head_end,
        body.len()
    );

    let mut buf = [0u8; 1];
    assert_eq!(
        idle.read(&mut buf).unwrap_or(0),
        0,
        "idle connection left open"
    );
    let status = server
        .wait_exit(Duration::from_secs(20))
        .expect("percore did not exit");
    assert_eq!(status.code(), Some(0), "log:\n{}", server.log());
    assert!(server.log().contains("SIGTERM"));
    // Nobody listens any more.
    assert!(std::net::TcpStream::connect(("127.0.0.1", server.port())).is_err());
}

/// The first SIGTERM drains (here it would wait 60 s for a stalled download); a second SIGINT
/// or SIGTERM during the drain exits at once, with status 0.
#[test]
fn a_second_signal_during_the_drain_exits_at_once() {
    for (first, second) in [("TERM", "INT"), ("INT", "TERM")] {
        let root = Root::new();
        root.write("big.bin", &big_body());
        let mut server = Server::start_with_flags(&root, &["--drain-timeout", "60s"]);
        let mut s = connect(server.port());
        s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut first_bytes = vec![0u8; 1024];
        s.read_exact(&mut first_bytes).unwrap();
        // The client reads no more: the download stalls and keeps the drain going.
        server.signal(first);
        server.wait_for_log("draining for up to", Duration::from_secs(10));
        assert!(
            server.wait_exit(Duration::from_millis(500)).is_none(),
            "exited before the second signal; log:\n{}",
            server.log()
        );
        server.signal(second);
        // Far below the 60 s the drain would take: the bound is the check (a second one timed
        // around it would only measure how busy the machine is).
        let status = server
            .wait_exit(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("still draining after SIG{second}; log:\n{}", server.log()));
        assert_eq!(status.code(), Some(0), "log:\n{}", server.log());
        assert!(
            server
                .log()
                .contains(&format!("SIG{second} again: exiting now")),
            "{}",
            server.log()
        );
    }
}

/// SO_REUSEPORT would let a second percore join the first's listeners and take half of its
/// connections; it must refuse to start instead, naming the port and the first process.
#[test]
fn a_second_server_on_the_same_port_refuses_to_start() {
    let root = Root::new();
    let first = Server::start(&root);
    let port = first.port().to_string();
    for bind in ["127.0.0.1", "0.0.0.0"] {
        let child = std::process::Command::new(crate::harness::bin())
            .args(["--bind", bind, "--admin", "off", "--workers", "1"])
            .args(["--ports", &port, "--root"])
            .arg(root.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // A second server that wrongly starts keeps running: give it a moment, then kill it.
        let mut child = KillOnDrop(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.0.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.0.kill();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        let _ = child.0.stderr.take().unwrap().read_to_string(&mut err);
        assert_eq!(status.and_then(|s| s.code()), Some(1), "{err}");
        let expected = format!(
            "cannot listen on {bind}:{port}: port {port} is already listened on at \
             127.0.0.1:{port} by process percore (pid {})",
            first.pid()
        );
        assert!(err.contains(&expected), "{err}");
        assert!(!err.contains("ready: serving"), "{err}");
    }
    let mut s = connect(first.port());
    s.write_all(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut s, false).body, b"hello, world\n");
}

/// /healthz answers while the process runs; /readyz only while it serves, 503 once a drain
/// has begun.
#[test]
fn readyz_turns_503_when_the_drain_begins_while_healthz_stays_200() {
    let root = Root::new();
    root.write("big.bin", &big_body());
    let mut server = Server::start_with(
        &root,
        Options {
            admin: true,
            extra: &["--drain-timeout", "60s"],
            ..Options::default()
        },
    );
    assert_eq!(server.admin_get("/healthz"), (200, "ok\n".to_owned()));
    assert_eq!(server.admin_get("/readyz"), (200, "ready\n".to_owned()));
    // A stalled download keeps the drain going while the probes are asked.
    let mut s = connect(server.port());
    s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut first_bytes = vec![0u8; 1024];
    s.read_exact(&mut first_bytes).unwrap();
    server.terminate();
    server.wait_for_log("draining for up to", Duration::from_secs(10));
    assert_eq!(
        server.admin_get("/readyz"),
        (503, "not ready: draining\n".to_owned())
    );
    assert_eq!(server.admin_get("/healthz"), (200, "ok\n".to_owned()));
    server.terminate();
    let status = server.wait_exit(Duration::from_secs(5));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", server.log());
}

/// SIGHUP re-reads the config file and never stops the server: an invalid file is logged and
/// changes nothing, an unchanged one is said to be so, a new log_level applies at once, and
/// other changes are logged as needing a restart.
#[test]
fn sighup_rereads_the_config_and_keeps_serving() {
    let root = Root::new();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("percore.toml");
    std::fs::write(&file, "log_level = 'info'\nkeepalive_timeout = '60s'\n").unwrap();
    let file_arg = file.to_str().unwrap().to_owned();
    let mut server = Server::start_with_flags(&root, &["--config", &file_arg]);
    let get_hello = |server: &Server| {
        let mut s = connect(server.port());
        s.write_all(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        assert_eq!(read_response(&mut s, false).body, b"hello, world\n");
    };
    let steps = [
        (
            "workers = 0\n",
            "SIGHUP: configuration not reloaded, still running as before: config file",
        ),
        (
            "log_level = 'info'\nkeepalive_timeout = '60s'\n",
            "SIGHUP: configuration reloaded; nothing changed",
        ),
        (
            "log_level = 'info'\nkeepalive_timeout = '5s'\nindex = 'home.html'\n",
            "SIGHUP: generation 1 serving",
        ),
        (
            "log_level = 'warn'\nkeepalive_timeout = '5s'\nindex = 'home.html'\n",
            "SIGHUP: log_level is now warn",
        ),
    ];
    for (text, expected) in steps {
        std::fs::write(&file, text).unwrap();
        server.signal("HUP");
        server.wait_for_log(expected, Duration::from_secs(10));
        assert!(
            server.wait_exit(Duration::from_millis(200)).is_none(),
            "SIGHUP stopped the server; log:\n{}",
            server.log()
        );
        get_hello(&server);
    }
    assert!(
        server
            .log()
            .contains("(keepalive_timeout, index changed); the previous generation finishes"),
        "{}",
        server.log()
    );
    // The new generation serves the new index: the root has index.html, not home.html.
    let mut s = connect(server.port());
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s, false).status, 403);
    server.terminate();
    let status = server.wait_exit(Duration::from_secs(15));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", server.log());
    // The new level applies: the info line of the drain is no longer logged.
    assert!(!server.log().contains("draining"), "{}", server.log());
}

#[test]
fn a_port_in_use_fails_start_up_naming_the_port() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let root = Root::new();
    let out = std::process::Command::new(crate::harness::bin())
        .args(["--bind", "127.0.0.1", "--admin", "off", "--ports"])
        .arg(port.to_string())
        .arg("--root")
        .arg(root.path())
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&port.to_string()) && !err.contains("ready: serving"),
        "{err}"
    );
}

#[test]
fn binds_ipv6_loopback_when_asked() {
    let root = Root::new();
    let port = crate::harness::free_port();
    let child = std::process::Command::new(crate::harness::bin())
        .args([
            "--bind",
            "[::1]",
            "--admin",
            "off",
            "--workers",
            "1",
            "--ports",
        ])
        .arg(port.to_string())
        .arg("--root")
        .arg(root.path())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _child = KillOnDrop(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stream = loop {
        match std::net::TcpStream::connect(("::1", port)) {
            Ok(stream) => break stream,
            Err(e) => {
                assert!(Instant::now() < deadline, "no IPv6 listener: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /hello.txt HTTP/1.1\r\nHost: [::1]\r\nConnection: close\r\n\r\n")
        .unwrap();
    let resp = read_response(&mut stream, false);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"hello, world\n");
}

/// `--bind 127.0.0.1,::1`: one server, each worker listening on both addresses on every port.
#[test]
fn one_server_answers_on_every_bind_address() {
    let root = Root::new();
    let server = Server::start_with(
        &root,
        Options {
            ports: 2,
            workers: 2,
            extra: &["--bind", "127.0.0.1,::1"],
            ..Options::default()
        },
    );
    assert!(
        server.log().contains("127.0.0.1,[::1] port(s)"),
        "{}",
        server.log()
    );
    for &port in &server.ports {
        for ip in ["127.0.0.1", "::1"] {
            let mut stream = std::net::TcpStream::connect((ip, port))
                .unwrap_or_else(|e| panic!("{ip} port {port}: {e}"));
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            stream
                .write_all(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            let resp = read_response(&mut stream, false);
            assert_eq!((resp.status, &resp.body[..]), (200, &b"hello, world\n"[..]));
        }
    }
}

/// Kills a server started by hand when the test ends, passed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
