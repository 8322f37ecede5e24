//! Malformed, oversized and unusual requests over raw TCP: the status, the close, and a server
//! that keeps serving everyone else afterwards.

use std::io::Write;
use std::time::Duration;

use crate::harness::{
    connect, exchange, get, parse_all, read_until_closed, Response, Root, Server,
};

/// How long a connection may stay open after a refusal before the test calls it left open.
const CLOSE_LIMIT: Duration = Duration::from_secs(5);

/// Sends `request` on a new connection, expects exactly one response, the connection closed
/// after it, and a fresh connection still served.
fn refused(server: &Server, request: &[u8]) -> Response {
    let mut stream = server.connect();
    stream.write_all(request).unwrap();
    let bytes = read_until_closed(&mut stream, CLOSE_LIMIT);
    let mut all = parse_all(&bytes);
    assert_eq!(
        all.len(),
        1,
        "expected one response to {:?}",
        String::from_utf8_lossy(request)
    );
    assert_still_serving(server);
    all.remove(0)
}

fn assert_still_serving(server: &Server) {
    let resp = get(server.port(), "/hello.txt", "");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"hello, world\n");
}

fn check_refused(request: &[u8], status: u16) {
    let root = Root::new();
    let server = Server::start(&root);
    let resp = refused(&server, request);
    assert_eq!(
        resp.status,
        status,
        "for {:?}",
        String::from_utf8_lossy(request)
    );
}

#[test]
fn http11_without_host_is_400() {
    check_refused(b"GET /hello.txt HTTP/1.1\r\n\r\n", 400);
}

#[test]
fn transfer_encoding_with_content_length_is_400() {
    check_refused(
        b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        400,
    );
}

#[test]
fn two_different_content_lengths_are_400() {
    check_refused(
        b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        400,
    );
}

#[test]
fn a_request_line_above_8_kib_is_414() {
    let request = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9 * 1024));
    check_refused(request.as_bytes(), 414);
}

#[test]
fn a_header_section_above_8_kib_is_431() {
    let request = format!(
        "GET /hello.txt HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(9 * 1024)
    );
    check_refused(request.as_bytes(), 431);
}

#[test]
fn a_12_kib_header_is_accepted_with_a_16k_limit() {
    let root = Root::new();
    let server = Server::start_with_flags(&root, &["--max-header-size", "16k"]);
    let headers = format!("X-Big: {}\r\n", "a".repeat(12 * 1024));
    let resp = get(server.port(), "/hello.txt", &headers);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"hello, world\n");
}

#[test]
fn a_garbage_request_line_is_400() {
    check_refused(b"GARBAGE\r\nHost: x\r\n\r\n", 400);
}

#[test]
fn a_bare_cr_is_400() {
    check_refused(b"GET /hello.txt HTTP/1.1\r\nHost: x\rX-A: b\r\n\r\n", 400);
}

#[test]
fn obs_fold_is_400() {
    check_refused(
        b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nX-A: b\r\n  c\r\n\r\n",
        400,
    );
}

#[test]
fn whitespace_before_the_colon_is_400() {
    check_refused(b"GET /hello.txt HTTP/1.1\r\nHost : x\r\n\r\n", 400);
}

#[test]
fn http_2_0_is_505() {
    check_refused(b"GET /hello.txt HTTP/2.0\r\nHost: x\r\n\r\n", 505);
}

#[test]
fn a_content_length_above_the_body_limit_is_413() {
    let root = Root::new();
    let server = Server::start_with_flags(&root, &["--max-body-size", "1k"]);
    let resp = refused(
        &server,
        b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 2048\r\n\r\n",
    );
    assert_eq!(resp.status, 413);
}

#[test]
fn absolute_form_is_served() {
    let root = Root::new();
    let server = Server::start(&root);
    let bytes = exchange(
        server.port(),
        b"GET http://x/hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let all = parse_all(&bytes);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].status, 200);
    assert_eq!(all[0].body, b"hello, world\n");
    assert_still_serving(&server);
}

/// Sends a batch on one connection and returns (status, body) of every response.
fn pipelined(server: &Server, batch: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let mut stream = server.connect();
    stream.write_all(batch).unwrap();
    let bytes = read_until_closed(&mut stream, CLOSE_LIMIT);
    parse_all(&bytes)
        .into_iter()
        .map(|r| (r.status, r.body))
        .collect()
}

#[test]
fn a_get_body_framed_by_content_length_is_discarded() {
    let root = Root::new();
    root.write("a.txt", b"AAAA");
    let server = Server::start(&root);
    // The body looks like a request: answering it would add a 404.
    let body = "GET /nope HTTP/1.1\r\n\r\n";
    let batch = format!(
        "GET /hello.txt HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}\
         GET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let got = pipelined(&server, batch.as_bytes());
    assert_eq!(
        got,
        [(200, b"hello, world\n".to_vec()), (200, b"AAAA".to_vec())]
    );
    assert_still_serving(&server);
}

#[test]
fn a_chunked_body_is_discarded() {
    let root = Root::new();
    root.write("a.txt", b"AAAA");
    let server = Server::start(&root);
    let chunk = "GET /nope HTTP/1.1\r\n\r\n";
    let batch = format!(
        "GET /hello.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
         {:x}\r\n{chunk}\r\n3\r\nabc\r\n0\r\n\r\n\
         GET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        chunk.len()
    );
    let got = pipelined(&server, batch.as_bytes());
    assert_eq!(
        got,
        [(200, b"hello, world\n".to_vec()), (200, b"AAAA".to_vec())]
    );
    assert_still_serving(&server);
}

#[test]
fn a_request_written_one_byte_at_a_time_is_served() {
    let root = Root::new();
    let server = Server::start(&root);
    let mut stream = connect(server.port());
    stream.set_nodelay(true).unwrap();
    for &byte in b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" {
        stream.write_all(&[byte]).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    let bytes = read_until_closed(&mut stream, CLOSE_LIMIT);
    let all = parse_all(&bytes);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].status, 200);
    assert_eq!(all[0].body, b"hello, world\n");
}

#[test]
fn a_hundred_pipelined_requests_get_a_hundred_responses_in_order() {
    let root = Root::new();
    for i in 0..10 {
        root.write(&format!("n{i}.txt"), format!("file {i}").as_bytes());
    }
    let server = Server::start(&root);
    let mut batch = String::new();
    for i in 0..100 {
        let close = if i == 99 { "Connection: close\r\n" } else { "" };
        batch.push_str(&format!(
            "GET /n{}.txt HTTP/1.1\r\nHost: x\r\n{close}\r\n",
            i % 10
        ));
    }
    let got = pipelined(&server, batch.as_bytes());
    let expected: Vec<(u16, Vec<u8>)> = (0..100)
        .map(|i| (200, format!("file {}", i % 10).into_bytes()))
        .collect();
    assert_eq!(got, expected);
}

/// RFC 9110 §6.2: a higher minor version is served as the highest one supported.
#[test]
fn http_1_9_is_served_as_1_1() {
    let root = Root::new();
    let server = Server::start(&root);
    let bytes = exchange(
        server.port(),
        b"GET /hello.txt HTTP/1.9\r\nHost: x\r\n\r\nGET /hello.txt HTTP/1.2\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let all = parse_all(&bytes);
    assert_eq!(all.len(), 2, "{:?}", String::from_utf8_lossy(&bytes));
    for resp in &all {
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body, b"hello, world\n");
    }
    // The first kept the connection open: keep-alive, as for 1.1.
    assert_eq!(all[0].header("Connection"), None);
}

/// Sends `request` and returns the status of every response before the server closed.
fn statuses_until_closed(server: &Server, request: &[u8]) -> Vec<u16> {
    let mut stream = server.connect();
    stream.write_all(request).unwrap();
    let bytes = read_until_closed(&mut stream, CLOSE_LIMIT);
    parse_all(&bytes).iter().map(|r| r.status).collect()
}

/// A body found malformed after its request was answered gets no second answer: the
/// connection closes after the one already sent. (A second one would be taken by a client or
/// proxy reusing the connection as the answer to its next request.)
#[test]
fn a_malformed_chunked_body_gets_no_second_response() {
    let root = Root::new();
    let server = Server::start_with_flags(&root, &["--max-body-size", "1k"]);
    let bodies: &[&[u8]] = &[
        b"-1\r\nabc\r\n0\r\n\r\n",
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b" 5\r\nhello\r\n0\r\n\r\n",
        b"zz\r\nhello\r\n0\r\n\r\n",
        b"-5\r\nhello\r\n0\r\n\r\n",
        b"ffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
        b"801\r\nhello\r\n0\r\n\r\n",
        b"3\r\nabcdef\r\n0\r\n\r\n",
        b"3\r\nabc0\r\n\r\n",
        b"3;a\rb\r\nabc\r\n0\r\n\r\n",
        b"3\nabc\n0\n\n",
    ];
    for (method, status) in [("GET", 200), ("POST", 405)] {
        for body in bodies {
            let mut request = format!(
                "{method} /hello.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            .into_bytes();
            request.extend_from_slice(body);
            request.extend_from_slice(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n");
            assert_eq!(
                statuses_until_closed(&server, &request),
                [status],
                "{:?}",
                String::from_utf8_lossy(&request)
            );
        }
    }
    assert_still_serving(&server);
}
