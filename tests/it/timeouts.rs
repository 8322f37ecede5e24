//! Deadlines: slow heads, silent connections, idle keep-alive, and a reader that stalls.

use std::io::{Read, Write};
use std::time::Duration;

use crate::harness::{
    connect, parse_all, patterned, read_response, read_until_closed, Root, Server,
};

/// Generous: the timeouts under test are 1 s, and the machine may be busy.
const CLOSE_LIMIT: Duration = Duration::from_secs(5);

#[test]
fn a_partial_head_gets_408_and_is_closed() {
    let root = Root::new();
    let server = Server::start_with_flags(&root, &["--header-timeout", "1s"]);
    let mut stream = server.connect();
    stream
        .write_all(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let bytes = read_until_closed(&mut stream, CLOSE_LIMIT);
    let all = parse_all(&bytes);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].status, 408);
}

#[test]
fn a_silent_connection_is_closed_without_a_response() {
    let root = Root::new();
    let server = Server::start_with_flags(&root, &["--header-timeout", "1s"]);
    let mut stream = server.connect();
    let bytes = read_until_closed(&mut stream, CLOSE_LIMIT);
    assert_eq!(String::from_utf8_lossy(&bytes), "");
}

#[test]
fn an_idle_keep_alive_connection_is_closed() {
    let root = Root::new();
    let server = Server::start_with_flags(&root, &["--keepalive-timeout", "1s"]);
    let mut stream = server.connect();
    stream
        .write_all(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let resp = read_response(&mut stream, false);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"hello, world\n");
    let bytes = read_until_closed(&mut stream, CLOSE_LIMIT);
    assert_eq!(String::from_utf8_lossy(&bytes), "");
}

#[test]
fn a_stalled_reader_does_not_hold_up_other_clients() {
    let root = Root::new();
    let body = patterned(10 * 1024 * 1024);
    root.write("big.bin", &body);
    // One worker: the stalled connection and the others share one event loop.
    let server = Server::start(&root);
    let mut stalled = server.connect();
    stalled
        .write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // Let the server fill the socket buffers and hit back-pressure.
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..5 {
        let mut other = connect(server.port());
        other.set_read_timeout(Some(CLOSE_LIMIT)).unwrap();
        other
            .write_all(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let resp = read_response(&mut other, false);
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body, b"hello, world\n");
    }
    // The stalled client then gets its whole response.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stalled.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200 "));
    let mut received = vec![0u8; body.len()];
    stalled.read_exact(&mut received).unwrap();
    assert!(received == body, "10 MiB body differs");
}

#[test]
fn an_active_keep_alive_connection_outlives_the_keepalive_timeout() {
    let root = Root::new();
    let server = Server::start_with_flags(&root, &["--keepalive-timeout", "1s"]);
    let mut stream = server.connect();
    // A request every 300 ms for 3 s: never idle for 1 s, so never closed.
    for _ in 0..10 {
        stream
            .write_all(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        assert_eq!(read_response(&mut stream, false).status, 200);
        std::thread::sleep(Duration::from_millis(300));
    }
}
