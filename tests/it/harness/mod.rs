//! Starts the real `percore` binary on free loopback ports and talks to it over real sockets.
//!
//! Every server gets its own temporary document root and its own ports, so tests run in
//! parallel (and under nextest, one process per test) without colliding. A server is killed by
//! PID when its handle drops, so no test leaves a process behind.
//!
//! It serves the tests of the `percore` package (tests/it) and, included by path, those of the
//! `wsload` workspace member, which run the load generator against a real server.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

pub mod tls;
pub mod vm;

/// The `percore` binary under test: Cargo names it to this package's tests; the tests of another
/// workspace member find it in the target directory they run from (`target/<profile>/deps/…`),
/// where a `cargo test` at the workspace root has built it beside them.
static BIN: LazyLock<String> = LazyLock::new(|| {
    if let Some(bin) = option_env!("CARGO_BIN_EXE_percore") {
        return bin.to_owned();
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|profile| profile.join("percore"))
        .filter(|bin| bin.is_file())
        .unwrap_or_else(|| {
            panic!(
                "no percore binary in the target directory of {}: run `cargo test` at the \
                 workspace root, which builds it (or `cargo build -p percore` first)",
                exe.display()
            )
        });
    bin.into_os_string()
        .into_string()
        .expect("a UTF-8 path to the percore binary")
});

/// The path of the `percore` binary under test.
pub fn bin() -> &'static str {
    &BIN
}
const START_TIMEOUT: Duration = Duration::from_secs(15);
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A port nobody listens on right now (the kernel's pick; a start that loses a race retries).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0")
}

/// A document root with a few files, removed when dropped.
pub struct Root {
    pub dir: tempfile::TempDir,
}

impl Root {
    pub fn new() -> Root {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = Root { dir };
        root.write(
            "index.html",
            b"<!doctype html><title>percore test</title><p>hello</p>\n",
        );
        root.write("hello.txt", b"hello, world\n");
        root
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.path().join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&path, bytes).expect("write test file");
        path
    }
}

/// A running percore process.
pub struct Server {
    child: Child,
    /// The loopback address it listens on (`Options::bind`).
    bind: &'static str,
    pub ports: Vec<u16>,
    pub admin: Option<u16>,
    log: Arc<Mutex<String>>,
}

pub struct Options<'a> {
    /// The loopback address to listen on. A test that counts the server's descriptors takes
    /// one of its own (127.0.0.x), so that no other test's client, still dialling a port that
    /// was its server's a moment ago, can reach it.
    pub bind: &'static str,
    pub ports: usize,
    /// The last this many of the ports speak TLS (`--tls-ports`); `extra` then names the
    /// certificate and key.
    pub tls_ports: usize,
    pub workers: usize,
    pub admin: bool,
    pub extra: &'a [&'a str],
    /// Environment variables for the server (NOTIFY_SOCKET…).
    pub env: &'a [(&'a str, &'a str)],
    /// Start the server under `prlimit --nofile=N:N` (util-linux), so it may hold at most N
    /// descriptors; prlimit execs percore, so the PID is the server's.
    pub open_files: Option<u64>,
    /// Give the ports in this config file (`ports = "…"`, the file's only line, passed with
    /// `--config`) instead of `--ports`, so that a reload can change them.
    pub ports_file: Option<&'a Path>,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options {
            bind: "127.0.0.1",
            ports: 1,
            tls_ports: 0,
            workers: 1,
            admin: false,
            extra: &[],
            env: &[],
            open_files: None,
            ports_file: None,
        }
    }
}

impl Server {
    pub fn start(root: &Root) -> Server {
        Server::start_with(root, Options::default())
    }

    /// One worker, one port, no admin endpoint, and these extra flags.
    pub fn start_with_flags(root: &Root, extra: &[&str]) -> Server {
        Server::start_with(
            root,
            Options {
                extra,
                ..Options::default()
            },
        )
    }

    pub fn start_with(root: &Root, opts: Options<'_>) -> Server {
        let mut last_log = String::new();
        for _attempt in 0..8 {
            let ports: Vec<u16> = (0..opts.ports).map(|_| free_port()).collect();
            let admin = opts.admin.then(free_port);
            let port_list = ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(",");
            let mut cmd = match opts.open_files {
                Some(n) => {
                    let mut cmd = Command::new("prlimit");
                    cmd.arg(format!("--nofile={n}:{n}")).arg("--").arg(bin());
                    cmd
                }
                None => Command::new(bin()),
            };
            match opts.ports_file {
                Some(file) => {
                    std::fs::write(file, format!("ports = '{port_list}'\n")).expect("ports file");
                    cmd.arg("--config").arg(file);
                }
                None => {
                    cmd.arg("--ports").arg(&port_list);
                }
            }
            cmd.arg("--bind")
                .arg(opts.bind)
                .arg("--workers")
                .arg(opts.workers.to_string())
                .arg("--root")
                .arg(root.path())
                .arg("--admin")
                .arg(admin.map_or("off".to_string(), |p| format!("{}:{p}", opts.bind)))
                .args(opts.extra)
                // Whatever service manager runs the tests is not this server's: without these
                // it would notify (and be waited on by) the runner's own socket.
                .env_remove("NOTIFY_SOCKET")
                .env_remove("WATCHDOG_USEC")
                .env_remove("WATCHDOG_PID")
                .env_remove("LISTEN_FDS")
                .env_remove("LISTEN_PID")
                .envs(opts.env.iter().copied());
            if opts.tls_ports > 0 {
                let tls: Vec<String> = ports[ports.len().saturating_sub(opts.tls_ports)..]
                    .iter()
                    .map(u16::to_string)
                    .collect();
                cmd.arg("--tls-ports").arg(tls.join(","));
            }
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            let mut child = cmd.spawn().expect("spawning percore");
            let stderr = child.stderr.take().expect("stderr pipe");
            let log = Arc::new(Mutex::new(String::new()));
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let sink = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    // Into the log before the ready signal, so the ready line is in the log
                    // once `start` returns.
                    sink.lock().unwrap().push_str(&line);
                    sink.lock().unwrap().push('\n');
                    if line.contains("ready: serving") {
                        let _ = ready_tx.send(true);
                    }
                }
                let _ = ready_tx.send(false);
            });
            let server = Server {
                child,
                bind: opts.bind,
                ports,
                admin,
                log,
            };
            match ready_rx.recv_timeout(START_TIMEOUT) {
                Ok(true) => return server,
                _ => {
                    last_log = server.log();
                    // A lost race for a port: another process took it between free_port and the
                    // bind, or (both percores checking at once) it listens there too and each
                    // refuses to share. Either way the start failed: try other ports.
                    if last_log.contains("cannot listen")
                        || last_log.contains("cannot serve metrics")
                    {
                        continue;
                    }
                    panic!("percore did not become ready; its log:\n{last_log}");
                }
            }
        }
        panic!("percore could not bind free ports; last log:\n{last_log}");
    }

    pub fn port(&self) -> u16 {
        self.ports[0]
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// What the server's descriptors are, one `fd -> target` per line, for failure messages.
    pub fn fd_listing(&self) -> String {
        let Ok(entries) = std::fs::read_dir(format!("/proc/{}/fd", self.pid())) else {
            return "(no fd directory)".to_owned();
        };
        let mut lines: Vec<String> = entries
            .filter_map(Result::ok)
            .map(|e| {
                let target = std::fs::read_link(e.path()).unwrap_or_default();
                format!(
                    "{} -> {}",
                    e.file_name().to_string_lossy(),
                    target.display()
                )
            })
            .collect();
        lines.sort();
        lines.join("\n")
    }

    /// The numbers of the descriptors the server holds now.
    pub fn fd_numbers(&self) -> Vec<u32> {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("the server's fd directory")
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect()
    }

    /// How many descriptors the server holds now (entries of /proc/PID/fd).
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("the server's fd directory")
            .count()
    }

    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect((self.bind, self.port())).expect("connect");
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream
    }

    /// Sends SIGTERM by PID.
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Sends the signal named `name` (`TERM`, `INT`, `HUP`…) by PID.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits until the log contains `needle`, at most `limit`; panics with the log otherwise.
    pub fn wait_for_log(&self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in the log after {limit:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// GET `path` on the admin port: the status and the body.
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        let port = self.admin.expect("server started without --admin");
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut all = parse_all(&exchange(port, request.as_bytes()));
        assert_eq!(all.len(), 1, "expected one response to {path}");
        let resp = all.remove(0);
        (
            resp.status,
            String::from_utf8_lossy(&resp.body).into_owned(),
        )
    }

    /// Waits until every one of `expected` is a line of `/metrics`, at most `limit` (workers
    /// report once a second); panics naming the missing lines otherwise.
    pub fn wait_for_metrics(&self, expected: &[String], limit: Duration) {
        let started = Instant::now();
        loop {
            let text = self.metrics();
            let missing: Vec<&String> = expected
                .iter()
                .filter(|line| !text.lines().any(|l| l == line.as_str()))
                .collect();
            if missing.is_empty() {
                return;
            }
            assert!(started.elapsed() < limit, "missing {missing:?} in:\n{text}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// GET `/metrics` on the admin port and return the whole response.
    pub fn metrics(&self) -> String {
        let port = self.admin.expect("server started without --admin");
        let mut stream = TcpStream::connect((self.bind, port)).expect("connect to admin");
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        String::from_utf8_lossy(&read_to_close(&mut stream)).into_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

/// Sends `request` on a new connection and reads until the server closes it.
pub fn exchange(port: u16, request: &[u8]) -> Vec<u8> {
    let mut stream = connect(port);
    stream.write_all(request).unwrap();
    read_to_close(&mut stream)
}

pub fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    out
}

/// One parsed response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads exactly one response from `stream` (Content-Length framed, or none for 204/304/HEAD).
pub fn read_response(stream: &mut impl Read, head_request: bool) -> Response {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).expect("reading a response head");
        assert!(
            n == 1,
            "connection closed inside a response head: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    let mut resp = parse_head(std::str::from_utf8(&head).expect("ASCII head"));
    let len = body_len(&resp);
    let status = resp.status;
    if !head_request && status != 204 && status != 304 {
        resp.body = vec![0; len];
        stream
            .read_exact(&mut resp.body)
            .expect("reading a response body");
    }
    resp
}

/// A response's status line and headers (the body left empty).
fn parse_head(text: &str) -> Response {
    let mut lines = text.split("\r\n");
    let status_line = lines.next().expect("a status line");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').expect("header line");
            (n.to_string(), v.trim().to_string())
        })
        .collect();
    Response {
        status,
        headers,
        body: Vec::new(),
    }
}

fn body_len(resp: &Response) -> usize {
    resp.header("Content-Length")
        .map_or(0, |v| v.parse().expect("a numeric Content-Length"))
}

/// Parses every response in `bytes` (for pipelining and close-delimited exchanges).
pub fn parse_all(bytes: &[u8]) -> Vec<Response> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let end = rest
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("incomplete head: {:?}", String::from_utf8_lossy(rest)))
            + 4;
        let mut resp = parse_head(std::str::from_utf8(&rest[..end]).expect("ASCII head"));
        let len = if resp.status == 304 || resp.status == 204 {
            0
        } else {
            body_len(&resp)
        };
        resp.body = rest[end..end + len].to_vec();
        rest = &rest[end + len..];
        out.push(resp);
    }
    out
}

/// GET `path` with extra header lines on a fresh connection that asks to close.
pub fn get(port: u16, path: &str, headers: &str) -> Response {
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{headers}\r\n");
    let bytes = exchange(port, req.as_bytes());
    let mut all = parse_all(&bytes);
    assert_eq!(all.len(), 1, "expected one response to {path}");
    all.remove(0)
}

/// Reads until the peer closes the connection (end of stream or reset) and returns what
/// arrived; panics if the connection is still open after `limit`.
pub fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Vec<u8> {
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "connection still open after {limit:?}; received {:?}",
            String::from_utf8_lossy(&out)
        );
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return out,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                continue
            }
            Err(e) => panic!("reading until close: {e}"),
        }
    }
}

/// `len` deterministic bytes that are not all one value, so a misplaced chunk is caught.
pub fn patterned(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i >> 16) as u8)
        .collect()
}
