//! A client's byte stream driven through the connection state machine the worker runs
//! (`percore::conn::Conn`), over the in-memory peer: arriving in pieces, with a client that
//! reads slowly, then half-closes, then goes silent until every deadline has passed.
//!
//! Checks the promises, not just the absence of panics: every answer the server writes is a
//! well-formed response, they come in the order of the requests the responder saw, and at most
//! one more follows them (a refusal, a 408 or a 101): exactly one response per request. The
//! responder checks the static-file decisions on each request: a resolved path stays under the
//! root, a range stays inside the file.
#![no_main]

use std::borrow::Cow;
use std::fs::File;
use std::rc::Rc;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use percore::conn::memory::Peer;
use percore::conn::{Conn, Refusal, Respond, Shared, Timeouts, Verdict};
use percore::files::{self, FileStamp, Outcome, Preconditions, TargetOptions};
use percore::http::{Body, FileRegion, Limits, Method, Request, Response, Status};
use percore::ws::{self, WsConfig};

const TIMEOUTS: Timeouts = Timeouts {
    header: Duration::from_secs(10),
    keep_alive: Duration::from_secs(60),
    send: Duration::from_secs(30),
    linger: Duration::from_secs(5),
    ws_ping_interval: Duration::from_secs(20),
    ws_ping_timeout: Duration::from_secs(15),
    ws_close: Duration::from_secs(5),
};

/// Answers from the request path, like the static files do, and remembers every answer.
struct App {
    knobs: u8,
    file: Rc<File>,
    /// (status, answered a HEAD) of every response, in order.
    answered: Vec<(u16, bool)>,
}

impl Respond for App {
    fn respond(&mut self, req: &Request<'_>, _now_secs: u64) -> Response<'_> {
        check_decisions(req, self.knobs);
        let head = req.method == Method::Head;
        let response = match (req.method, req.path.last()) {
            (Method::Other, _) => Refusal::MethodNotAllowed.response(),
            (_, Some(b'f')) => Response {
                status: Status::OK,
                lines: b"",
                extra_lines: b"",
                field: None,
                body: Body::File(FileRegion {
                    file: Rc::clone(&self.file),
                    offset: 0,
                    end: 5000,
                }),
            },
            (_, Some(b'm')) => Refusal::NotFound.response(),
            (_, Some(b'n')) => Response {
                status: Status::NOT_MODIFIED,
                lines: b"ETag: \"x\"\r\n",
                extra_lines: b"",
                field: None,
                body: Body::None,
            },
            _ => Response {
                status: Status::OK,
                lines: b"",
                extra_lines: b"",
                field: None,
                body: Body::Bytes(Cow::Owned(req.path.to_vec())),
            },
        };
        self.answered.push((response.status.code(), head));
        response
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&[knobs, split, window], input)) = data.split_first_chunk::<3>() else {
        return;
    };
    // Small limits reach the 414/431/413 paths with short inputs.
    let limits = Limits {
        max_request_line: 32 + usize::from(knobs & 0x0f) * 32,
        max_head: 64 + usize::from(knobs & 0x0f) * 64,
        max_headers: 1 + usize::from(knobs >> 4),
        max_body: 256,
    };
    let ws_config = WsConfig {
        max_message: 1024,
        max_frame: 1024,
        ..WsConfig::default()
    };
    let mut shared = Shared::new(limits, ws_config, TIMEOUTS);
    shared.date = *b"Sun, 06 Nov 1994 08:49:37 GMT";
    shared.read_budget = 64 + usize::from(split) * 16;
    let mut now = Instant::now();
    let Ok(null) = File::open("/dev/null") else {
        return;
    };
    let mut app = App {
        knobs,
        file: Rc::new(null),
        answered: Vec::new(),
    };
    let mut conn = Conn::new(now, &shared.timeouts);
    let mut peer = Peer::new(1 + usize::from(split & 0x1f));
    peer.window = (window != 0).then(|| usize::from(window) * 8);
    let mut open = true;
    let drive = |conn: &mut Conn, peer: &mut Peer, app: &mut App, shared: &mut Shared, now| {
        for _ in 0..10_000 {
            let done = conn.drive(peer, app, shared, now);
            if done.verdict == Verdict::Close {
                return false;
            }
            if !done.more {
                return true;
            }
        }
        panic!("the connection never stopped asking to be driven");
    };
    // The stream arrives in pieces; the client reads slowly, then everything; then it closes.
    for piece in input.chunks(1 + usize::from(split)) {
        peer.send(piece);
        conn.set_readable();
        open = drive(&mut conn, &mut peer, &mut app, &mut shared, now);
        if !open {
            break;
        }
    }
    if open {
        peer.window = None;
        conn.set_readable();
        open = drive(&mut conn, &mut peer, &mut app, &mut shared, now);
    }
    // Silence: every deadline passes in turn, and each must lie ahead and end somewhere.
    let mut expiries = 0;
    while open {
        let deadline = conn.deadline();
        assert!(deadline.at >= now, "a deadline in the past: {deadline:?}");
        now = deadline.at;
        open = conn.expire(&mut peer, &mut shared, now) == Verdict::Open;
        expiries += 1;
        assert!(expiries < 10, "a connection that never times out");
    }
    check_responses(&peer.received, &app.answered);
});

/// The server's output is the responses the responder gave, in order, plus at most one more;
/// after a 101 it is WebSocket frames.
fn check_responses(mut out: &[u8], answered: &[(u16, bool)]) {
    let mut seen = 0;
    while !out.is_empty() {
        let end = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("a partial head after {seen} responses"));
        let head = std::str::from_utf8(&out[..end]).expect("a head in ASCII");
        assert!(head.starts_with("HTTP/1.1 "), "{head:?}");
        let status: u16 = head[9..12].parse().expect("a status code");
        out = &out[end + 4..];
        let expected = answered.get(seen);
        if let Some(&(code, _)) = expected {
            assert_eq!(status, code, "response {seen} is not the responder's");
        } else {
            // The one extra: a refusal, a 408 or an upgrade, and nothing after it but frames.
            assert!(
                status == 101 || status >= 400,
                "an extra response {status} after {seen}"
            );
            if status == 101 {
                return;
            }
        }
        let head_only = expected.is_some_and(|&(_, head)| head);
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .map_or(0, |v| v.parse().expect("a length"));
        let mut left = if head_only { 0 } else { length };
        while left > 0 {
            if let Some(rest) = out.strip_prefix(b"<file ") {
                let close = rest.iter().position(|&b| b == b'>').expect("a file marker");
                let marker = std::str::from_utf8(&rest[..close]).expect("a marker");
                let (start, end) = marker.split_once('-').expect("start-end");
                let n: usize =
                    end.parse::<usize>().expect("end") - start.parse::<usize>().expect("start");
                left = left
                    .checked_sub(n)
                    .expect("a file region longer than announced");
                out = &rest[close + 1..];
            } else {
                let n = left.min(out.len());
                assert!(n > 0, "a body cut short");
                out = &out[n..];
                left -= n;
            }
        }
        seen += 1;
        if expected.is_none() {
            assert!(out.is_empty(), "bytes after the last response");
        }
    }
    assert!(
        seen >= answered.len(),
        "{} answers decided, {seen} written",
        answered.len()
    );
}

fn check_decisions(req: &Request<'_>, knobs: u8) {
    let _ = req.headers().count();
    if ws::is_upgrade_request(req) {
        let offers = req
            .headers()
            .filter(|(name, _)| name.eq_ignore_ascii_case(b"sec-websocket-extensions"))
            .map(|(_, value)| value);
        let _ = ws::negotiate(offers);
    }
    let opts = TargetOptions {
        allow_dotfiles: knobs & 1 != 0,
    };
    if let Ok(path) = files::resolve_target(req.path, &opts) {
        check_under_root(path.as_bytes());
        let _ = path.redirect_location(req.query);
        check_under_root(path.join(b"index.html").as_bytes());
    }
    let stamp = FileStamp {
        len: [0, 1, 100, 1 << 40][usize::from(knobs >> 6)],
        mtime_secs: 1_700_000_000,
        mtime_nanos: 0,
    };
    let etag = files::etag(&stamp, None);
    let pre = Preconditions {
        head_or_get: true,
        if_match: req.if_match,
        if_none_match: req.if_none_match,
        if_modified_since: req.if_modified_since,
        if_unmodified_since: req.if_unmodified_since,
        range: req.range,
        if_range: req.if_range,
    };
    let max_ranges = usize::from(knobs >> 1 & 0x1f);
    match files::evaluate(&pre, &stamp, &etag, max_ranges) {
        Outcome::Partial(range) => check_range(range, stamp.len),
        Outcome::Multipart(ranges) => {
            assert!(
                !ranges.is_empty() && ranges.len() <= max_ranges,
                "{ranges:?}"
            );
            for range in ranges {
                check_range(range, stamp.len);
            }
        }
        _ => {}
    }
}

/// SafePath's promise: relative, no NUL, no empty, "." or ".." segment.
fn check_under_root(path: &[u8]) {
    assert!(!path.contains(&0), "NUL in {path:?}");
    if path.is_empty() {
        return;
    }
    for segment in path.split(|&b| b == b'/') {
        assert!(
            !segment.is_empty() && segment != b"." && segment != b"..",
            "unsafe segment in {:?}",
            String::from_utf8_lossy(path)
        );
    }
}

fn check_range(range: files::ByteRange, len: u64) {
    assert!(
        range.start <= range.end && range.end < len,
        "{range:?} of {len}"
    );
}
