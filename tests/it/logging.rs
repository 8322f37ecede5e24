//! Log lines: an RFC 3339 UTC timestamp first, except when stderr is journald's stream.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::harness::{bin, free_port, Root, Server};

/// Whether `line` starts with `YYYY-MM-DDTHH:MM:SS.mmmZ ` for today (UTC) or the day before
/// (the test may straddle midnight).
fn starts_with_a_timestamp_of_today(line: &str) -> bool {
    let now = SystemTime::now();
    let today = percore::log::rfc3339(now);
    let yesterday = percore::log::rfc3339(now - Duration::from_secs(60));
    let Some(stamp) = line.get(..25) else {
        return false;
    };
    let shape = stamp.bytes().enumerate().all(|(i, b)| match i {
        4 | 7 => b == b'-',
        10 => b == b'T',
        13 | 16 => b == b':',
        19 => b == b'.',
        23 => b == b'Z',
        24 => b == b' ',
        _ => b.is_ascii_digit(),
    });
    shape && (stamp[..10] == today[..10] || stamp[..10] == yesterday[..10])
}

#[test]
fn server_log_lines_start_with_a_utc_timestamp() {
    let root = Root::new();
    let server = Server::start(&root);
    let log = server.log();
    assert!(log.lines().count() >= 2, "{log}");
    for line in log.lines() {
        assert!(starts_with_a_timestamp_of_today(line), "{line:?}");
        assert!(line[25..].starts_with("percore["), "{line:?}");
    }
}

/// Starts percore with stderr on a stream socket, as journald gives a service, and
/// `JOURNAL_STREAM` set to what `journal` makes of that socket's (device, inode); returns its
/// log up to the ready line.
fn log_with_journal_stream(journal: impl Fn(u64, u64) -> String) -> String {
    let root = Root::new();
    for _attempt in 0..8 {
        let (reader, writer) = UnixStream::pair().expect("socketpair");
        let writer = std::os::fd::OwnedFd::from(writer);
        let meta = std::fs::File::from(writer.try_clone().expect("dup"))
            .metadata()
            .expect("fstat of the socket");
        let port = free_port().to_string();
        let child = Command::new(bin())
            .args(["--bind", "127.0.0.1", "--workers", "1", "--admin", "off"])
            .args(["--ports", &port, "--root"])
            .arg(root.path())
            .env("JOURNAL_STREAM", journal(meta.dev(), meta.ino()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(writer)
            .spawn()
            .expect("spawning percore");
        let mut child = KillOnDrop(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut log = String::new();
        for line in BufReader::new(reader).lines() {
            let line = line.expect("reading the log");
            log.push_str(&line);
            log.push('\n');
            if line.contains("ready: serving") || Instant::now() > deadline {
                break;
            }
        }
        let _ = child.0.kill();
        if log.contains("ready: serving") {
            return log;
        }
        assert!(log.contains("cannot listen"), "no ready line:\n{log}");
    }
    panic!("percore could not bind a free port");
}

#[test]
fn no_timestamp_when_stderr_is_the_journal_stream() {
    let log = log_with_journal_stream(|dev, ino| format!("{dev}:{ino}"));
    for line in log.lines() {
        assert!(line.starts_with("percore["), "{line:?}");
    }
}

/// A child whose stderr was redirected still inherits `JOURNAL_STREAM`: it must not count.
#[test]
fn a_journal_stream_naming_another_file_keeps_the_timestamp() {
    let log = log_with_journal_stream(|dev, ino| format!("{dev}:{}", ino + 1));
    for line in log.lines() {
        assert!(starts_with_a_timestamp_of_today(line), "{line:?}");
    }
}

/// Kills a server started by hand when the test ends, passed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
