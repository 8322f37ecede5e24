//! Faults the server must ride out: no descriptor left, and more clients than a worker may hold.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::harness::{patterned, read_response, Options, Response, Root, Server};

/// Sends a keep-alive GET for `path` on `stream` and reads the one response.
fn request(stream: &mut TcpStream, path: &str) -> Response {
    let head = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    stream
        .write_all(head.as_bytes())
        .expect("sending a request");
    read_response(stream, false)
}

/// The status of a keep-alive GET for `path`; when none comes, panics with the descriptors
/// the server held `before` the connection and holds now, and its log: a connection the count
/// said there was room for, left unaccepted, means a descriptor appeared in between.
fn answered(server: &Server, stream: &mut TcpStream, path: &str, before: &str) -> u16 {
    let head = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    stream
        .write_all(head.as_bytes())
        .expect("sending a request");
    let mut first = [0u8; 1];
    if let Err(e) = stream.peek(&mut first) {
        panic!(
            "no answer to GET {path}: {e}\nbefore connecting:\n{before}\nnow:\n{}\nlog:\n{}",
            server.fd_listing(),
            server.log()
        );
    }
    read_response(stream, false).status
}

/// How many of the descriptor numbers below `limit` the server holds: the kernel gives out
/// only those (EMFILE when none is free), so a descriptor inherited with a higher number, as
/// some test runners pass on, takes no room.
fn slots_taken(server: &Server, limit: u64) -> usize {
    server
        .fd_numbers()
        .into_iter()
        .filter(|&fd| u64::from(fd) < limit)
        .count()
}

/// Polls `check` every 20 ms until it holds; panics with `what` after `limit`.
fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "{what}: not after {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The counts in the log's rate-limited warnings whose text has `mark` just before the count.
fn warning_counts(log: &str, mark: &str) -> Vec<u64> {
    log.lines()
        .filter_map(|line| {
            let rest = &line[line.find(mark)? + mark.len()..];
            rest.split(' ').next()?.parse().ok()
        })
        .collect()
}

/// Counts of the warnings about files that could not be opened.
fn shortage_counts(log: &str) -> Vec<u64> {
    warning_counts(log, "short of file descriptors or memory ")
}

/// Once the server holds as many descriptors as it may, a small and a large file it served a
/// moment ago are still served on an open connection after the once-a-second revalidation
/// (they used to get 500: revalidating reopened the file), a file never served before gets 503
/// with Retry-After (not 500), and the warnings about that and about accept failing every
/// 100 ms are rate-limited; once connections close, the one left waiting in the listen queue
/// is served and so is the new file.
#[test]
fn at_the_open_files_limit_cached_files_are_served_and_others_get_503() {
    const LIMIT: u64 = 40;
    const REFUSED: u64 = 20;
    let root = Root::new();
    root.write("small.txt", b"small and cached");
    let big = patterned(100 * 1024);
    root.write("big.bin", &big);
    root.write("never.txt", b"not fetched before the limit");
    let server = Server::start_with(
        &root,
        Options {
            // Its descriptors are counted: an address no other test dials.
            bind: "127.0.0.43",
            admin: true,
            open_files: Some(LIMIT),
            ..Options::default()
        },
    );
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.pid())).expect("limits");
    assert!(
        limits.lines().any(|l| l.starts_with("Max open files")
            && l.split_whitespace().nth(3) == Some(&LIMIT.to_string())),
        "{limits}"
    );
    let mut kept = server.connect();
    assert_eq!(request(&mut kept, "/small.txt").body, b"small and cached");
    assert_eq!(request(&mut kept, "/big.bin").body, big);

    // Idle keep-alive connections, each served once, until no descriptor is left.
    let mut idle = Vec::new();
    while slots_taken(&server, LIMIT) < LIMIT as usize {
        assert!(
            idle.len() < LIMIT as usize,
            "the descriptor count does not grow"
        );
        let before = server.fd_listing();
        let mut stream = server.connect();
        let status = answered(&server, &mut stream, "/small.txt", &before);
        assert_eq!(status, 200);
        idle.push(stream);
    }
    assert_eq!(slots_taken(&server, LIMIT), LIMIT as usize);
    // One more, with its request: the kernel queues it, and accept fails every 100 ms.
    let mut queued = server.connect();
    queued
        .write_all(b"GET /small.txt HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("the queued request");

    // Past the once-a-second revalidation of both cached files.
    std::thread::sleep(Duration::from_millis(1500));
    let small = request(&mut kept, "/small.txt");
    let text = String::from_utf8_lossy(&small.body);
    assert_eq!((small.status, text.as_ref()), (200, "small and cached"));
    let large = request(&mut kept, "/big.bin");
    assert_eq!(large.status, 200);
    assert!(large.body == big, "the large file's body differs");

    for _ in 0..REFUSED {
        let refused = request(&mut kept, "/never.txt");
        assert_eq!(refused.status, 503, "{refused:?}");
        assert_eq!(refused.header("Retry-After"), Some("1"));
        assert_eq!(
            refused.header("Connection"),
            None,
            "the connection stays open"
        );
    }
    assert_eq!(slots_taken(&server, LIMIT), LIMIT as usize);

    // Two connections close: the queued one is accepted and answered, and the file opens.
    idle.truncate(idle.len() - 2);
    assert_eq!(read_response(&mut queued, false).status, 200);
    wait_until(
        Duration::from_secs(5),
        "a descriptor free after two connections closed",
        || slots_taken(&server, LIMIT) < LIMIT as usize,
    );
    let served = request(&mut kept, "/never.txt");
    assert_eq!(served.status, 200);
    assert_eq!(served.body, b"not fetched before the limit");

    // One warning at once, the rest summed up a second later: a few lines, not one per request.
    wait_until(
        Duration::from_secs(5),
        "warnings counting every 503",
        || shortage_counts(&server.log()).iter().sum::<u64>() == REFUSED,
    );
    let lines = shortage_counts(&server.log()).len();
    assert!((1..=4).contains(&lines), "{lines} lines:\n{}", server.log());
    // Accept retried every 100 ms for about 1.5 s: a line a second at most, with the count.
    let pauses = warning_counts(&server.log(), "accept paused ");
    assert!(
        (1..=4).contains(&pauses.len()) && pauses.iter().sum::<u64>() >= 5,
        "accept warnings {pauses:?}:\n{}",
        server.log()
    );

    idle.clear();
    wait_until(
        Duration::from_secs(5),
        "the metrics counting every 503",
        || {
            server.metrics().contains(&format!(
                "percore_files_unavailable_total{{worker=\"0\"}} {REFUSED}\n"
            ))
        },
    );
}

/// Connections waiting in the listen queue of the server's one listener (/proc/net/tcp's
/// rx_queue of a listening socket is its accept queue).
fn accept_queue(port: u16) -> u64 {
    let local = format!("0100007F:{port:04X}");
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let queued = table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // Fields: sl, local address, remote address, state (0A: listening), tx:rx queues.
        if fields.get(1) != Some(&local.as_str()) || fields.get(3) != Some(&"0A") {
            return None;
        }
        let (_, rx) = fields.get(4)?.split_once(':')?;
        u64::from_str_radix(rx, 16).ok()
    });
    queued.unwrap_or_else(|| panic!("no listener on port {port} in /proc/net/tcp"))
}

/// With `--max-connections 3`, three idle keep-alive connections are served, a fourth completes
/// its handshake and waits in the listen queue, unanswered, until one of the three closes; then
/// it is accepted and answered, and the metrics count both pauses.
#[test]
fn beyond_max_connections_a_client_waits_in_the_listen_queue_until_one_closes() {
    let root = Root::new();
    let server = Server::start_with(
        &root,
        Options {
            admin: true,
            extra: &["--max-connections", "3"],
            ..Options::default()
        },
    );
    let mut held: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut stream = server.connect();
            assert_eq!(request(&mut stream, "/hello.txt").status, 200);
            stream
        })
        .collect();

    let mut fourth = server.connect();
    fourth
        .write_all(b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("the fourth request");
    wait_until(
        Duration::from_secs(5),
        "the fourth in the listen queue",
        || accept_queue(server.port()) == 1,
    );
    // Still queued after several turns of the worker (it wakes at least every 100 ms).
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(accept_queue(server.port()), 1, "accepted beyond the cap");
    fourth.set_nonblocking(true).expect("nonblocking");
    let mut byte = [0u8; 1];
    let early = fourth.read(&mut byte).map_err(|e| e.kind());
    assert_eq!(early, Err(ErrorKind::WouldBlock), "answered beyond the cap");
    fourth.set_nonblocking(false).expect("blocking");
    wait_until(
        Duration::from_secs(5),
        "the metrics showing the pause",
        || {
            server
                .metrics()
                .contains("percore_accept_paused{worker=\"0\"} 1\n")
        },
    );

    drop(held.remove(0));
    let answer = read_response(&mut fourth, false);
    let text = String::from_utf8_lossy(&answer.body);
    assert_eq!((answer.status, text.as_ref()), (200, "hello, world\n"));
    assert_eq!(accept_queue(server.port()), 0);
    for stream in held.iter_mut().chain([&mut fourth]) {
        assert_eq!(request(stream, "/hello.txt").status, 200);
    }
    // Paused on the third accept, resumed when one closed, paused again on the fourth.
    wait_until(
        Duration::from_secs(5),
        "the metrics counting two pauses",
        || {
            let metrics = server.metrics();
            metrics.contains("percore_accept_cap_pauses_total{worker=\"0\"} 2\n")
                && metrics.contains("percore_accept_paused{worker=\"0\"} 1\n")
        },
    );
    assert!(!server.log().contains("error"), "{}", server.log());
}
