//! Every limit on memory a client controls, driven past its maximum by many connections at
//! once: each answers with its status or close code, and the server's RSS while those
//! connections sit at their worst stays within what the limit promises, far below what the
//! same clients would cost without it.
//!
//! "At their worst" is observed, not waited for: the server's side of each connection is read
//! from /proc/net/tcp, and RSS is measured only once the server has read everything the
//! clients sent (its receive queues are empty) or, where it must stop reading, once its queues
//! stand still.

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::harness::{connect, patterned, read_response, Root, Server};
use crate::ws_client::{deflate, frame, RawWs, BINARY, CONT, FIN, RSV1};

/// The server's resident set in KiB.
fn rss_kib(server: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid()))
        .expect("the server's /proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line")
}

/// (send queue, receive queue) of every established IPv4 socket whose local port is `port`:
/// the server's side of each connection to it.
fn server_queues(port: u16) -> Vec<(u64, u64)> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = u16::from_str_radix(fields.get(1)?.rsplit(':').next()?, 16).ok()?;
            let established = *fields.get(3)? == "01";
            let (tx, rx) = fields.get(4)?.split_once(':')?;
            let queues = (
                u64::from_str_radix(tx, 16).ok()?,
                u64::from_str_radix(rx, 16).ok()?,
            );
            (local_port == port && established).then_some(queues)
        })
        .collect()
}

/// Waits until the server has read everything its `count` connections sent.
fn wait_until_read(port: u16, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let queues = server_queues(port);
        if queues.len() == count && queues.iter().all(|&(_, rx)| rx == 0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the server has not read its {count} connections: {queues:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until each of `count` connections has bytes the client has not taken (the server
/// sends faster than it reads) and no queue has moved for half a second: the server has
/// stopped reading and writing.
fn wait_until_still(port: u16, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut before = Vec::new();
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let mut queues = server_queues(port);
        queues.sort_unstable();
        if queues.len() == count && queues.iter().all(|&(tx, _)| tx > 0) && queues == before {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the server's {count} connections did not settle: {queues:?}"
        );
        before = queues;
    }
}

/// Asserts the server grew by at most `each` KiB for each of `count` connections (or cache
/// entries), plus 2 MiB for the allocator's own rounding.
fn assert_growth(server: &Server, before: u64, count: u64, each: u64, what: &str) {
    let grown = rss_kib(server).saturating_sub(before);
    let limit = count * each + 2048;
    eprintln!("{count} × {what}: the server grew by {grown} KiB (limit {limit} KiB)");
    assert!(
        grown <= limit,
        "{count} × {what}: the server grew by {grown} KiB, over {limit} KiB"
    );
}

/// Starts a one-worker server and warms it with one request of each kind it will see, so
/// that the baseline RSS already holds the code pages and pools a first request maps.
fn start(root: &Root, flags: &[&str]) -> (Server, u64) {
    let server = Server::start_with_flags(root, flags);
    let resp = crate::harness::get(server.port(), "/hello.txt", "");
    assert_eq!(resp.status, 200);
    std::thread::sleep(Duration::from_millis(100));
    let before = rss_kib(&server);
    (server, before)
}

#[test]
fn partial_heads_hold_at_most_a_buffer_each_and_past_the_limit_get_431() {
    const CONNS: usize = 300;
    let root = Root::new();
    let (server, before) = start(&root, &["--max-header-size", "8k"]);
    let head = format!(
        "GET /hello.txt HTTP/1.1\r\nHost: x\r\nX-Pad: {}",
        "a".repeat(7 * 1024)
    );
    let mut conns: Vec<TcpStream> = (0..CONNS).map(|_| connect(server.port())).collect();
    for conn in &mut conns {
        conn.write_all(head.as_bytes()).unwrap();
    }
    wait_until_read(server.port(), CONNS);
    // A head under the limit is kept whole: one 64 KiB input buffer at most.
    assert_growth(&server, before, CONNS as u64, 72, "7 KiB into a head");
    for conn in &mut conns {
        conn.write_all(&[b'a'; 2048]).unwrap();
    }
    for conn in &mut conns {
        assert_eq!(read_response(conn, false).status, 431);
    }
}

#[test]
fn bodies_are_skipped_not_kept_and_past_the_limit_get_413() {
    const CONNS: usize = 300;
    const DECLARED: usize = 1_000_000;
    let root = Root::new();
    let (server, before) = start(&root, &["--max-body-size", "1m"]);
    let head = format!("GET /hello.txt HTTP/1.1\r\nHost: x\r\nContent-Length: {DECLARED}\r\n\r\n");
    let half = vec![b'b'; DECLARED / 2];
    let mut conns: Vec<TcpStream> = (0..CONNS).map(|_| connect(server.port())).collect();
    for conn in &mut conns {
        conn.write_all(head.as_bytes()).unwrap();
        conn.write_all(&half).unwrap();
    }
    wait_until_read(server.port(), CONNS);
    // 150 MB of bodies in flight; the server keeps none of it.
    assert_growth(&server, before, CONNS as u64, 16, "500 KB into a body");
    for conn in &mut conns {
        conn.write_all(&half).unwrap();
        let resp = read_response(conn, false);
        assert_eq!(
            (resp.status, resp.body.as_slice()),
            (200, &b"hello, world\n"[..])
        );
    }
    let mut conn = connect(server.port());
    conn.write_all(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 1048577\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut conn, false).status, 413);
}

#[test]
fn unfinished_websocket_messages_hold_at_most_the_limit_and_past_it_close_1009() {
    const CONNS: usize = 50;
    let root = Root::new();
    let (server, before) = start(&root, &["--ws-max-message", "256k"]);
    let mut sockets: Vec<RawWs> = (0..CONNS).map(|_| RawWs::open(server.port())).collect();
    let first = frame(BINARY, &patterned(200 * 1024));
    for ws in &mut sockets {
        ws.send_raw(&first);
    }
    wait_until_read(server.port(), CONNS);
    // The message so far is kept for its echo: up to the limit, plus the input buffer.
    assert_growth(
        &server,
        before,
        CONNS as u64,
        256 + 72,
        "200 KiB into a message",
    );
    let rest = frame(FIN | CONT, &patterned(100 * 1024));
    for ws in &mut sockets {
        ws.send_raw(&rest);
    }
    for ws in &mut sockets {
        ws.expect_close_code(1009);
    }
}

#[test]
fn compressed_bombs_close_1009_and_inflate_no_further_than_the_limit() {
    const CONNS: usize = 50;
    let root = Root::new();
    let (server, before) = start(&root, &["--ws-max-message", "256k"]);
    // 64 MiB of zeros in about 64 KiB: 3.2 GB if every connection inflated all of it.
    let bomb = frame(FIN | RSV1 | BINARY, &deflate(&vec![0u8; 64 << 20]));
    let offer = "Sec-WebSocket-Extensions: permessage-deflate\r\n";
    let mut sockets: Vec<RawWs> = (0..CONNS)
        .map(|_| RawWs::open_with(server.port(), "/ws", offer).0)
        .collect();
    for ws in &mut sockets {
        ws.send_raw(&bomb);
    }
    for ws in &mut sockets {
        ws.expect_close_code(1009);
    }
    assert_growth(
        &server,
        before,
        CONNS as u64,
        256 + 72,
        "a bomb, closed 1009",
    );
}

#[test]
fn a_client_that_pipelines_and_never_reads_holds_at_most_the_output_high_water() {
    const CONNS: usize = 40;
    const REQUESTS: usize = 1000;
    let root = Root::new();
    root.write("four.bin", &patterned(4096));
    let (server, before) = start(&root, &[]);
    let request = b"GET /four.bin HTTP/1.1\r\nHost: x\r\n\r\n".repeat(REQUESTS);
    let conns: Vec<TcpStream> = (0..CONNS).map(|_| connect(server.port())).collect();
    // Writers in threads: a write may block once the server stops reading, which is the
    // point; they finish when the responses below are read.
    let writers: Vec<_> = conns
        .iter()
        .map(|conn| {
            let mut writer = conn.try_clone().unwrap();
            let request = request.clone();
            std::thread::spawn(move || writer.write_all(&request).unwrap())
        })
        .collect();
    wait_until_still(server.port(), CONNS);
    // 4 MB of responses asked for on each; the server holds 256 KiB of output and one input
    // buffer, and reads no further until the client takes some.
    assert_growth(
        &server,
        before,
        CONNS as u64,
        256 + 128,
        "1000 GETs pipelined, none read",
    );
    for conn in &conns {
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut reader = BufReader::with_capacity(64 * 1024, conn);
        for i in 0..REQUESTS {
            let resp = read_response(&mut reader, false);
            assert_eq!((resp.status, resp.body.len()), (200, 4096), "response {i}");
        }
    }
    for writer in writers {
        writer.join().unwrap();
    }
}

#[test]
fn the_file_cache_holds_its_entry_count_in_memory_and_descriptors() {
    const FILES: usize = 300;
    let root = Root::new();
    for i in 0..FILES {
        root.write(&format!("small/{i}.bin"), &patterned(60 * 1024));
        root.write(&format!("large/{i}.bin"), &patterned(128 * 1024));
    }
    let (server, before) = start(&root, &["--file-cache-entries", "16"]);
    let fds = server.open_fds();
    let mut conn = connect(server.port());
    for round in 0..2 {
        for dir in ["small", "large"] {
            for i in 0..FILES {
                // One write: write! would send it in pieces, and Nagle would hold the later
                // ones for the server's delayed ACK.
                let request = format!("GET /{dir}/{i}.bin HTTP/1.1\r\nHost: x\r\n\r\n");
                conn.write_all(request.as_bytes()).unwrap();
                let resp = read_response(&mut conn, false);
                assert_eq!(resp.status, 200, "{dir}/{i} in round {round}");
            }
        }
    }
    // 18 MB of small files would fit in memory and 300 large ones would hold 300 descriptors
    // without the limit; with it, at most 16 entries of either kind.
    assert_growth(&server, before, 16, 64, "60 KiB cache entry");
    let held = server.open_fds() - fds;
    assert!(held <= 16, "{held} descriptors held by a 16-entry cache");
}
