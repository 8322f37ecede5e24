//! The `wsload` benchmark client against the real server: every echo verified, exit status 0
//! only when nothing went wrong. The benches trust its numbers, so its framing, masking,
//! partial-frame carry-over and compression paths are exercised here.

use std::process::Command;

use harness::tls::{self, TlsFiles};
use harness::{Root, Server};

/// The percore package's test harness: it starts the real server (which a `cargo test` at the
/// workspace root builds) on free loopback ports. These tests use a few of its helpers.
#[allow(dead_code)]
#[path = "../../../tests/it/harness/mod.rs"]
mod harness;

const WSLOAD: &str = env!("CARGO_BIN_EXE_wsload");

/// Runs wsload against `server` and returns its report; fails the test unless it exits 0.
fn wsload(server: &Server, args: &[&str]) -> String {
    wsload_on(server.port(), args)
}

/// Runs wsload against `port` and returns its report; fails the test unless it exits 0.
fn wsload_on(port: u16, args: &[&str]) -> String {
    let port = port.to_string();
    let output = Command::new(WSLOAD)
        .args(["--ports", &port])
        .args(args)
        .output()
        .expect("run wsload");
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "wsload {args:?} failed: {report}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    report
}

fn messages(report: &str) -> u64 {
    report
        .lines()
        .find_map(|line| line.strip_prefix("messages: "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no message count in {report}"))
}

#[test]
fn pipelined_messages_larger_than_one_read_are_all_echoed() {
    let root = Root::new();
    let server = Server::start(&root);
    // 70,000 B frames × 4 in flight: reads end mid-frame, so the carry-over path runs.
    let report = wsload(
        &server,
        &[
            "-c",
            "3",
            "--size",
            "70000",
            "--pipeline",
            "4",
            "--messages",
            "300",
        ],
    );
    assert_eq!(messages(&report), 300, "{report}");
}

#[test]
fn small_text_and_compressed_messages_are_all_echoed() {
    let root = Root::new();
    let server = Server::start(&root);
    let report = wsload(
        &server,
        &[
            "-c",
            "4",
            "--size",
            "1",
            "--text",
            "--pipeline",
            "16",
            "--messages",
            "4000",
        ],
    );
    assert_eq!(messages(&report), 4000, "{report}");
    let report = wsload(
        &server,
        &[
            "-c",
            "2",
            "--size",
            "5000",
            "--deflate",
            "--pipeline",
            "8",
            "--messages",
            "500",
        ],
    );
    assert_eq!(messages(&report), 500, "{report}");
}

/// Over TLS (`--tls`, for the benches' wss row): small pipelined messages, messages larger
/// than a TLS record, and compressed ones, every echo verified and every close clean, on
/// more connections than one read turn serves.
#[test]
fn over_tls_every_message_is_echoed() {
    let root = Root::new();
    let tls = TlsFiles::new();
    let server = tls::start(&root, &tls, &[]);
    let port = tls::tls_port(&server);
    for (args, count) in [
        (
            &[
                "-c",
                "20",
                "--size",
                "64",
                "--pipeline",
                "16",
                "--messages",
                "20000",
            ][..],
            20_000,
        ),
        (
            &[
                "-c",
                "3",
                "--size",
                "70000",
                "--pipeline",
                "4",
                "--messages",
                "300",
            ][..],
            300,
        ),
        (
            &[
                "-c",
                "2",
                "--size",
                "5000",
                "--deflate",
                "--messages",
                "500",
            ][..],
            500,
        ),
    ] {
        let report = wsload_on(port, &[args, &["--tls"]].concat());
        assert_eq!(messages(&report), count, "{report}");
        assert!(report.contains("close codes: 1000 x"), "{report}");
    }
}

#[test]
fn a_server_that_is_not_websocket_fails_the_run() {
    let root = Root::new();
    // Any path accepts an upgrade by default; limited to `/ws`, `/index.html` answers 404 as a
    // server without WebSocket would.
    let server = Server::start_with_flags(&root, &["--ws-paths", "/ws"]);
    let port = server.port().to_string();
    let output = Command::new(WSLOAD)
        .args(["--ports", &port, "--path", "/index.html", "-c", "1"])
        .args(["--messages", "10"])
        .output()
        .expect("run wsload");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "a refused handshake must not look like success"
    );
    assert!(
        stderr.contains("status Some(404) instead of 101"),
        "wsload names the refusal: {stderr}"
    );
}
