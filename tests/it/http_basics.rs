//! Keep-alive, pipelining, HEAD and the everyday statuses, over raw TCP.

use std::io::Write;

use crate::harness::{exchange, get, parse_all, read_response, Root, Server};

#[test]
fn serves_index_and_files_with_nginx_like_headers() {
    let root = Root::new();
    let server = Server::start(&root);
    let resp = get(server.port(), "/", "");
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("Content-Type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(resp.header("Server"), Some("percore"));
    assert!(resp.header("Date").is_some_and(|d| d.ends_with(" GMT")));
    assert!(resp.header("ETag").is_some_and(|e| e.starts_with('"')));
    assert!(resp.header("Last-Modified").is_some());
    assert_eq!(resp.header("Accept-Ranges"), Some("bytes"));
    assert_eq!(
        resp.body,
        std::fs::read(root.path().join("index.html")).unwrap()
    );

    let resp = get(server.port(), "/hello.txt?ignored=1", "");
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(resp.body, b"hello, world\n");
}

#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let root = Root::new();
    let server = Server::start(&root);
    let mut stream = server.connect();
    for _ in 0..5 {
        stream
            .write_all(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let resp = read_response(&mut stream, false);
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("Connection"), None);
        assert_eq!(resp.body, b"hello, world\n");
    }
}

#[test]
fn http10_closes_unless_keep_alive_is_asked_for() {
    let root = Root::new();
    let server = Server::start(&root);
    let bytes = exchange(server.port(), b"GET /hello.txt HTTP/1.0\r\n\r\n");
    let all = parse_all(&bytes);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].header("Connection"), Some("close"));

    let mut stream = server.connect();
    stream
        .write_all(b"GET /hello.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    let resp = read_response(&mut stream, false);
    assert_eq!(resp.header("Connection"), Some("keep-alive"));
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut stream, false).status, 200);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let root = Root::new();
    root.write("a.txt", b"AAAA");
    root.write("b.txt", b"BB");
    let server = Server::start(&root);
    let mut batch = Vec::new();
    for path in ["/a.txt", "/b.txt", "/missing", "/a.txt"] {
        batch.extend_from_slice(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    }
    batch.extend_from_slice(b"GET /b.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let bytes = exchange(server.port(), &batch);
    let all = parse_all(&bytes);
    let statuses: Vec<u16> = all.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 200, 404, 200, 200]);
    let bodies: Vec<&[u8]> = [0, 1, 3, 4].iter().map(|&i| &all[i].body[..]).collect();
    assert_eq!(bodies, [&b"AAAA"[..], b"BB", b"AAAA", b"BB"]);
}

#[test]
fn head_has_the_get_headers_and_no_body() {
    let root = Root::new();
    let server = Server::start(&root);
    let mut stream = server.connect();
    stream
        .write_all(b"HEAD /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let head = read_response(&mut stream, true);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("Content-Length"), Some("13"));
    // The next response must start right after the head: no stray body bytes in between.
    stream
        .write_all(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let get = read_response(&mut stream, false);
    assert_eq!(get.status, 200);
    assert_eq!(get.header("ETag"), head.header("ETag"));
    assert_eq!(get.body, b"hello, world\n");
}

#[test]
fn methods_other_than_get_and_head_get_405_with_allow() {
    let root = Root::new();
    let server = Server::start(&root);
    let bytes = exchange(
        server.port(),
        b"POST /hello.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    );
    let all = parse_all(&bytes);
    assert_eq!(all[0].status, 405);
    assert!(all[0].header("Allow").unwrap().contains("GET"));
}

#[test]
fn missing_file_is_404_and_directory_without_slash_is_301() {
    let root = Root::new();
    root.write("docs/index.html", b"docs");
    let server = Server::start(&root);
    assert_eq!(get(server.port(), "/nope.html", "").status, 404);
    let resp = get(server.port(), "/docs?x=1", "");
    assert_eq!(resp.status, 301);
    assert_eq!(resp.header("Location"), Some("/docs/?x=1"));
    let resp = get(server.port(), "/docs/", "");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"docs");
}

#[test]
fn custom_404_page_is_served_from_the_root() {
    let root = Root::new();
    root.write("404.html", b"<h1>lost</h1>");
    let server = Server::start(&root);
    let resp = get(server.port(), "/nowhere", "");
    assert_eq!(resp.status, 404);
    assert_eq!(resp.body, b"<h1>lost</h1>");
}
