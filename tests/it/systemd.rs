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
