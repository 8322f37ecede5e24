//! SIGHUP under load: a new generation of workers takes over the listening sockets while the
//! old one finishes its connections, and not one request fails or is reset.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::{Options, Root, Server};

/// One response on `stream`: its status and whether the server closes after it. Any failure
/// (reset, end of stream before a whole response, a timeout) is an error, never a panic.
fn exchange(stream: &mut TcpStream, request: &[u8]) -> Result<(u16, bool), String> {
    stream
        .write_all(request)
        .map_err(|e| format!("write: {e}"))?;
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let status = head
                .get(9..12)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("no status line: {head:?}"))?;
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if data.len() >= end + 4 + length {
                let closes = head.lines().any(|l| l == "connection: close");
                return Ok((status, closes));
            }
        }
        match stream.read(&mut buf) {
            Ok(0) => return Err(format!("closed after {} bytes", data.len())),
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("read after {} bytes: {e}", data.len())),
        }
    }
}

/// A client that keeps sending until `stop`: keep-alive requests on one connection (a new one
/// whenever the server says `Connection: close`), or a new connection per request.
fn client(
    port: u16,
    keep_alive: bool,
    stop: &AtomicBool,
    ok: &AtomicU64,
    errors: &Mutex<Vec<String>>,
) {
    let request: &[u8] = match keep_alive {
        true => b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n",
        false => b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    };
    while !stop.load(Ordering::Relaxed) {
        let mut stream = match TcpStream::connect(("127.0.0.1", port)) {
            Ok(stream) => stream,
            Err(e) => {
                errors.lock().unwrap().push(format!("connect: {e}"));
                continue;
            }
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        loop {
            match exchange(&mut stream, request) {
                Ok((200, closes)) => {
                    ok.fetch_add(1, Ordering::Relaxed);
                    if closes || stop.load(Ordering::Relaxed) {
                        break;
                    }
                }
                Ok((status, _)) => {
                    errors.lock().unwrap().push(format!("status {status}"));
                    break;
                }
                Err(e) => {
                    errors.lock().unwrap().push(e);
                    break;
                }
            }
        }
    }
}

#[test]
fn twenty_reloads_under_load_lose_no_request() {
    let root = Root::new();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("percore.toml");
    let settings = |i: usize| {
        // Every reload changes something that needs new workers; every other one the count.
        format!(
            "workers = {}\nkeepalive_timeout = '{}s'\n",
            1 + i % 2,
            60 + i
        )
    };
    std::fs::write(&file, settings(0)).unwrap();
    let file_arg = file.to_str().unwrap().to_owned();
    let server = Server::start_with(
        &root,
        Options {
            workers: 1,
            extra: &["--config", &file_arg, "--workers", "auto"],
            ..Options::default()
        },
    );
    let port = server.port();
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..6)
        .map(|i| {
            let (stop, ok, errors) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&errors));
            std::thread::spawn(move || client(port, i % 2 == 0, &stop, &ok, &errors))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    for i in 1..=20 {
        std::fs::write(&file, settings(i)).unwrap();
        server.signal("HUP");
        server.wait_for_log(
            &format!("SIGHUP: generation {i} serving"),
            Duration::from_secs(10),
        );
        std::thread::sleep(Duration::from_millis(150));
    }
    let reloading = started.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    let errors = errors.lock().unwrap();
    let ok = ok.load(Ordering::Relaxed);
    assert!(
        errors.is_empty(),
        "{} of {} requests failed during 20 reloads: {:?}\n{}",
        errors.len(),
        ok + errors.len() as u64,
        &errors[..errors.len().min(10)],
        server.log()
    );
    assert!(ok > 500, "only {ok} requests in {reloading:?}");
    // The old generations finished their connections and their workers are gone.
    server.wait_for_log("generation 19 finished", Duration::from_secs(15));
}

/// A reload that adds a port listens there before the old generation goes; one that drops a
/// port closes it.
#[test]
fn a_reload_adds_and_drops_ports() {
    let root = Root::new();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("percore.toml");
    let server = Server::start_with(
        &root,
        Options {
            ports_file: Some(&file),
            ..Options::default()
        },
    );
    let (a, b) = (server.port(), crate::harness::free_port());
    let get = |port: u16| crate::harness::get(port, "/hello.txt", "").status;
    assert_eq!(get(a), 200);
    std::fs::write(&file, format!("ports = '{a},{b}'\n")).unwrap();
    server.signal("HUP");
    server.wait_for_log("SIGHUP: generation 1 serving", Duration::from_secs(10));
    assert_eq!((get(a), get(b)), (200, 200));
    std::fs::write(&file, format!("ports = '{b}'\n")).unwrap();
    server.signal("HUP");
    server.wait_for_log("SIGHUP: generation 2 serving", Duration::from_secs(10));
    assert_eq!(get(b), 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(("127.0.0.1", a)).is_ok() {
        assert!(
            Instant::now() < deadline,
            "port {a} still listens after it was dropped"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A WebSocket stays on the generation that accepted it until the drain timeout, then gets
/// close 1001 ("going away").
#[test]
fn a_websocket_stays_until_the_drain_timeout_then_gets_1001() {
    let root = Root::new();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("percore.toml");
    std::fs::write(&file, "keepalive_timeout = '60s'\n").unwrap();
    let server = Server::start_with(
        &root,
        Options {
            extra: &["--config", file.to_str().unwrap(), "--drain-timeout", "1s"],
            ..Options::default()
        },
    );
    let mut ws = crate::websocket::open(&server, "/");
    ws.get_mut()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    std::fs::write(&file, "keepalive_timeout = '61s'\n").unwrap();
    server.signal("HUP");
    server.wait_for_log("SIGHUP: generation 1 serving", Duration::from_secs(10));
    let reloaded = Instant::now();
    ws.send(tungstenite::Message::text("still here")).unwrap();
    assert_eq!(ws.read().unwrap(), tungstenite::Message::text("still here"));
    match ws.read() {
        Ok(tungstenite::Message::Close(Some(frame))) => {
            assert_eq!(u16::from(frame.code), 1001);
        }
        other => panic!("expected close 1001, got {other:?}"),
    }
    let waited = reloaded.elapsed();
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
}
