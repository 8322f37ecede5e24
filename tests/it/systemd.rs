//! systemd's notification protocol against a fake $NOTIFY_SOCKET: READY=1 once serving, the
//! watchdog at half of $WATCHDOG_USEC, STATUS= lines, RELOADING=1 and READY=1 around a SIGHUP,
//! STOPPING=1 and a draining status on SIGTERM.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use crate::harness::{get, Options, Root, Server};

/// Receives messages until one satisfies `wanted`, at most `limit`; returns it with every
/// message received before it.
fn until(socket: &UnixDatagram, limit: Duration, wanted: impl Fn(&str) -> bool) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "not seen within {limit:?}; got {seen:?}");
        socket.set_read_timeout(Some(left)).unwrap();
        if let Ok(n) = socket.recv(&mut buf) {
            let message = String::from_utf8_lossy(&buf[..n]).into_owned();
            let done = wanted(&message);
            seen.push(message);
            if done {
                return seen;
            }
        }
    }
}

#[test]
fn ready_watchdog_status_reload_and_stop() {
    let root = Root::new();
    let path = root.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    let path = path.to_string_lossy().into_owned();
    let server = Server::start_with(
        &root,
        Options {
            env: &[("NOTIFY_SOCKET", &path), ("WATCHDOG_USEC", "400000")],
            ..Options::default()
        },
    );
    let first = until(&socket, Duration::from_secs(5), |m| m == "READY=1");
    assert_eq!(first, ["READY=1"], "nothing before READY=1");
    // Every 200 ms: at least three in a second.
    let started = Instant::now();
    for _ in 0..3 {
        until(&socket, Duration::from_secs(2), |m| m == "WATCHDOG=1");
    }
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert_eq!(get(server.port(), "/hello.txt", "").status, 200);
    let status = until(&socket, Duration::from_secs(8), |m| {
        m.starts_with("STATUS=")
    });
    let status = status.last().cloned().unwrap_or_default();
    assert!(
        status.starts_with("STATUS=serving: ") && status.ends_with(" requests/s"),
        "{status}"
    );

    server.signal("HUP");
    let reload = until(&socket, Duration::from_secs(5), |m| {
        m.starts_with("RELOADING=1")
    });
    let reloading = reload.last().cloned().unwrap_or_default();
    let micros = reloading
        .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
        .and_then(|n| n.parse::<u64>().ok());
    assert!(micros.is_some_and(|n| n > 0), "{reloading:?}");
    let after = until(&socket, Duration::from_secs(5), |m| m == "READY=1");
    assert!(
        after.iter().all(|m| m == "WATCHDOG=1" || m == "READY=1"),
        "{after:?}"
    );

    server.terminate();
    let stopping = until(&socket, Duration::from_secs(5), |m| m == "STOPPING=1");
    assert!(!stopping.iter().any(|m| m.starts_with("STATUS=draining")));
    until(&socket, Duration::from_secs(5), |m| {
        m.starts_with("STATUS=draining: ")
    });
}

/// percore started the way systemd's socket activation starts it, by Python: a listening
/// socket on a free loopback port (with SO_REUSEPORT or not) as descriptor 3, `LISTEN_FDS=1`,
/// `LISTEN_PID` its own PID, then exec. Extra arguments follow the port flags; `port_offset`
/// moves the configured port away from the passed one.
struct Activated {
    child: std::process::Child,
    port: u16,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Activated {
    fn start(root: &Root, reuse_port: bool, workers: usize, port_offset: u16) -> Activated {
        use std::io::{BufRead, BufReader};
        let script = format!(
            "import os, socket, sys\n\
             s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n\
             s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
             if {reuse}: s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)\n\
             s.bind(('127.0.0.1', 0)); s.listen(128)\n\
             port = s.getsockname()[1]\n\
             print(port, flush=True)\n\
             os.dup2(s.fileno(), 3); os.set_inheritable(3, True)\n\
             os.environ['LISTEN_FDS'] = '1'; os.environ['LISTEN_PID'] = str(os.getpid())\n\
             os.execv(sys.argv[1], [sys.argv[1], '--bind', '127.0.0.1', '--ports', \
             str(port + {port_offset}), '--workers', '{workers}', '--admin', 'off', '--root', sys.argv[2]])\n",
            reuse = if reuse_port { "True" } else { "False" },
        );
        let mut child = std::process::Command::new("python3")
            .args(["-c", &script, crate::harness::bin()])
            .arg(root.path())
            .env_remove("NOTIFY_SOCKET")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("python3");
        let mut first = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut first)
            .expect("the port");
        let port = first.trim().parse().expect("a port number");
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = std::sync::Arc::clone(&log);
        let stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut log) = sink.lock() {
                    log.push_str(&line);
                    log.push('\n');
                }
            }
        });
        Activated { child, port, log }
    }

    fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Waits for `what` in the log, or for the process to exit.
    fn wait_for(&mut self, what: &str) {
        let started = Instant::now();
        while !self.log().contains(what) {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no '{what}' in:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Listening sockets on the port, from /proc/net/tcp (state 0A).
    fn listeners(&self) -> usize {
        let hex = format!(":{:04X} ", self.port);
        std::fs::read_to_string("/proc/net/tcp")
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                let fields: Vec<&str> = l.split_whitespace().collect();
                fields
                    .get(1)
                    .is_some_and(|local| format!("{local} ").ends_with(&hex))
                    && fields.get(3) == Some(&"0A")
            })
            .count()
    }
}

impl Drop for Activated {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Socket activation: percore listens on the socket systemd passes. With `ReusePort=yes` it
/// binds one more socket per further worker beside it; without, its two workers share the one
/// socket; either way every request is answered and no second process could join.
#[test]
fn socket_activation_serves_on_the_passed_socket() {
    let root = Root::new();
    for (reuse_port, sockets, said) in [
        (
            true,
            2,
            "listening on the passed socket(s) (LISTEN_FDS, or an upgrade)\n",
        ),
        (false, 1, "shared by the workers"),
    ] {
        let mut server = Activated::start(&root, reuse_port, 2, 0);
        server.wait_for("ready: serving");
        assert!(server.log().contains(said), "{}", server.log());
        assert_eq!(server.listeners(), sockets, "{}", server.log());
        for _ in 0..20 {
            let response = get(server.port, "/hello.txt", "");
            assert_eq!(
                (response.status, response.body.as_slice()),
                (200, &b"hello, world\n"[..])
            );
        }
    }
}

/// A passed socket on a port the configuration does not name stops the start with one line.
#[test]
fn a_passed_socket_the_configuration_does_not_name_is_refused() {
    let root = Root::new();
    let mut server = Activated::start(&root, true, 1, 1);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "still running");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(1));
    server
        .wait_for("passed by the service manager (LISTEN_FDS) is not one --bind and --ports name");
}
