//! The access log over real sockets: a line per response in the chosen format, written within
//! about a second, and every line written by the time the server has exited.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::{exchange, get, parse_all, read_until_closed, Root, Server};

/// The file's lines once it has `count` of them (workers hand lines over once a second).
fn wait_for_lines(path: &Path, count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= count {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {count} lines after 5 s: {text:?}",
            lines.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn combined_lines_for_every_kind_of_answer() {
    let root = Root::new();
    let log = root.path().join("logs/access.log");
    std::fs::create_dir_all(root.path().join("logs")).unwrap();
    let log_arg = log.to_string_lossy().into_owned();
    let server = Server::start_with_flags(&root, &["--access-log", &log_arg]);
    let port = server.port();
    assert_eq!(
        get(
            port,
            "/hello.txt",
            "Referer: http://r/\r\nUser-Agent: t \"1\"\r\n"
        )
        .status,
        200
    );
    assert_eq!(get(port, "/missing", "").status, 404);
    let head = exchange(
        port,
        b"HEAD /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(head.starts_with(b"HTTP/1.1 200 OK"));
    let mut bad = server.connect();
    bad.write_all(b"GET /hello.txt HTTP/1.1\r\n\r\n").unwrap();
    let refused = parse_all(&read_until_closed(&mut bad, Duration::from_secs(5)));
    assert_eq!(refused[0].status, 400);

    let lines = wait_for_lines(&log, 4);
    assert_eq!(lines.len(), 4, "{lines:#?}");
    let ok = lines
        .iter()
        .find(|l| l.contains("\"GET /hello.txt HTTP/1.1\" 200"))
        .unwrap_or_else(|| panic!("no 200 line: {lines:#?}"));
    // remote - - [dd/Mon/yyyy:hh:mm:ss +0000] "request" status bytes "referer" "user-agent"
    assert!(ok.starts_with("127.0.0.1 - - ["), "{ok}");
    assert!(ok.contains(" +0000] "), "{ok}");
    assert!(
        ok.ends_with("\"GET /hello.txt HTTP/1.1\" 200 13 \"http://r/\" \"t \\x221\\x22\""),
        "{ok}"
    );
    assert!(lines
        .iter()
        .any(|l| l.contains("\"GET /missing HTTP/1.1\" 404 ")));
    // HEAD: the length of what GET would send is not counted as sent.
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"HEAD /hello.txt HTTP/1.1\" 200 0 ")),
        "{lines:#?}"
    );
    // A refused head has no request line to show.
    assert!(lines.iter().any(|l| l.contains("\"-\" 400 ")), "{lines:#?}");
}

#[test]
fn json_lines_parse_and_are_all_written_at_shutdown() {
    let root = Root::new();
    let log = root.path().join("access.json");
    let log_arg = log.to_string_lossy().into_owned();
    let mut server = Server::start_with_flags(
        &root,
        &["--access-log", &log_arg, "--access-log-format", "json"],
    );
    let port = server.port();
    let requests = 50;
    let mut batch = Vec::new();
    for i in 0..requests {
        let close = if i == requests - 1 {
            "Connection: close\r\n"
        } else {
            ""
        };
        batch.extend_from_slice(
            format!(
                "GET /hello.txt?n={i} HTTP/1.1\r\nHost: x\r\nUser-Agent: caf\u{e9}\r\n{close}\r\n"
            )
            .as_bytes(),
        );
    }
    assert_eq!(parse_all(&exchange(port, &batch)).len(), requests);
    // Stop at once: the lines still buffered in the worker must reach the file all the same.
    server.terminate();
    assert!(server
        .wait_exit(Duration::from_secs(10))
        .is_some_and(|s| s.success()));
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), requests, "{text}");
    for (i, line) in lines.iter().enumerate() {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("line {i} is not JSON ({e}): {line}"));
        assert_eq!(value["status"], 200, "{line}");
        assert_eq!(value["method"], "GET", "{line}");
        assert_eq!(value["target"], format!("/hello.txt?n={i}"), "{line}");
        assert_eq!(value["version"], "HTTP/1.1", "{line}");
        assert_eq!(value["bytes"], 13, "{line}");
        assert_eq!(value["user_agent"], "caf\u{e9}", "{line}");
        assert_eq!(value["worker"], 0, "{line}");
        assert!(value["duration_us"].is_u64(), "{line}");
        assert!(
            value["remote"]
                .as_str()
                .is_some_and(|r| r.starts_with("127.0.0.1:")),
            "{line}"
        );
    }
}

#[test]
fn an_access_log_that_cannot_be_opened_stops_the_start() {
    let root = Root::new();
    let missing = root.path().join("no/such/dir/access.log");
    let output = std::process::Command::new(crate::harness::bin())
        .args(["--bind", "127.0.0.1", "--admin", "off", "--ports"])
        .arg(crate::harness::free_port().to_string())
        .arg("--root")
        .arg(root.path())
        .arg("--access-log")
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot open the access log {}", missing.display())),
        "{stderr}"
    );
}

/// logrotate's `create` mode: the file is moved away, SIGUSR1 asks for a new one, and the
/// next lines go there while the old lines stay in the moved file.
#[test]
fn sigusr1_reopens_the_file_after_it_was_moved() {
    let root = Root::new();
    let log = root.path().join("access.log");
    let rotated = root.path().join("access.log.1");
    let log_arg = log.to_string_lossy().into_owned();
    let server = Server::start_with_flags(&root, &["--access-log", &log_arg]);
    assert_eq!(get(server.port(), "/hello.txt?before", "").status, 200);
    wait_for_lines(&log, 1);
    std::fs::rename(&log, &rotated).unwrap();
    server.signal("USR1");
    server.wait_for_log("SIGUSR1: reopening the access log", Duration::from_secs(5));
    assert_eq!(get(server.port(), "/hello.txt?after", "").status, 200);
    let lines = wait_for_lines(&log, 1);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("GET /hello.txt?after "), "{lines:#?}");
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert_eq!(old.lines().count(), 1, "{old}");
    assert!(old.contains("GET /hello.txt?before "), "{old}");
}
