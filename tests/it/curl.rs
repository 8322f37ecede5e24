//! The `curl` command-line client against the real server: what users will actually run.

use std::process::{Command, Output};

use crate::harness::{get, patterned, Root, Server};

fn curl(args: &[&str]) -> Output {
    let out = Command::new("curl")
        .args(["--max-time", "30"])
        .args(args)
        .output()
        .expect("running curl (it must be installed)");
    assert!(
        out.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn url(server: &Server, path: &str) -> String {
    format!("http://127.0.0.1:{}{path}", server.port())
}

#[test]
fn a_large_download_is_byte_exact() {
    let root = Root::new();
    let body = patterned(3 * 1024 * 1024 + 17);
    root.write("big.bin", &body);
    let server = Server::start(&root);
    let out_dir = tempfile::tempdir().unwrap();
    let file = out_dir.path().join("big.bin");
    curl(&[
        "-sS",
        "-o",
        file.to_str().unwrap(),
        &url(&server, "/big.bin"),
    ]);
    let got = std::fs::read(&file).unwrap();
    assert_eq!(got.len(), body.len());
    assert!(got == body, "downloaded file differs");
}

#[test]
fn two_urls_reuse_one_connection() {
    let root = Root::new();
    let server = Server::start(&root);
    let hello = url(&server, "/hello.txt");
    let out = curl(&["-sSv", &hello, &hello]);
    assert_eq!(out.stdout, b"hello, world\nhello, world\n");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("left intact"), "{log}");
    assert!(log.contains("Re-using existing"), "{log}");
    assert_eq!(log.matches("Connected to").count(), 1, "{log}");
}

#[test]
fn a_byte_range_gives_ten_bytes() {
    let root = Root::new();
    root.write("digits.txt", b"0123456789abcdef");
    let server = Server::start(&root);
    let out = curl(&["-sS", "-r", "0-9", &url(&server, "/digits.txt")]);
    assert_eq!(out.stdout, b"0123456789");
}

#[test]
fn head_gives_the_headers_only() {
    let root = Root::new();
    let server = Server::start(&root);
    let out = curl(&["-sS", "-I", &url(&server, "/hello.txt")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("\r\nContent-Length: 13\r\n"), "{text}");
    assert!(
        text.contains("\r\nContent-Type: text/plain; charset=utf-8\r\n"),
        "{text}"
    );
    assert!(text.ends_with("\r\n\r\n"), "a body followed: {text}");
}

#[test]
fn a_time_condition_on_an_unchanged_file_gives_304_and_no_body() {
    let root = Root::new();
    let server = Server::start(&root);
    let first = get(server.port(), "/hello.txt", "");
    let date = first.header("Last-Modified").expect("Last-Modified");
    let out = curl(&[
        "-sS",
        "-z",
        date,
        "-w",
        "%{http_code}",
        &url(&server, "/hello.txt"),
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "304");
}

#[test]
fn http_1_0_works() {
    let root = Root::new();
    let server = Server::start(&root);
    let out = curl(&["-sSv", "--http1.0", &url(&server, "/hello.txt")]);
    assert_eq!(out.stdout, b"hello, world\n");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("> GET /hello.txt HTTP/1.0"), "{log}");
}
