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

/// Six clients at once, half keep-alive, half a new connection per request, until `finish`.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    errors: Arc<Mutex<Vec<String>>>,
    clients: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(port: u16) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let clients = (0..6)
            .map(|i| {
                let (stop, ok, errors) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&errors));
                std::thread::spawn(move || client(port, i % 2 == 0, &stop, &ok, &errors))
            })
            .collect();
        Load {
            stop,
            ok,
            errors,
            clients,
        }
    }

    /// Requests answered so far.
    fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Stops the clients: the requests answered, and every failure.
    fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for client in self.clients {
            client.join().unwrap();
        }
        let errors = std::mem::take(&mut *self.errors.lock().unwrap());
        (self.ok.load(Ordering::Relaxed), errors)
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
    let load = Load::start(port);
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
    let (ok, errors) = load.finish();
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

/// Kills a process by PID when dropped: the new process a binary upgrade starts is no child
/// of the test.
struct KillPid(u32);

impl Drop for KillPid {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &self.0.to_string()])
            .status();
    }
}

/// SIGUSR2 under load: the binary starts again with the listening sockets (and the admin
/// endpoint's), says when it serves, and the old process finishes its connections and exits 0;
/// not one request fails or is reset, and the new process answers on the same ports.
#[test]
fn a_binary_upgrade_under_load_loses_no_request() {
    let root = Root::new();
    let server = Server::start_with(
        &root,
        Options {
            workers: 2,
            admin: true,
            ..Options::default()
        },
    );
    let port = server.port();
    let load = Load::start(port);
    std::thread::sleep(Duration::from_millis(300));
    let before = load.ok();
    server.signal("USR2");
    let said = "binary upgrade: PID ";
    server.wait_for_log("the previous process finishes", Duration::from_secs(10));
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains(said) && l.contains("the previous process finishes"))
        .expect("the new process's line");
    let pid: u32 = line[line.find(said).unwrap() + said.len()..]
        .split(' ')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("its PID");
    let _new = KillPid(pid);
    assert_ne!(pid, server.pid());
    server.wait_for_log("bye (exit status 0)", Duration::from_secs(15));
    // The new process serves on alone, its admin endpoint on the same address.
    std::thread::sleep(Duration::from_millis(500));
    let (ok, errors) = load.finish();
    assert!(
        errors.is_empty(),
        "{} of {} requests failed across the upgrade: {:?}\n{}",
        errors.len(),
        ok + errors.len() as u64,
        &errors[..errors.len().min(10)],
        server.log()
    );
    assert!(
        ok > before + 100,
        "only {} requests after the upgrade began",
        ok - before
    );
    let metrics = server.metrics();
    assert!(metrics.contains("percore_workers 2"), "{metrics}");
    assert!(
        std::fs::metadata(format!("/proc/{}", server.pid())).is_err()
            || std::fs::read_to_string(format!("/proc/{}/stat", server.pid()))
                .is_ok_and(|s| s.contains(") Z ")),
        "the old process is still running"
    );
}

/// A new binary that cannot start (here: its configuration file has become invalid) changes
/// nothing: the old process says so and serves on, and a later SIGUSR2 may try again.
#[test]
fn a_failed_binary_upgrade_leaves_the_server_serving() {
    let root = Root::new();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("percore.toml");
    std::fs::write(&file, "workers = 1\n").unwrap();
    let file_arg = file.to_str().unwrap().to_owned();
    let server = Server::start_with(
        &root,
        Options {
            extra: &["--config", &file_arg],
            ..Options::default()
        },
    );
    std::fs::write(&file, "workers = 'many'\n").unwrap();
    server.signal("USR2");
    server.wait_for_log("ended before it served", Duration::from_secs(10));
    let response = crate::harness::get(server.port(), "/hello.txt", "");
    assert_eq!(response.status, 200);
    assert!(!server.log().contains("bye"), "{}", server.log());
}

/// The congestion control `ss` shows for the server's end of a keep-alive connection to
/// `port`, after one request (TCP_DEFER_ACCEPT keeps a silent one from being accepted): the
/// word before `wscale:` in its line of `ss -ti`.
fn server_congestion(port: u16) -> String {
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let request = b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(exchange(&mut client, request), Ok((200, false)));
    let client_port = client.local_addr().unwrap().port();
    let filter = format!("( sport = :{port} and dport = :{client_port} )");
    let out = std::process::Command::new("ss")
        .args(["-tinH", "state", "established", &filter])
        .output()
        .expect("ss (iproute2)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let words: Vec<&str> = text.split_whitespace().collect();
    let at = words.iter().position(|w| w.starts_with("wscale:"));
    match at.and_then(|i| i.checked_sub(1)).and_then(|i| words.get(i)) {
        Some(name) => name.to_string(),
        None => panic!("no congestion control in ss output: {text:?}"),
    }
}

/// --tcp-congestion reaches the connections and --pin the workers, both change on a reload,
/// `system` gives the connections the system's default again, and an algorithm the kernel
/// lacks fails the reload, not the server.
#[test]
fn congestion_control_and_pinning_are_set_and_reloaded() {
    let system = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control")
        .unwrap()
        .trim()
        .to_owned();
    let chosen = if system == "reno" { "cubic" } else { "reno" };
    let root = Root::new();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("percore.toml");
    std::fs::write(&file, format!("tcp_congestion = '{chosen}'\npin = false\n")).unwrap();
    let server = Server::start_with(
        &root,
        Options {
            extra: &["--config", file.to_str().unwrap()],
            ..Options::default()
        },
    );
    let port = server.port();
    assert_eq!(server_congestion(port), chosen);
    assert!(
        server.log().contains("worker 0 unpinned"),
        "{}",
        server.log()
    );

    std::fs::write(&file, "tcp_congestion = 'system'\npin = true\n").unwrap();
    server.signal("HUP");
    server.wait_for_log("SIGHUP: generation 1 serving", Duration::from_secs(10));
    assert_eq!(server_congestion(port), system);
    let log = server.log();
    assert!(log.contains("worker 0 of generation 1 -> CPU"), "{log}");

    std::fs::write(&file, "tcp_congestion = 'percore_none'\n").unwrap();
    server.signal("HUP");
    server.wait_for_log(
        "TCP congestion control 'percore_none'",
        Duration::from_secs(10),
    );
    assert_eq!(server_congestion(port), system);
}
