//! The access log: one line per response, in the combined log format (nginx's and Apache's
//! default) or as JSON lines.
//!
//! Owns the two line formats (pure functions of an [`Entry`] and the time), each worker's
//! [`Recorder`] and the writer thread. A worker appends lines to its own buffer and hands the
//! buffer, whole, to the writer at least once a second, when it grows past 64 KiB, and when the
//! worker stops: lines of different workers never interleave, no line is split, and a worker
//! never waits for a disk. If the writer falls behind by more than [`MAX_PENDING`] bytes of a
//! worker's lines, that worker drops lines and counts them rather than block. Nothing here
//! runs while the log is off.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

use crate::http::{Request, Status, Version};

/// A worker's buffer goes to the writer when it holds this much.
const FLUSH_AT: usize = 64 * 1024;
/// Most bytes of lines a worker keeps while the writer is behind; beyond, lines are dropped.
pub const MAX_PENDING: usize = 1024 * 1024;
/// Buffers in flight to the writer thread.
const CHANNEL_DEPTH: usize = 64;

/// Where the log goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Off,
    Stderr,
    File(PathBuf),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Off => f.write_str("off"),
            Target::Stderr => f.write_str("stderr"),
            Target::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// How a line looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `remote - - [time] "request" status bytes "referer" "user-agent"`.
    Combined,
    /// One JSON object per line, with the request's duration and the worker.
    Json,
}

/// What a line says about one response.
pub struct Entry<'a> {
    /// The client's address, when the socket still knows it.
    pub peer: Option<SocketAddr>,
    /// The request, or None when its head was refused before it could be read.
    pub request: Option<&'a Request<'a>>,
    pub status: Status,
    /// Bytes of the response body (0 for HEAD and for statuses without content).
    pub bytes: u64,
    /// From the request's first byte to its response being queued.
    pub duration: Duration,
}

/// One worker's side of the log.
pub struct Recorder {
    format: Format,
    worker: usize,
    buf: Vec<u8>,
    sink: Sender<Vec<u8>>,
    /// Lines dropped since the last [`Recorder::take_dropped`] because the writer was behind.
    dropped: u64,
    /// The second the time strings below show, and the strings.
    second: u64,
    clf_time: String,
    iso_time: String,
}

impl Recorder {
    pub fn new(format: Format, worker: usize, sink: Sender<Vec<u8>>) -> Recorder {
        Recorder {
            format,
            worker,
            buf: Vec::new(),
            sink,
            dropped: 0,
            second: u64::MAX,
            clf_time: String::new(),
            iso_time: String::new(),
        }
    }

    /// Appends the line for `entry`; `now_secs` is the wall clock in whole seconds.
    pub fn record(&mut self, entry: &Entry<'_>, now_secs: u64) {
        if self.buf.len() >= MAX_PENDING {
            self.flush();
            if self.buf.len() >= MAX_PENDING {
                self.dropped += 1;
                return;
            }
        }
        if now_secs != self.second {
            self.second = now_secs;
            self.clf_time = clf_time(now_secs);
            self.iso_time = iso_time(now_secs);
        }
        match self.format {
            Format::Combined => write_combined(&mut self.buf, entry, &self.clf_time),
            Format::Json => write_json(&mut self.buf, entry, &self.iso_time, self.worker),
        }
        if self.buf.len() >= FLUSH_AT {
            self.flush();
        }
    }

    /// Hands the buffered lines to the writer, unless it is behind (they wait for the next
    /// flush then).
    pub fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        match self.sink.try_send(std::mem::take(&mut self.buf)) {
            Ok(()) => {}
            Err(TrySendError::Full(lines)) => self.buf = lines,
            // The writer is gone (its file failed): nothing can be logged any more.
            Err(TrySendError::Disconnected(lines)) => {
                self.dropped += lines.iter().filter(|&&b| b == b'\n').count() as u64;
            }
        }
    }

    /// Lines dropped since the last call.
    pub fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }
}

/// The writer thread, where the workers send it their lines, and the flag that makes it open
/// its file again (SIGUSR1, after logrotate moved the file away).
pub struct Writer {
    pub sink: Sender<Vec<u8>>,
    pub thread: JoinHandle<()>,
    pub reopen: Arc<AtomicBool>,
}

impl Drop for Recorder {
    /// The worker is ending: what it still holds waits for room in the channel (the writer
    /// runs until every worker has ended), so no line is lost at shutdown.
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            let _ = self.sink.send(std::mem::take(&mut self.buf));
        }
    }
}

/// Opens the target and starts the thread that writes what the workers hand over, in the
/// order they hand it; the thread ends once every [`Sender`] is gone. The file is opened for
/// appending (created if missing), so logrotate's `copytruncate` and moving it both work.
pub fn spawn_writer(target: &Target) -> io::Result<Option<Writer>> {
    let out: Box<dyn Write + Send> = match target {
        Target::Off => return Ok(None),
        Target::Stderr => Box::new(io::stderr()),
        Target::File(path) => Box::new(open(path)?),
    };
    let path = match target {
        Target::File(path) => Some(path.clone()),
        _ => None,
    };
    let (sink, lines) = bounded(CHANNEL_DEPTH);
    let reopen = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&reopen);
    let thread = std::thread::Builder::new()
        .name("percore-log".to_owned())
        .spawn(move || write_all(out, path, &flag, lines))?;
    Ok(Some(Writer {
        sink,
        thread,
        reopen,
    }))
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn write_all(
    mut out: Box<dyn Write + Send>,
    path: Option<PathBuf>,
    reopen: &AtomicBool,
    lines: Receiver<Vec<u8>>,
) {
    let mut failed = false;
    for chunk in lines {
        // Asked to reopen: the next lines go to a file of the same name, created if missing.
        if reopen.swap(false, Ordering::Relaxed) {
            if let Some(path) = &path {
                let _ = out.flush();
                match open(path) {
                    Ok(file) => {
                        out = Box::new(file);
                        failed = false;
                    }
                    Err(e) => error!("access log: cannot reopen {}: {e}", path.display()),
                }
            }
        }
        // One write per chunk of whole lines: with O_APPEND, lines from this process and any
        // other writer of the file never split each other.
        if let Err(e) = out.write_all(&chunk) {
            if !failed {
                error!("access log: {e}; lines are being lost");
                failed = true;
            }
        }
    }
    let _ = out.flush();
}

/// Appends `remote - - [time] "request" status bytes "referer" "user-agent"` and a newline.
pub fn write_combined(out: &mut Vec<u8>, entry: &Entry<'_>, time: &str) {
    match entry.peer {
        Some(peer) => out.extend_from_slice(peer.ip().to_string().as_bytes()),
        None => out.push(b'-'),
    }
    out.extend_from_slice(b" - - [");
    out.extend_from_slice(time.as_bytes());
    out.extend_from_slice(b"] \"");
    match entry.request {
        Some(req) => {
            escape_clf(out, req.method_name);
            out.push(b' ');
            escape_clf(out, req.target);
            out.extend_from_slice(version_text(req.version).as_bytes());
        }
        None => out.push(b'-'),
    }
    out.extend_from_slice(b"\" ");
    out.extend_from_slice(itoa::Buffer::new().format(entry.status.code()).as_bytes());
    out.push(b' ');
    out.extend_from_slice(itoa::Buffer::new().format(entry.bytes).as_bytes());
    for name in ["referer", "user-agent"] {
        out.extend_from_slice(b" \"");
        match entry.request.and_then(|req| req.header(name)) {
            Some(value) => escape_clf(out, value),
            None => out.push(b'-'),
        }
        out.push(b'"');
    }
    out.push(b'\n');
}

/// Appends one JSON object and a newline.
pub fn write_json(out: &mut Vec<u8>, entry: &Entry<'_>, time: &str, worker: usize) {
    out.extend_from_slice(b"{\"time\":\"");
    out.extend_from_slice(time.as_bytes());
    out.extend_from_slice(b"\",\"remote\":");
    match entry.peer {
        Some(peer) => json_string(out, peer.to_string().as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    let request = entry.request;
    out.extend_from_slice(b",\"method\":");
    json_field(out, request.map(|req| req.method_name));
    out.extend_from_slice(b",\"target\":");
    json_field(out, request.map(|req| req.target));
    out.extend_from_slice(b",\"version\":");
    json_field(
        out,
        request.map(|req| version_text(req.version).trim_start().as_bytes()),
    );
    out.extend_from_slice(b",\"status\":");
    out.extend_from_slice(itoa::Buffer::new().format(entry.status.code()).as_bytes());
    out.extend_from_slice(b",\"bytes\":");
    out.extend_from_slice(itoa::Buffer::new().format(entry.bytes).as_bytes());
    out.extend_from_slice(b",\"referer\":");
    json_field(out, request.and_then(|req| req.header("referer")));
    out.extend_from_slice(b",\"user_agent\":");
    json_field(out, request.and_then(|req| req.header("user-agent")));
    out.extend_from_slice(b",\"duration_us\":");
    let micros = u64::try_from(entry.duration.as_micros()).unwrap_or(u64::MAX);
    out.extend_from_slice(itoa::Buffer::new().format(micros).as_bytes());
    out.extend_from_slice(b",\"worker\":");
    out.extend_from_slice(itoa::Buffer::new().format(worker).as_bytes());
    out.extend_from_slice(b"}\n");
}

fn version_text(version: Version) -> &'static str {
    match version {
        Version::Http10 => " HTTP/1.0",
        Version::Http11 => " HTTP/1.1",
    }
}

/// nginx's escaping for the combined format: `"`, `\` and bytes outside printable ASCII
/// become `\xHH`, so a line is always one line and its quotes always close.
fn escape_clf(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            out.extend_from_slice(format!("\\x{b:02X}").as_bytes());
        } else {
            out.push(b);
        }
    }
}

fn json_field(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        Some(bytes) => json_string(out, bytes),
        None => out.extend_from_slice(b"null"),
    }
}

/// A JSON string. Valid UTF-8 is kept; a value that is not UTF-8 has each byte above 0x7F
/// written as the code point of the same number (`\u00XX`), so the line stays valid JSON.
fn json_string(out: &mut Vec<u8>, bytes: &[u8]) {
    let utf8 = std::str::from_utf8(bytes).is_ok();
    out.push(b'"');
    for &b in bytes {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x00..=0x1f | 0x7f => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            0x80.. if !utf8 => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// `29/Nov/2026:21:20:00 +0000` (the log shows UTC).
fn clf_time(secs: u64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (year, month, day) = crate::log::civil_from_days(secs / 86_400);
    let of_day = secs % 86_400;
    let month = MONTHS
        .get(usize::try_from(month).unwrap_or(1).saturating_sub(1))
        .unwrap_or(&"Jan");
    format!(
        "{day:02}/{month}/{year:04}:{:02}:{:02}:{:02} +0000",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

/// `2026-11-29T21:20:00Z`.
fn iso_time(secs: u64) -> String {
    let time = std::time::UNIX_EPOCH + Duration::from_secs(secs);
    let mut text = crate::log::rfc3339(time);
    // rfc3339 gives milliseconds; the log is per second.
    if let Some(dot) = text.find('.') {
        text.truncate(dot);
        text.push('Z');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{parse_request, Limits, Parse};

    const FIREFOX_GET: &[u8] = b"GET /a%20b?q=\"x\" HTTP/1.1\r\nHost: h\r\nReferer: https://ex.com/\r\nUser-Agent: Mozilla/5.0 \"quoted\" \xc3\xa9\r\n\r\n";

    fn with_request(head: &[u8], check: impl FnOnce(&Request<'_>)) {
        let mut bytes = head.to_vec();
        match parse_request(&mut bytes, &Limits::default()) {
            Ok(Parse::Complete(req)) => check(&req),
            other => panic!("test head does not parse: {other:?}"),
        }
    }

    fn entry<'a>(request: Option<&'a Request<'a>>) -> Entry<'a> {
        Entry {
            peer: "203.0.113.9:51000".parse().ok(),
            request,
            status: Status::OK,
            bytes: 150,
            duration: Duration::from_micros(1234),
        }
    }

    #[test]
    fn combined_format_escapes_quotes_and_non_ascii() {
        with_request(FIREFOX_GET, |req| {
            let mut out = Vec::new();
            write_combined(&mut out, &entry(Some(req)), &clf_time(1_795_984_265));
            assert_eq!(
                String::from_utf8_lossy(&out),
                "203.0.113.9 - - [29/Nov/2026:20:31:05 +0000] \"GET /a%20b?q=\\x22x\\x22 HTTP/1.1\" 200 150 \
                 \"https://ex.com/\" \"Mozilla/5.0 \\x22quoted\\x22 \\xC3\\xA9\"\n"
            );
        });
    }

    #[test]
    fn a_refused_head_is_logged_without_a_request() {
        let mut out = Vec::new();
        let refused = Entry {
            status: Status::BAD_REQUEST,
            ..entry(None)
        };
        write_combined(&mut out, &refused, &clf_time(0));
        assert_eq!(
            String::from_utf8_lossy(&out),
            "203.0.113.9 - - [01/Jan/1970:00:00:00 +0000] \"-\" 400 150 \"-\" \"-\"\n"
        );
    }

    #[test]
    fn json_lines_are_valid_json_whatever_the_bytes() {
        with_request(b"GET /x HTTP/1.0\r\nUser-Agent: a\xffb\\c\r\n\r\n", |req| {
            let mut out = Vec::new();
            write_json(&mut out, &entry(Some(req)), &iso_time(1_795_984_265), 3);
            assert_eq!(
                String::from_utf8_lossy(&out),
                "{\"time\":\"2026-11-29T20:31:05Z\",\"remote\":\"203.0.113.9:51000\",\
                     \"method\":\"GET\",\"target\":\"/x\",\"version\":\"HTTP/1.0\",\"status\":200,\
                     \"bytes\":150,\"referer\":null,\"user_agent\":\"a\\u00ffb\\\\c\",\
                     \"duration_us\":1234,\"worker\":3}\n"
            );
        });
        with_request(FIREFOX_GET, |req| {
            let mut out = Vec::new();
            write_json(&mut out, &entry(Some(req)), "t", 0);
            let text = String::from_utf8(out).unwrap_or_default();
            assert!(
                text.contains("\"user_agent\":\"Mozilla/5.0 \\\"quoted\\\" é\""),
                "{text}"
            );
        });
    }

    #[test]
    fn a_recorder_hands_over_whole_lines_and_drops_when_the_writer_is_behind() {
        let (sink, lines) = bounded(1);
        let mut recorder = Recorder::new(Format::Combined, 0, sink);
        with_request(FIREFOX_GET, |req| {
            recorder.record(&entry(Some(req)), 100);
            recorder.flush();
            let chunk = lines.try_recv().unwrap_or_default();
            assert!(chunk.ends_with(b"\n") && chunk.iter().filter(|&&b| b == b'\n').count() == 1);
            // The channel holds one chunk; while it is full, lines wait in the buffer, up to
            // MAX_PENDING; then they are counted as dropped.
            recorder.record(&entry(Some(req)), 100);
            recorder.flush();
            let mut recorded = 0;
            while recorder.take_dropped() == 0 {
                recorder.record(&entry(Some(req)), 100);
                recorded += 1;
                assert!(recorded < 100_000, "never dropped");
            }
            assert!(recorder.buf.len() >= MAX_PENDING - 200);
            // Once the writer catches up, the kept lines go, whole.
            let _ = lines.try_recv();
            recorder.flush();
            let chunk = lines.try_recv().unwrap_or_default();
            assert!(chunk.len() >= MAX_PENDING - 200 && chunk.ends_with(b"\n"));
        });
    }

    #[test]
    fn times() {
        assert_eq!(clf_time(951_782_400), "29/Feb/2000:00:00:00 +0000");
        assert_eq!(iso_time(951_782_400), "2000-02-29T00:00:00Z");
    }
}
