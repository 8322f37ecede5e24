//! The operators' HTTP endpoint, served by blocking threads named `percore-admin` on the
//! supervisor side: `GET /metrics` in the Prometheus text format, `GET /status.json` (the same
//! counters as JSON for the status page, readable cross-origin), `GET /healthz` (200 while the
//! process runs: a liveness probe) and `GET /readyz` (200 while every worker serves and the
//! server is not draining, else 503 with the reason: a readiness probe).
//!
//! Owns its listener and the connections it accepts, each served by a short-lived thread of
//! its own (low volume: a scraper every few seconds), at most [`MAX_CLIENTS`] at once, so a
//! client that connects and says nothing delays nobody else's scrape. Must never touch the
//! workers' sockets or state: it only calls the [`Endpoints`] closures it is given, and it
//! never panics on client input. Every connection gets one response and is closed; a client
//! gets at most 2 seconds to send its request head, which the server's own `http` layer
//! parses (no second HTTP parser: the same grammar, limits and statuses as the file server),
//! and `HeadWriter` writes the answer's head.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::conn::Refusal;
use crate::http::{
    self, http_date, HeadWriter, Limits, Method, Parse, RequestError, Status, Version,
};
use crate::sys;

/// Most connections served at once; more wait in the listen backlog until one ends (within
/// about 2.2 s: the read timeout, then the drain).
const MAX_CLIENTS: usize = 32;
/// Total time a client has to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest request head; a longer one gets 431.
const HEAD_LIMIT: usize = 8 * 1024;
/// Most header fields; more get 431.
const MAX_HEADERS: usize = 64;
/// How long unread request bytes are drained after the response, so closing does not reset
/// the connection before the client has read the response.
const DRAIN_TIME: Duration = Duration::from_millis(200);

const METRICS_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
const TEXT_TYPE: &str = "text/plain; charset=utf-8";
const JSON_TYPE: &str = "application/json";
/// `/status.json` is fetched by the status page, which comes from the server's own port: a
/// different origin, whose script may read the response only when this says so. It holds
/// counters only, the figures `/metrics` gives anyone who can connect.
const CROSS_ORIGIN: (&str, &str) = ("Access-Control-Allow-Origin", "*");
/// Every poll must see the figures of that moment, never a cached copy.
const NO_STORE: (&str, &str) = ("Cache-Control", "no-store");
const INDEX: &str = "percore admin endpoint\n\n\
/metrics      counters in the Prometheus text format\n\
/status.json  the same counters as JSON, for the status page (www/status.html)\n\
/healthz      200 while the process runs\n\
/readyz       200 while every worker serves and the server is not draining, else 503\n";

/// What the endpoint reports, supplied by the supervisor.
pub struct Endpoints {
    /// The body of `/metrics`.
    metrics: Box<dyn Fn() -> String + Send + Sync>,
    /// The body of `/status.json`.
    status: Box<dyn Fn() -> String + Send + Sync>,
    /// `Ok` while the server is ready; otherwise why not, for the body of a 503 `/readyz`.
    ready: Box<dyn Fn() -> Result<(), &'static str> + Send + Sync>,
}

impl Endpoints {
    pub fn new(
        metrics: impl Fn() -> String + Send + Sync + 'static,
        status: impl Fn() -> String + Send + Sync + 'static,
        ready: impl Fn() -> Result<(), &'static str> + Send + Sync + 'static,
    ) -> Endpoints {
        Endpoints {
            metrics: Box::new(metrics),
            status: Box::new(status),
            ready: Box::new(ready),
        }
    }
}

/// Binds `addr` now (so a bind error reaches the caller before the server reports ready),
/// then serves from a thread named `percore-admin`.
pub fn spawn(addr: SocketAddr, endpoints: Endpoints) -> io::Result<JoinHandle<()>> {
    spawn_on(TcpListener::bind(addr)?, endpoints)
}

/// Serves on an already bound listener from a thread named `percore-admin`.
pub fn spawn_on(listener: TcpListener, endpoints: Endpoints) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(THREAD_NAME.to_owned())
        .spawn(move || serve(&listener, Arc::new(endpoints)))
}

const THREAD_NAME: &str = "percore-admin";

/// Accepts while fewer than [`MAX_CLIENTS`] connections are being served, each on a thread of
/// its own; a slot is handed back when its thread ends. It waits for a connection with poll and
/// only then accepts (the listener does not block): a blocking accept would hold a descriptor
/// number all the while, one the workers could not have at the open-files limit.
fn serve(listener: &TcpListener, endpoints: Arc<Endpoints>) {
    if let Err(e) = listener.set_nonblocking(true) {
        crate::warn!("admin endpoint: {e}; it stops serving");
        return;
    }
    let (free, slots) = crossbeam_channel::bounded(MAX_CLIENTS);
    for _ in 0..MAX_CLIENTS {
        let _ = free.send(());
    }
    while slots.recv().is_ok() {
        let accepted = sys::wait_readable(listener.as_fd(), None).and_then(|_| listener.accept());
        match accepted {
            Ok((stream, _)) => {
                let endpoints = Arc::clone(&endpoints);
                let done = free.clone();
                let served = std::thread::Builder::new()
                    .name(THREAD_NAME.to_owned())
                    .spawn(move || {
                        // A client that goes away mid-exchange is its own problem, not ours.
                        let _ = handle(stream, &endpoints);
                        let _ = done.send(());
                    });
                if served.is_err() {
                    // No thread to be had: the connection was dropped, its slot comes back.
                    let _ = free.send(());
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            // Taken back by its client before the accept: wait for the next.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let _ = free.send(());
            }
            // Out of descriptors or an aborted handshake: pause instead of spinning.
            Err(_) => {
                let _ = free.send(());
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn handle(mut stream: TcpStream, endpoints: &Endpoints) -> io::Result<()> {
    stream.set_write_timeout(Some(READ_TIMEOUT))?;
    let Some(response) = read_request(&mut stream, endpoints)? else {
        return Ok(());
    };
    stream.write_all(&response)?;
    stream.shutdown(Shutdown::Write)?;
    drain(&mut stream);
    Ok(())
}

/// Reads until the request head is complete, too large or malformed, and returns the
/// response; `None` when the client closed or timed out first.
fn read_request(stream: &mut TcpStream, endpoints: &Endpoints) -> io::Result<Option<Vec<u8>>> {
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(response) = answer(&buf, endpoints) {
            return Ok(Some(response));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        stream.set_read_timeout(Some(left))?;
        let room = HEAD_LIMIT.saturating_sub(buf.len()).min(chunk.len());
        match stream.read(&mut chunk[..room]) {
            Ok(0) => return Ok(None),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        }
    }
}

/// Reads and discards what the client still sends, briefly, until it closes.
fn drain(stream: &mut TcpStream) {
    let _ = stream.set_read_timeout(Some(DRAIN_TIME));
    let mut sink = [0u8; 1024];
    for _ in 0..64 {
        if !matches!(stream.read(&mut sink), Ok(n) if n > 0) {
            return;
        }
    }
}

/// The response to the request head at the start of `buf`, or `None` while it is incomplete.
/// `buf` never holds more than [`HEAD_LIMIT`] bytes. The head is parsed by the server's own
/// `http` layer, with its limits and its statuses for what breaks them.
fn answer(buf: &[u8], endpoints: &Endpoints) -> Option<Vec<u8>> {
    let limits = Limits {
        max_request_line: HEAD_LIMIT,
        max_head: HEAD_LIMIT,
        max_headers: MAX_HEADERS,
        // A body is read and dropped after the answer, whatever its size says.
        max_body: u64::MAX,
    };
    let mut head = buf.to_vec();
    match http::parse_request(&mut head, &limits) {
        Ok(Parse::Complete(request)) => Some(route(request.method, request.path, endpoints)),
        Ok(Parse::Partial) if buf.len() < HEAD_LIMIT => None,
        Ok(Parse::Partial) => Some(refused(RequestError::HeadersTooLarge)),
        Err(error) => Some(refused(error)),
    }
}

/// The answer to a head the `http` layer refuses: its status, and its reason as the body.
fn refused(error: RequestError) -> Vec<u8> {
    text_response(
        Refusal::Request(error).status(),
        &format!("{error}\n"),
        false,
    )
}

fn route(method: Method, path: &[u8], endpoints: &Endpoints) -> Vec<u8> {
    let head_only = match method {
        Method::Get => false,
        Method::Head => true,
        _ => return text_response(Status::METHOD_NOT_ALLOWED, "method not allowed\n", false),
    };
    match path {
        b"/metrics" => match catch_unwind(AssertUnwindSafe(&endpoints.metrics)) {
            Ok(body) => response(Status::OK, METRICS_TYPE, &[], &body, head_only),
            Err(_) => text_response(
                Status::INTERNAL_SERVER_ERROR,
                "metrics unavailable\n",
                head_only,
            ),
        },
        b"/status.json" => {
            let headers = [CROSS_ORIGIN, NO_STORE];
            match catch_unwind(AssertUnwindSafe(&endpoints.status)) {
                Ok(body) => response(Status::OK, JSON_TYPE, &headers, &body, head_only),
                Err(_) => response(
                    Status::INTERNAL_SERVER_ERROR,
                    TEXT_TYPE,
                    &headers,
                    "status unavailable\n",
                    head_only,
                ),
            }
        }
        // Liveness: this thread answering is the whole check.
        b"/healthz" => text_response(Status::OK, "ok\n", head_only),
        b"/readyz" => match catch_unwind(AssertUnwindSafe(&endpoints.ready)) {
            Ok(Ok(())) => text_response(Status::OK, "ready\n", head_only),
            Ok(Err(why)) => text_response(
                Status::SERVICE_UNAVAILABLE,
                &format!("not ready: {why}\n"),
                head_only,
            ),
            Err(_) => text_response(
                Status::INTERNAL_SERVER_ERROR,
                "readiness unavailable\n",
                head_only,
            ),
        },
        b"/" => text_response(Status::OK, INDEX, head_only),
        _ => text_response(Status::NOT_FOUND, "not found\n", head_only),
    }
}

fn text_response(status: Status, body: &str, head_only: bool) -> Vec<u8> {
    response(status, TEXT_TYPE, &[], body, head_only)
}

/// A complete response with its content type and other header fields; `Content-Length` is
/// the body's even when `head_only` leaves it out.
fn response(
    status: Status,
    content_type: &str,
    fields: &[(&str, &str)],
    body: &str,
    head_only: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 256);
    let date = http_date(std::time::SystemTime::now());
    let mut head = HeadWriter::new(&mut out, status, &date);
    head.header("Content-Type", content_type.as_bytes());
    head.content_length(body.len() as u64);
    for (name, value) in fields {
        head.header(name, value.as_bytes());
    }
    // RFC 9110, 15.5.6: "The origin server MUST generate an Allow header field in a 405
    // response containing a list of the target resource's currently supported methods."
    if status == Status::METHOD_NOT_ALLOWED {
        head.header("Allow", b"GET, HEAD");
    }
    head.finish(Version::Http11, false);
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = "percore_workers 2\n";

    fn render() -> String {
        METRICS.to_owned()
    }

    const STATUS: &str = "{\"workers\":[]}\n";

    fn status() -> String {
        STATUS.to_owned()
    }

    fn endpoints() -> Endpoints {
        Endpoints::new(render, status, || Ok(()))
    }

    fn expected(
        status: &str,
        content_type: &str,
        extra: &str,
        body: &str,
        head_only: bool,
    ) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {status}\r\nServer: percore\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
            body.len()
        );
        if !head_only {
            out.push_str(body);
        }
        out.into_bytes()
    }

    /// A response without its Date line, which changes every second.
    fn undated(response: Vec<u8>) -> Vec<u8> {
        let text = String::from_utf8_lossy(&response).into_owned();
        let mut out = String::new();
        for line in text.split_inclusive("\r\n") {
            if !line.starts_with("Date: ") {
                out.push_str(line);
            }
        }
        out.into_bytes()
    }

    fn check(request: &[u8], expected: Option<Vec<u8>>) {
        let got = answer(request, &endpoints()).map(undated);
        assert_eq!(
            got.as_deref().map(String::from_utf8_lossy),
            expected.as_deref().map(String::from_utf8_lossy),
            "request {:?}",
            String::from_utf8_lossy(request)
        );
    }

    fn text(status: &str, body: &str) -> Option<Vec<u8>> {
        Some(expected(status, TEXT_TYPE, "", body, false))
    }

    #[test]
    fn metrics_get_and_head() {
        let get = Some(expected("200 OK", METRICS_TYPE, "", METRICS, false));
        check(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", get.clone());
        check(b"GET /metrics?name[]=x HTTP/1.0\r\n\r\n", get);
        let head = Some(expected("200 OK", METRICS_TYPE, "", METRICS, true));
        check(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n", head);
    }

    const STATUS_FIELDS: &str = "Access-Control-Allow-Origin: *\r\nCache-Control: no-store\r\n";

    #[test]
    fn status_json_get_and_head_readable_cross_origin_never_cached() {
        let get = Some(expected("200 OK", JSON_TYPE, STATUS_FIELDS, STATUS, false));
        check(b"GET /status.json HTTP/1.1\r\nHost: x\r\n\r\n", get.clone());
        let with_origin =
            b"GET /status.json?t=1 HTTP/1.1\r\nHost: x\r\nOrigin: http://127.0.0.1:8001\r\n\r\n";
        check(with_origin, get);
        let head = Some(expected("200 OK", JSON_TYPE, STATUS_FIELDS, STATUS, true));
        check(b"HEAD /status.json HTTP/1.1\r\nHost: x\r\n\r\n", head);
        check(
            b"GET /status.json/ HTTP/1.1\r\nHost: x\r\n\r\n",
            text("404 Not Found", "not found\n"),
        );
        // Only the status page's JSON is readable by other origins.
        let metrics =
            answer(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &endpoints()).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&metrics).contains("Access-Control"));
    }

    #[test]
    fn healthz_and_readyz() {
        check(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
            text("200 OK", "ok\n"),
        );
        check(
            b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n",
            text("200 OK", "ready\n"),
        );
        let head = Some(expected("200 OK", TEXT_TYPE, "", "ready\n", true));
        check(b"HEAD /readyz?verbose HTTP/1.1\r\nHost: x\r\n\r\n", head);
        let draining = Endpoints::new(render, status, || Err("draining"));
        let got = answer(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n", &draining).map(undated);
        let want = expected(
            "503 Service Unavailable",
            TEXT_TYPE,
            "",
            "not ready: draining\n",
            false,
        );
        assert_eq!(got.as_deref(), Some(&want[..]));
        let healthy = answer(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", &draining).map(undated);
        assert_eq!(
            healthy,
            text("200 OK", "ok\n"),
            "liveness ignores readiness"
        );
        let panicking = Endpoints::new(render, status, || -> Result<(), &'static str> {
            panic!("bug")
        });
        let got = undated(route(Method::Get, b"/readyz", &panicking));
        let want = expected(
            "500 Internal Server Error",
            TEXT_TYPE,
            "",
            "readiness unavailable\n",
            false,
        );
        assert_eq!(got, want);
    }

    #[test]
    fn index_and_not_found() {
        check(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", text("200 OK", INDEX));
        check(
            b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
            text("404 Not Found", "not found\n"),
        );
        check(
            b"GET /metrics/ HTTP/1.1\r\nHost: x\r\n\r\n",
            text("404 Not Found", "not found\n"),
        );
        check(
            b"HEAD /x HTTP/1.1\r\nHost: x\r\n\r\n",
            Some(expected(
                "404 Not Found",
                TEXT_TYPE,
                "",
                "not found\n",
                true,
            )),
        );
    }

    #[test]
    fn other_methods_get_405() {
        let allow = "Allow: GET, HEAD\r\n";
        for method in ["POST", "PUT", "DELETE", "get"] {
            let request = format!("{method} /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
            check(
                request.as_bytes(),
                Some(expected(
                    "405 Method Not Allowed",
                    TEXT_TYPE,
                    allow,
                    "method not allowed\n",
                    false,
                )),
            );
        }
    }

    #[test]
    fn every_truncation_is_partial() {
        let request = b"GET /metrics HTTP/1.1\r\nHost: localhost:7391\r\nAccept: */*\r\n\r\n";
        for end in 0..request.len() {
            check(&request[..end], None);
        }
    }

    #[test]
    fn malformed_heads_get_the_http_layers_status() {
        for (request, status) in [
            (&b"GET /metrics HTTP/9.9\r\nHost: x\r\n\r\n"[..], "505 "),
            (b"GET\r\n\r\n", "400 "),
            (b"\x00\x01\x02\r\n\r\n", "400 "),
            (b"GET /metrics HTTP/1.1\r\nBad Header\r\n\r\n", "400 "),
            (b"GET /me trics HTTP/1.1\r\nHost: x\r\n\r\n", "400 "),
            // HTTP/1.1 without Host: RFC 9112 §3.2, as the file server answers it.
            (b"GET /metrics HTTP/1.1\r\n\r\n", "400 "),
        ] {
            let got = answer(request, &endpoints()).unwrap_or_default();
            let got = String::from_utf8_lossy(&got);
            assert!(
                got.starts_with(&format!("HTTP/1.1 {status}")),
                "{request:?}: {got}"
            );
            assert!(got.contains("Connection: close\r\n"), "{got}");
        }
    }

    #[test]
    fn oversized_heads_get_431() {
        let too_large = text(
            "431 Request Header Fields Too Large",
            "header section too large\n",
        );
        let mut long = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        long.resize(HEAD_LIMIT, b'a');
        check(&long, too_large.clone());
        check(&long[..HEAD_LIMIT - 1], None);
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        check(&many, too_large);
    }

    #[test]
    fn render_panic_gives_500() {
        let fail = || -> String { panic!("render failed") };
        let panicking = Endpoints::new(fail, fail, || Ok(()));
        let got = undated(route(Method::Get, b"/metrics", &panicking));
        let want = expected(
            "500 Internal Server Error",
            TEXT_TYPE,
            "",
            "metrics unavailable\n",
            false,
        );
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want)
        );
        // Still readable cross-origin, so the status page can show what went wrong.
        let got = undated(route(Method::Get, b"/status.json", &panicking));
        let want = expected(
            "500 Internal Server Error",
            TEXT_TYPE,
            STATUS_FIELDS,
            "status unavailable\n",
            false,
        );
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want)
        );
    }

    /// Sends `request` (then half-closes when `close` is set) and returns everything read back.
    fn exchange(addr: SocketAddr, request: &[u8], close: bool) -> String {
        let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect: {e}"));
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        stream
            .write_all(request)
            .unwrap_or_else(|e| panic!("write: {e}"));
        if close {
            let _ = stream.shutdown(Shutdown::Write);
        }
        let mut out = Vec::new();
        stream
            .read_to_end(&mut out)
            .unwrap_or_else(|e| panic!("read: {e}"));
        String::from_utf8_lossy(&undated(out)).into_owned()
    }

    fn loopback_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("addr: {e}"));
        let thread_name = move || {
            let name = std::thread::current().name().unwrap_or("?").to_owned();
            format!("served by {name}\n")
        };
        spawn_on(listener, Endpoints::new(thread_name, status, || Ok(())))
            .unwrap_or_else(|e| panic!("spawn: {e}"));
        addr
    }

    #[test]
    fn serves_over_loopback() {
        let addr = loopback_server();
        let body = "served by percore-admin\n";
        let want = |head_only| {
            String::from_utf8_lossy(&expected("200 OK", METRICS_TYPE, "", body, head_only))
                .into_owned()
        };
        assert_eq!(
            exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", false),
            want(false)
        );
        assert_eq!(
            exchange(addr, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n", false),
            want(true)
        );
        // A truncated request gets no answer and does not stop the server.
        assert_eq!(exchange(addr, b"GET /metr", true), "");
        // A body after the head is drained, not answered with a reset.
        let with_body = b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(exchange(addr, with_body, false), want(false));
        let mut junk = vec![b'x'; 3 * HEAD_LIMIT];
        junk.extend_from_slice(b"\r\n\r\n");
        let reply = exchange(addr, &junk, false);
        assert!(
            reply.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{reply}"
        );
        assert_eq!(
            exchange(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", false),
            String::from_utf8_lossy(&expected("200 OK", TEXT_TYPE, "", INDEX, false))
        );
    }

    #[test]
    fn silent_client_is_dropped_after_timeout() {
        let addr = loopback_server();
        let started = Instant::now();
        let mut silent = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect: {e}"));
        let _ = silent.set_read_timeout(Some(Duration::from_secs(10)));
        let mut out = Vec::new();
        let closed = silent.read_to_end(&mut out).is_ok();
        assert!(closed && out.is_empty(), "{out:?}");
        let waited = started.elapsed();
        assert!(
            waited >= READ_TIMEOUT - Duration::from_millis(100),
            "{waited:?}"
        );
        assert!(waited < READ_TIMEOUT * 3, "{waited:?}");
        assert!(exchange(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", false)
            .starts_with("HTTP/1.1 200 OK\r\n"));
    }

    /// Silent clients hold threads of their own: a scrape is answered while all of them are
    /// still connected, not after their read timeouts.
    #[test]
    fn silent_clients_do_not_delay_a_scrape() {
        let addr = loopback_server();
        let silent: Vec<TcpStream> = (0..MAX_CLIENTS - 1)
            .map(|_| TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect: {e}")))
            .collect();
        let reply = exchange(addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", false);
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
        for mut stream in silent {
            let _ = stream.set_nonblocking(true);
            let mut byte = [0u8; 1];
            let still_open =
                matches!(stream.read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
            assert!(
                still_open,
                "a silent client was closed before the scrape was answered"
            );
        }
    }

    #[test]
    fn spawn_binds_before_returning() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = taken.local_addr().unwrap_or_else(|e| panic!("addr: {e}"));
        let err = spawn(addr, endpoints()).map(|_| ()).err().map(|e| e.kind());
        assert_eq!(err, Some(io::ErrorKind::AddrInUse));
        drop(taken);
        spawn(addr, endpoints()).unwrap_or_else(|e| panic!("spawn on a free port: {e}"));
        let reply = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", false);
        assert_eq!(
            reply,
            String::from_utf8_lossy(&expected("200 OK", METRICS_TYPE, "", METRICS, false))
        );
    }
}
