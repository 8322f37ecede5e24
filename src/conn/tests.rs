//! Connection sequences over the in-memory peer: whatever order and split the bytes arrive
//! in, every request gets exactly one response, bodies are skipped, and each phase ends at its
//! deadline.

use std::borrow::Cow;
use std::fs::File;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::memory::Peer;
use super::*;
use crate::http::{Body, FileRegion, Status};

const DATE: &[u8; 29] = b"Sun, 06 Nov 1994 08:49:37 GMT";
const BIG: u64 = 100_000;

const TIMEOUTS: Timeouts = Timeouts {
    header: Duration::from_secs(10),
    keep_alive: Duration::from_secs(60),
    send: Duration::from_secs(30),
    linger: Duration::from_secs(5),
    ws_ping_interval: Duration::from_secs(20),
    ws_ping_timeout: Duration::from_secs(15),
    ws_close: Duration::from_secs(5),
};

/// Answers `/big` with a file region, `/missing` with 404, other methods than GET and HEAD
/// with 405, and every other path with its own bytes as the body.
struct App {
    big: Rc<File>,
}

impl Respond for App {
    fn respond(&mut self, req: &Request<'_>, _now_secs: u64) -> Response<'_> {
        if !matches!(req.method, Method::Get | Method::Head) {
            return Refusal::MethodNotAllowed
                .response()
                .with_field("Allow", &b"GET, HEAD"[..]);
        }
        match req.path {
            b"/big" => Response {
                status: Status::OK,
                lines: b"",
                extra_lines: b"",
                field: None,
                body: Body::File(FileRegion {
                    file: Rc::clone(&self.big),
                    offset: 0,
                    end: BIG,
                }),
            },
            b"/missing" => Refusal::NotFound.response(),
            path => Response {
                status: Status::OK,
                lines: b"",
                extra_lines: b"",
                field: None,
                body: Body::Bytes(Cow::Owned(path.to_vec())),
            },
        }
    }
}

/// A connection with its in-memory client.
struct Client {
    conn: Conn,
    peer: Peer,
    app: App,
    shared: Shared,
    now: Instant,
    closed: bool,
}

impl Client {
    fn new() -> Client {
        Client::with(|_| {})
    }

    fn with(adjust: impl FnOnce(&mut Shared)) -> Client {
        let mut shared = Shared::new(http::Limits::default(), WsConfig::default(), TIMEOUTS);
        shared.date = *DATE;
        shared.clock = fixed_clock;
        adjust(&mut shared);
        let now = fixed_clock();
        let big = match File::open("/dev/null") {
            Ok(file) => Rc::new(file),
            Err(e) => panic!("/dev/null: {e}"),
        };
        Client {
            conn: Conn::new(now, &shared.timeouts),
            peer: Peer::new(0),
            app: App { big },
            shared,
            now,
            closed: false,
        }
    }

    /// The client sends `bytes`; the connection is driven until it waits for more.
    fn send(&mut self, bytes: &[u8]) {
        assert!(!self.closed, "sending to a closed connection");
        self.peer.send(bytes);
        self.conn.set_readable();
        self.drive();
    }

    /// The client shuts its sending side.
    fn finish(&mut self) {
        self.peer.closed = true;
        self.conn.set_readable();
        self.drive();
    }

    fn drive(&mut self) {
        while !self.closed {
            let done = self
                .conn
                .drive(&mut self.peer, &mut self.app, &mut self.shared, self.now);
            self.closed = done.verdict == Verdict::Close;
            if !done.more {
                break;
            }
        }
    }

    /// Time moves to the connection's deadline, which then expires; returns its timer.
    fn expire(&mut self) -> Timer {
        let deadline = self.conn.deadline();
        assert!(deadline.at >= self.now, "a deadline in the past");
        self.now = deadline.at;
        let verdict = self.conn.expire(&mut self.peer, &mut self.shared, self.now);
        self.closed = verdict == Verdict::Close;
        deadline.timer
    }

    fn received(&mut self) -> Vec<u8> {
        self.peer.take_received()
    }

    fn responses(&mut self) -> Vec<Answer> {
        parse_responses(&self.received())
    }

    /// The client reads everything, then the connection is driven again.
    fn open_window(&mut self) {
        self.peer.window = None;
        self.conn.set_readable();
        self.drive();
    }
}

/// One instant for every test: only differences between instants matter.
fn fixed_clock() -> Instant {
    use std::sync::OnceLock;
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// One response as the client sees it.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(": ")?;
            n.eq_ignore_ascii_case(name).then_some(v)
        })
    }

    fn closes(&self) -> bool {
        self.header("Connection") == Some("close")
    }
}

/// Splits a byte stream into responses; panics on anything that is not one. A file region
/// arrives as `<file start-end>` markers and counts for its length.
fn parse_responses(bytes: &[u8]) -> Vec<Answer> {
    parse_responses_to(bytes, &[])
}

/// The same, where the answers numbered in `heads` answer HEAD requests (no body follows).
fn parse_responses_to(mut bytes: &[u8], heads: &[usize]) -> Vec<Answer> {
    let mut answers = Vec::new();
    while !bytes.is_empty() {
        let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
            panic!("a partial head: {:?}", String::from_utf8_lossy(bytes));
        };
        let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
        bytes = &bytes[end + 4..];
        let status: u16 = head
            .get(9..12)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("no status line: {head:?}"));
        let mut answer = Answer {
            status,
            head,
            body: Vec::new(),
        };
        let length: usize = answer
            .header("Content-Length")
            .map_or(0, |v| v.parse().unwrap_or_else(|_| panic!("length {v}")));
        let mut left = if heads.contains(&answers.len()) {
            0
        } else {
            length
        };
        while left > 0 {
            if let Some(rest) = bytes.strip_prefix(b"<file ") {
                let close = rest.iter().position(|&b| b == b'>').unwrap_or(rest.len());
                let marker = String::from_utf8_lossy(&rest[..close]).into_owned();
                let (start, end) = marker.split_once('-').unwrap_or(("0", "0"));
                let n = end.parse::<usize>().unwrap_or(0) - start.parse::<usize>().unwrap_or(0);
                answer.body.extend_from_slice(b"<file>");
                left = left
                    .checked_sub(n)
                    .unwrap_or_else(|| panic!("file overrun"));
                bytes = &rest[(close + 1).min(rest.len())..];
            } else {
                let n = left.min(bytes.len());
                assert!(n > 0, "a body cut short: {left} bytes missing");
                answer.body.extend_from_slice(&bytes[..n]);
                bytes = &bytes[n..];
                left -= n;
            }
        }
        answers.push(answer);
    }
    answers
}

/// What a client sees for `input` delivered in `pieces` (each piece its own arrival), and
/// whether the server shut its side and closed.
fn run(pieces: &[&[u8]], client_closes: bool) -> (Vec<u8>, bool, bool) {
    let mut client = Client::new();
    for piece in pieces {
        if client.closed {
            break;
        }
        client.send(piece);
    }
    if client_closes && !client.closed {
        client.finish();
    }
    (client.received(), client.peer.shut, client.closed)
}

/// Delivers `input` whole, then split in two at every byte, then one byte at a time, and
/// checks that the client sees the same bytes every time; returns them, parsed.
fn same_at_every_split(input: &[u8], client_closes: bool) -> (Vec<Answer>, bool, bool) {
    same_at_every_split_to(input, client_closes, &[])
}

/// The same, where the answers numbered in `heads` answer HEAD requests.
fn same_at_every_split_to(
    input: &[u8],
    client_closes: bool,
    heads: &[usize],
) -> (Vec<Answer>, bool, bool) {
    // Whether the server has closed yet may depend on the arrival order (a connection that
    // saw nothing unread closes at once, one that did lingers); what it sent may not.
    let sent = |(bytes, shut, _): (Vec<u8>, bool, bool)| (bytes, shut);
    let whole = run(&[input], client_closes);
    for split in 0..=input.len() {
        let (a, b) = input.split_at(split);
        assert_eq!(
            sent(run(&[a, b], client_closes)),
            sent(whole.clone()),
            "split at {split} of {:?}",
            String::from_utf8_lossy(input)
        );
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(
        sent(run(&bytes, client_closes)),
        sent(whole.clone()),
        "one byte at a time"
    );
    (parse_responses_to(&whole.0, heads), whole.1, whole.2)
}

fn paths(answers: &[Answer]) -> Vec<String> {
    answers
        .iter()
        .map(|a| format!("{} {}", a.status, String::from_utf8_lossy(&a.body)))
        .collect()
}

#[test]
fn keep_alive_series_at_every_split() {
    let input = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\n\r\n";
    let (answers, shut, closed) = same_at_every_split(input, false);
    assert_eq!(paths(&answers), ["200 /a", "200 /b", "200 /c"]);
    assert!(answers.iter().all(|a| !a.closes()));
    assert!(!shut && !closed);
}

#[test]
fn pipelined_requests_with_bodies_between_them() {
    let input = b"POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
GET /one HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5;x=y\r\npedia\r\n0\r\nT: v\r\n\r\n\
HEAD /two HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc\
GET /three HTTP/1.1\r\nHost: x\r\n\r\n";
    let (answers, shut, closed) = same_at_every_split_to(input, false, &[2]);
    assert_eq!(answers.len(), 4, "{answers:?}");
    assert_eq!(answers[0].status, 405);
    assert_eq!(answers[0].header("Allow"), Some("GET, HEAD"));
    assert_eq!(answers[1].body, b"/one");
    // HEAD: the length of what GET would send, and no body.
    assert_eq!(answers[2].header("Content-Length"), Some("4"));
    assert!(answers[2].body.is_empty());
    assert_eq!(answers[3].body, b"/three");
    assert!(!shut && !closed);
}

#[test]
fn head_gets_the_length_and_no_body_of_a_file_either() {
    let (answers, ..) = same_at_every_split_to(
        b"HEAD /big HTTP/1.1\r\nHost: x\r\n\r\nGET /big HTTP/1.1\r\nHost: x\r\n\r\n",
        false,
        &[0],
    );
    assert_eq!(answers.len(), 2);
    assert_eq!(answers[0].header("Content-Length"), Some("100000"));
    assert!(answers[0].body.is_empty());
    assert_eq!(answers[1].body, b"<file>");
}

#[test]
fn connection_close_answers_once_and_closes() {
    let input = b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /not-answered HTTP/1.1\r\nHost: x\r\n\r\n";
    let (answers, shut, closed) = same_at_every_split(input, false);
    assert_eq!(paths(&answers), ["200 /a"]);
    assert!(answers[0].closes());
    // The follower was unread input: the write side is shut and the connection lingers.
    assert!(shut);
    assert!(!closed);
    // Once the client closes too, so does the server.
    let (_, _, closed) = same_at_every_split(input, true);
    assert!(closed);
}

#[test]
fn connection_close_without_followers_closes_at_once() {
    let (answers, shut, closed) = same_at_every_split(
        b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        false,
    );
    assert_eq!(paths(&answers), ["200 /a"]);
    assert!(shut && closed);
}

#[test]
fn http_1_0_closes_unless_asked_to_keep_alive() {
    let (answers, _, closed) = same_at_every_split(b"GET /a HTTP/1.0\r\n\r\n", false);
    assert_eq!(paths(&answers), ["200 /a"]);
    assert!(answers[0].closes() && closed);
    let (answers, _, closed) = same_at_every_split(
        b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n",
        false,
    );
    assert_eq!(paths(&answers), ["200 /a", "200 /b"]);
    assert_eq!(answers[0].header("Connection"), Some("keep-alive"));
    assert!(answers[1].closes() && closed);
}

#[test]
fn a_higher_minor_version_is_served_as_1_1() {
    let (answers, _, closed) = same_at_every_split(
        b"GET /a HTTP/1.9\r\nHost: x\r\n\r\nGET /b HTTP/1.2\r\nHost: x\r\n\r\n",
        false,
    );
    assert_eq!(paths(&answers), ["200 /a", "200 /b"]);
    assert!(answers.iter().all(|a| !a.closes()) && !closed);
    let (answers, _, closed) = same_at_every_split(b"GET /a HTTP/2.0\r\nHost: x\r\n\r\n", false);
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].status, 505);
    assert!(answers[0].closes() && !closed);
}

/// Every malformed body the external checkers sent: the request was answered before its body
/// was read, that answer stays the only one, and the connection closes after it.
#[test]
fn a_bad_body_never_gets_a_second_response() {
    let bodies: &[&[u8]] = &[
        b"-1\r\nabc\r\n0\r\n\r\n",
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b" 5\r\nhello\r\n0\r\n\r\n",
        b"zz\r\nhello\r\n0\r\n\r\n",
        b"-5\r\nhello\r\n0\r\n\r\n",
        b"ffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
        b"100001\r\nhello\r\n0\r\n\r\n",
        b"3\r\nabcdef\r\n0\r\n\r\n",
        b"3\r\nabc0\r\n\r\n",
        b"3;a\rb\r\nabc\r\n0\r\n\r\n",
        b"3\nabc\n0\n\n",
    ];
    for method in ["GET", "POST"] {
        for body in bodies {
            let mut input =
                format!("{method} /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
                    .into_bytes();
            input.extend_from_slice(body);
            input.extend_from_slice(b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n");
            let what = String::from_utf8_lossy(&input).into_owned();
            let (answers, shut, _) = same_at_every_split(&input, false);
            let expected = if method == "GET" { 200 } else { 405 };
            let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
            assert_eq!(statuses, [expected], "{what:?}");
            assert!(shut, "not closed after a bad body: {what:?}");
            let (_, _, closed) = same_at_every_split(&input, true);
            assert!(closed, "{what:?}");
        }
    }
}

#[test]
fn a_body_over_the_limit_is_one_answer_too() {
    // Declared: refused from the head, with 413. Chunked: answered, then closed.
    let (answers, ..) = same_at_every_split(
        b"GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\nabc",
        false,
    );
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].status, 413);
    assert!(answers[0].closes());
    let mut client = Client::with(|shared| shared.limits.max_body = 4);
    client.send(
        b"GET /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    );
    let answers = client.responses();
    assert_eq!(paths(&answers), ["200 /a"]);
    assert!(client.peer.shut);
}

#[test]
fn a_malformed_head_gets_one_answer_and_the_rest_is_ignored() {
    let (answers, shut, _) = same_at_every_split(
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\n\r\n",
        false,
    );
    assert_eq!(
        answers.iter().map(|a| a.status).collect::<Vec<_>>(),
        [200, 400]
    );
    assert!(answers[1].closes() && shut);
}

#[test]
fn an_upgrade_with_a_frame_pipelined_behind_it() {
    let mut input = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        .to_vec();
    let frame = masked_frame(0x1, b"hello");
    input.extend_from_slice(&frame);
    let whole = run(&[&input], false);
    for split in 0..=input.len() {
        let (a, b) = input.split_at(split);
        assert_eq!(run(&[a, b], false), whole, "split at {split}");
    }
    let bytes = whole.0;
    let head_end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4);
    let Some(head_end) = head_end else {
        panic!("no 101: {:?}", String::from_utf8_lossy(&bytes));
    };
    let head = String::from_utf8_lossy(&bytes[..head_end]);
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    assert!(head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    // The echo: an unmasked text frame with the same payload.
    assert_eq!(&bytes[head_end..], b"\x81\x05hello");
}

#[test]
fn a_refused_upgrade_is_answered_once_and_closed() {
    let (answers, shut, _) = same_at_every_split(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n",
        false,
    );
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].status, 426);
    assert_eq!(answers[0].header("Sec-WebSocket-Version"), Some("13"));
    assert!(answers[0].closes() && shut);
}

fn masked_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let key = [1, 2, 3, 4];
    let mut frame = vec![0x80 | opcode];
    match u16::try_from(payload.len()) {
        Ok(len @ 0..=125) => frame.push(0x80 | len as u8),
        Ok(len) => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&len.to_be_bytes());
        }
        Err(_) => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(payload.len() as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&key);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    frame
}

/// An unmasked server frame, as the echo of `payload` reads.
fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = masked_frame(opcode, payload);
    frame[1] &= 0x7f;
    let key_at = frame.len() - payload.len() - 4;
    frame.drain(key_at..key_at + 4);
    frame.truncate(key_at);
    frame.extend_from_slice(payload);
    frame
}

const UPGRADE: &[u8] =
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// What follows the 101 in what the client received.
fn after_101(bytes: &[u8]) -> &[u8] {
    match bytes.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(end) => &bytes[end + 4..],
        None => panic!("no 101: {:?}", String::from_utf8_lossy(bytes)),
    }
}

/// Binary frames wait whole in the input and text is taken as it comes: at every split of
/// the stream, every message is echoed once, whole and in order.
#[test]
fn websocket_messages_at_every_split_are_echoed_once_each() {
    let big: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect();
    let messages = [
        (0x2, &big[..]),
        (0x2, &b"small"[..]),
        (0x1, "κόσμε text".as_bytes()),
        (0x2, &big[..130]),
    ];
    let mut input = UPGRADE.to_vec();
    let mut echoes = Vec::new();
    for (opcode, payload) in messages {
        input.extend_from_slice(&masked_frame(opcode, payload));
        echoes.extend_from_slice(&server_frame(opcode, payload));
    }
    let whole = run(&[&input], false);
    assert_eq!(after_101(&whole.0), &echoes[..]);
    for split in 0..=input.len() {
        let (a, b) = input.split_at(split);
        assert_eq!(run(&[a, b], false), whole, "split at {split}");
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(run(&bytes, false), whole, "one byte at a time");
}

/// A client that stops sending in the middle of a frame holds a buffer the size of what it
/// sent, not a pooled read buffer; the rest of the frame completes the echo.
#[test]
fn a_client_that_stops_mid_frame_holds_what_it_sent() {
    let payload = vec![0x5a; 20_000];
    let frame = masked_frame(0x2, &payload);
    let mut client = Client::new();
    client.send(UPGRADE);
    client.received();
    client.send(&frame[..10_000]);
    assert_eq!(client.received(), b"");
    let held = client.conn.input_capacity();
    assert!((10_000..12_000).contains(&held), "{held} bytes held");
    assert_eq!(client.shared.pool.held().0, 1);
    client.send(&frame[10_000..]);
    assert_eq!(client.received(), server_frame(0x2, &payload));
    assert_eq!(client.conn.holds_buffers(), (false, false));
}

#[test]
fn a_client_that_stops_mid_head_gets_408_at_the_header_deadline() {
    let mut client = Client::new();
    client.send(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHo");
    assert_eq!(paths(&client.responses()), ["200 /a"]);
    // The head began with the answer to /a: its timeout runs from then.
    assert_eq!(
        client.conn.deadline(),
        Deadline {
            timer: Timer::Header,
            at: client.now + TIMEOUTS.header
        }
    );
    assert_eq!(client.expire(), Timer::Header);
    let answers = client.responses();
    assert_eq!(answers.iter().map(|a| a.status).collect::<Vec<_>>(), [408]);
    assert!(answers[0].closes() && client.closed && client.peer.shut);
}

#[test]
fn the_first_request_times_out_from_the_accept() {
    let mut client = Client::new();
    let accepted = client.now;
    client.now += Duration::from_secs(3);
    client.send(b"GET /a HT");
    // Still the deadline set at the accept: a slow head gets no fresh time per byte.
    assert_eq!(client.conn.deadline().at, accepted + TIMEOUTS.header);
    client.now += Duration::from_secs(3);
    client.send(b"TP/1.1\r\n");
    assert_eq!(client.conn.deadline().at, accepted + TIMEOUTS.header);
    assert_eq!(client.expire(), Timer::Header);
    assert_eq!(client.responses()[0].status, 408);
}

#[test]
fn a_client_that_sends_nothing_is_closed_without_an_answer() {
    let mut client = Client::new();
    assert_eq!(client.expire(), Timer::Header);
    assert!(client.closed);
    assert!(client.received().is_empty());
}

#[test]
fn a_client_that_stops_mid_body_is_closed_without_a_second_answer() {
    let mut client = Client::new();
    client.send(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc");
    assert_eq!(client.responses().len(), 1);
    let start = client.now;
    assert_eq!(client.conn.deadline().timer, Timer::Header);
    // Body bytes restart the timer.
    client.now += Duration::from_secs(7);
    client.send(b"de");
    assert_eq!(
        client.conn.deadline().at,
        start + Duration::from_secs(7) + TIMEOUTS.header
    );
    assert_eq!(client.expire(), Timer::Header);
    assert!(client.closed);
    assert!(client.received().is_empty());
}

#[test]
fn an_idle_client_is_closed_at_the_keep_alive_deadline() {
    let mut client = Client::new();
    client.send(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(client.responses().len(), 1);
    assert_eq!(
        client.conn.deadline(),
        Deadline {
            timer: Timer::KeepAlive,
            at: client.now + TIMEOUTS.keep_alive
        }
    );
    // An idle connection holds no buffer.
    assert_eq!(client.conn.holds_buffers(), (false, false));
    assert!(client.conn.is_idle());
    // A new request restarts nothing until it is answered; then keep-alive runs again.
    client.now += Duration::from_secs(30);
    client.send(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(client.conn.deadline().at, client.now + TIMEOUTS.keep_alive);
    assert_eq!(client.expire(), Timer::KeepAlive);
    assert!(client.closed);
    assert_eq!(client.responses().len(), 1);
}

#[test]
fn a_client_that_does_not_read_holds_back_the_pipeline_until_it_does() {
    let mut client = Client::new();
    client.peer.window = Some(10);
    let mut input = Vec::new();
    for _ in 0..3 {
        input.extend_from_slice(
            b"GET /big HTTP/1.1\r\nHost: x\r\n\r\nGET /small HTTP/1.1\r\nHost: x\r\n\r\n",
        );
    }
    client.send(&input);
    assert_eq!(client.conn.deadline().timer, Timer::Send);
    let sent_at = client.now;
    client.now += Duration::from_secs(20);
    // No progress: the send deadline stays where it was.
    client.conn.set_readable();
    client.drive();
    assert_eq!(client.conn.deadline().at, sent_at + TIMEOUTS.send);
    client.open_window();
    let answers = client.responses();
    assert_eq!(
        paths(&answers),
        [
            "200 <file>",
            "200 /small",
            "200 <file>",
            "200 /small",
            "200 <file>",
            "200 /small"
        ]
    );
    assert_eq!(client.conn.deadline().timer, Timer::KeepAlive);
    assert_eq!(client.conn.holds_buffers(), (false, false));
}

#[test]
fn a_client_that_never_reads_is_closed_at_the_send_deadline() {
    let mut client = Client::new();
    client.peer.window = Some(0);
    client.send(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(client.expire(), Timer::Send);
    assert!(client.closed);
}

#[test]
fn a_small_read_budget_still_answers_everything_in_order() {
    let mut client = Client::with(|shared| shared.read_budget = 7);
    let mut input = Vec::new();
    for i in 0..20 {
        input.extend_from_slice(format!("GET /{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    }
    client.peer.read_size = 5;
    client.send(&input);
    let expected: Vec<String> = (0..20).map(|i| format!("200 /{i}")).collect();
    assert_eq!(paths(&client.responses()), expected);
}

#[test]
fn a_quiet_websocket_is_pinged_then_closed_with_1001() {
    let mut client = Client::new();
    client.send(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    client.received();
    assert_eq!(client.conn.deadline().timer, Timer::WsPing);
    assert_eq!(client.expire(), Timer::WsPing);
    assert_eq!(client.received(), b"\x89\x00");
    assert!(!client.closed);
    assert_eq!(
        client.conn.deadline(),
        Deadline {
            timer: Timer::WsPong,
            at: client.now + TIMEOUTS.ws_ping_timeout
        }
    );
    // Any byte is a sign of life: back to the ping interval.
    client.send(&masked_frame(0xA, b""));
    assert_eq!(client.conn.deadline().timer, Timer::WsPing);
    assert_eq!(client.expire(), Timer::WsPing);
    client.received();
    assert_eq!(client.expire(), Timer::WsPong);
    assert_eq!(client.received(), b"\x88\x02\x03\xe9");
    assert!(client.closed);
    assert!(client.conn.was_upgraded());
}

#[test]
fn draining_closes_idle_connections_and_sends_websockets_1001() {
    let mut idle = Client::new();
    idle.send(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(
        idle.conn.drain(&mut idle.peer, &mut idle.shared, idle.now),
        Verdict::Close
    );
    let mut busy = Client::new();
    busy.send(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HT");
    assert_eq!(
        busy.conn.drain(&mut busy.peer, &mut busy.shared, busy.now),
        Verdict::Open
    );
    // The request in flight is answered, with keep-alive off, and the connection closes.
    busy.shared.keep_alive = false;
    busy.received();
    busy.send(b"TP/1.1\r\nHost: x\r\n\r\n");
    let answers = busy.responses();
    assert_eq!(paths(&answers), ["200 /b"]);
    assert!(answers[0].closes() && busy.closed);

    let mut ws = Client::new();
    ws.send(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    ws.received();
    assert_eq!(
        ws.conn.drain(&mut ws.peer, &mut ws.shared, ws.now),
        Verdict::Open
    );
    assert_eq!(ws.received(), b"\x88\x02\x03\xe9");
    assert_eq!(ws.conn.deadline().timer, Timer::WsClose);
    // The client's close frame completes the handshake.
    ws.send(&masked_frame(0x8, &[0x03, 0xe9]));
    assert!(ws.closed || ws.peer.shut);
}

#[test]
fn a_lingering_connection_is_closed_at_the_linger_deadline() {
    let mut client = Client::new();
    client.send(b"GET /a HTTP/1.1\r\n\r\n");
    assert_eq!(client.responses()[0].status, 400);
    assert!(client.peer.shut && !client.closed);
    assert_eq!(client.conn.deadline().timer, Timer::Linger);
    // What the client still sends is read and dropped.
    client.send(b"more bytes the server must not answer");
    assert!(client.received().is_empty());
    assert_eq!(client.expire(), Timer::Linger);
    assert!(client.closed);
}

#[test]
fn buffers_go_back_to_the_pool_on_release() {
    let mut client = Client::new();
    client.peer.window = Some(0);
    client.send(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HT");
    assert_eq!(client.conn.holds_buffers(), (true, true));
    client.conn.release_buffers(&mut client.shared.pool);
    assert_eq!(client.conn.holds_buffers(), (false, false));
    assert_eq!(client.shared.pool.held(), (1, 1));
}

#[test]
fn latency_is_recorded_once_per_answer() {
    let mut client = Client::new();
    client.send(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(client.shared.counters.latency.count(), 2);
    assert_eq!(client.shared.counters.requests[1], 2);
    let received = client.received().len() as u64;
    assert_eq!(client.shared.counters.bytes_sent, received);
}
