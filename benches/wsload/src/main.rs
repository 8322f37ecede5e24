//! wsload: a WebSocket (RFC 6455) load generator for percore's `/ws` echo endpoint, or any
//! echo server.
//!
//! It owns the client side of the benchmark: connecting, the opening handshake (a random key,
//! `Sec-WebSocket-Accept` checked), sending masked frames (a fresh random mask per frame),
//! verifying every echo byte for byte, latency per message round trip, and the close handshake.
//! It must never reach into the server: it speaks only over TCP, and it uses percore's library
//! only for epoll (`percore::sys`), for frame headers, masking, deflate and the accept key
//! (`percore::ws`), and for the `--ports` parser and the histogram it shares with the server
//! (`percore::config`, `percore::metrics`).
//!
//! Each load thread runs one edge-triggered epoll loop over its share of the connections.
//! Message payloads are built once: a pool of [`VARIANTS`] payloads per run (and their
//! compressed forms with `--deflate`); connection message `n` carries variant `n % VARIANTS`,
//! whose first byte is unique, so a lost, duplicated or reordered echo is a mismatch. Sending
//! a message masks the variant into the thread's scratch buffer behind a precomputed header
//! (one pass) and writes from there; verifying an echo is one comparison (a compressed echo is
//! inflated once per variant, then compared as bytes). All of a thread's connections read into
//! one buffer and keep only a partial frame of their own, so the load generator's working set
//! stays in cache and one core of it can keep a core of the server busy.

use std::collections::{BTreeMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::AsFd;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use clap::Parser;
use fastrand::Rng;
use percore::metrics::Histogram;
use percore::sys::{Epoll, Events, Interest};
use rustls::ClientConfig;
use wire::Wire;

mod wire;
use percore::ws::{
    accept_key, copy_masked, parse_header, write_frame_header, Codec, Control, Data, FrameHeader,
    OpCode,
};

/// Distinct payloads per run; message `n` of a connection carries variant `n % VARIANTS`.
const VARIANTS: usize = 64;
/// How long in-flight echoes may take to arrive after the sending stops.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// How long the close handshake may take at the end.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// The largest server frame wsload accepts.
const MAX_FRAME: usize = 64 << 20;
/// Close code 1005: a close frame "that contains no status code" (RFC 6455 §7.1.5).
const NO_STATUS: u16 = 1005;

#[derive(Parser, Debug)]
#[command(
    name = "wsload",
    about = "WebSocket echo load generator: N connections, K messages in flight each, every echo verified",
    after_help = "Examples:\n  wsload --ports 8001 -c 50 --size 64 --duration 10\n  \
                  wsload --ports 8001-8030 -c 1000 --size 16384 --pipeline 4 --deflate -t 2\n  \
                  wsload --ports 9001 -c 10 --messages 100000 --rate 20000 --text"
)]
struct Args {
    /// Server host name or address.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Ports: a range (8001-8030), a list (8001,8005) or one port; connections go round-robin.
    #[arg(long, default_value = "8001-8030")]
    ports: String,
    /// The request path of the WebSocket endpoint.
    #[arg(long, default_value = "/ws")]
    path: String,
    /// Connections (spread round-robin over ports and threads).
    #[arg(short = 'c', long, default_value_t = 50)]
    connections: usize,
    /// Message payload size in bytes.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Seconds of sending (default 10 unless --messages is given).
    #[arg(long, conflicts_with = "messages")]
    duration: Option<f64>,
    /// Total messages to send, then stop.
    #[arg(long)]
    messages: Option<u64>,
    /// Total messages per second over all connections (default: as fast as echoes return).
    #[arg(long)]
    rate: Option<f64>,
    /// Messages in flight per connection.
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
    /// Send text messages.
    #[arg(long, conflicts_with = "binary")]
    text: bool,
    /// Send binary messages (the default).
    #[arg(long)]
    binary: bool,
    /// Offer permessage-deflate; where negotiated, send compressed frames (RSV1).
    #[arg(long)]
    deflate: bool,
    /// Load threads, each with its own epoll loop.
    #[arg(short = 't', long, default_value_t = 1)]
    threads: usize,
    /// Speak TLS (wss://) to TLS ports, accepting any certificate: a benchmark client
    /// measures, it does not authenticate.
    #[arg(long)]
    tls: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(report) => {
            print!("{report}");
            if report.total.errors.total() == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("wsload: {e}");
            ExitCode::from(2)
        }
    }
}

// ---------------------------------------------------------------- plan

/// Everything the load threads share, read-only.
struct Plan {
    addrs: Vec<(SocketAddr, String)>,
    path: String,
    connections: usize,
    size: usize,
    duration: Option<Duration>,
    messages: Option<u64>,
    rate: Option<f64>,
    pipeline: usize,
    text: bool,
    deflate: bool,
    threads: usize,
    variants: Vec<Variant>,
    /// With `--tls`: the client configuration, and the name sent by SNI.
    tls: Option<(Arc<ClientConfig>, String)>,
}

/// One payload: the plain bytes (what every echo must equal once inflated) and the frame
/// headers (without mask key) for sending it plain or compressed.
struct Variant {
    plain: Vec<u8>,
    plain_header: Vec<u8>,
    compressed: Vec<u8>,
    compressed_header: Vec<u8>,
}

fn plan(args: &Args) -> Result<Plan, String> {
    let ports = percore::config::parse_ports(&args.ports)
        .map_err(|e| format!("invalid --ports '{}': {e}", args.ports))?;
    let host_header = if args.host.contains(':') {
        format!("[{}]", args.host)
    } else {
        args.host.clone()
    };
    let mut addrs = Vec::new();
    for port in ports {
        let addr = (args.host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {}: {e}", args.host))?
            .next()
            .ok_or_else(|| format!("{} has no address", args.host))?;
        addrs.push((addr, format!("{host_header}:{port}")));
    }
    if args.connections == 0 || args.pipeline == 0 || args.threads == 0 {
        return Err("--connections, --pipeline and --threads must be at least 1".into());
    }
    if args.size > MAX_FRAME / 2 {
        return Err(format!("--size must be at most {}", MAX_FRAME / 2));
    }
    let duration = match (args.duration, args.messages) {
        (Some(secs), _) if !(secs > 0.0 && secs.is_finite()) => {
            return Err("--duration must be a positive number of seconds".into())
        }
        (Some(secs), _) => Some(Duration::from_secs_f64(secs)),
        (None, Some(0)) => return Err("--messages must be at least 1".into()),
        (None, Some(_)) => None,
        (None, None) => Some(Duration::from_secs(10)),
    };
    if let Some(rate) = args.rate {
        if !(rate > 0.0 && rate.is_finite()) {
            return Err("--rate must be a positive number of messages per second".into());
        }
    }
    if !args.path.starts_with('/') {
        return Err("--path must start with '/'".into());
    }
    Ok(Plan {
        addrs,
        path: args.path.clone(),
        connections: args.connections,
        size: args.size,
        duration,
        messages: args.messages,
        rate: args.rate,
        pipeline: args.pipeline,
        text: args.text,
        deflate: args.deflate,
        threads: args.threads.min(args.connections),
        variants: variants(args.size, args.text, &mut rng()),
        tls: args.tls.then(|| (wire::client_config(), args.host.clone())),
    })
}

/// Text-like payloads (they compress the way chat or JSON messages do, and are valid UTF-8),
/// each starting with its own character.
fn variants(size: usize, text: bool, rng: &mut Rng) -> Vec<Variant> {
    const WORDS: [&str; 16] = [
        "percore", "epoll", "reactor", "message", "frame", "socket", "worker", "echo", "\"id\":",
        "{", "}", "latency", "deflate", "buffer", "core", "kernel",
    ];
    const TAGS: &[u8; VARIANTS] =
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let opcode = OpCode::Data(if text { Data::Text } else { Data::Binary });
    let mut codec = Codec::new();
    (0..VARIANTS)
        .map(|i| {
            let mut plain = Vec::with_capacity(size + 16);
            plain.push(TAGS[i]);
            while plain.len() < size {
                plain.extend_from_slice(WORDS[rng.usize(..WORDS.len())].as_bytes());
                plain.push(if rng.usize(..8) == 0 { b'\n' } else { b' ' });
                if rng.usize(..4) == 0 {
                    plain.extend_from_slice(rng.u64(..).to_string().as_bytes());
                }
            }
            plain.truncate(size);
            let mut compressed = Vec::new();
            codec.compress(&plain, &mut compressed);
            Variant {
                plain_header: client_header(opcode, false, plain.len()),
                compressed_header: client_header(opcode, true, compressed.len()),
                plain,
                compressed,
            }
        })
        .collect()
}

/// A single-frame header with the MASK bit set; the 4-byte key follows it on the wire.
fn client_header(opcode: OpCode, rsv1: bool, len: usize) -> Vec<u8> {
    let mut header = Vec::with_capacity(10);
    write_frame_header(&mut header, true, rsv1, opcode, len as u64);
    if let Some(second) = header.get_mut(1) {
        *second |= 0x80;
    }
    header
}

// ---------------------------------------------------------------- running

/// What each load thread shows the progress printer.
#[derive(Default)]
struct Progress {
    received: AtomicU64,
    open: AtomicU64,
    errors: AtomicU64,
    finished: AtomicU64,
}

fn run(args: &Args) -> Result<Report, String> {
    let plan = Arc::new(plan(args)?);
    let progress: Arc<Vec<Progress>> =
        Arc::new((0..plan.threads).map(|_| Progress::default()).collect());
    let barrier = Arc::new(Barrier::new(plan.threads + 1));
    let mut handles = Vec::new();
    for index in 0..plan.threads {
        let (plan, progress, barrier) = (plan.clone(), progress.clone(), barrier.clone());
        let handle = thread::Builder::new()
            .name(format!("wsload-{index}"))
            .spawn(move || load_thread(&plan, index, &progress[index], &barrier))
            .map_err(|e| format!("cannot start a thread: {e}"))?;
        handles.push(handle);
    }
    barrier.wait();
    let opened: u64 = progress.iter().map(|p| p.open.load(Relaxed)).sum();
    eprintln!(
        "wsload: {opened}/{} connections open to {} ports, {} B {} messages, pipeline {}, {} thread(s)",
        plan.connections,
        plan.addrs.len(),
        plan.size,
        if plan.text { "text" } else { "binary" },
        plan.pipeline,
        plan.threads,
    );
    print_progress(&progress);
    let mut report = Report::new(&plan);
    for handle in handles {
        let result = handle
            .join()
            .map_err(|_| "a load thread panicked".to_string())?;
        report.merge(result);
    }
    if report.total.opened == 0 {
        return Err(format!(
            "no connection could be opened ({} handshake/connect errors)",
            report.total.errors.handshake
        ));
    }
    Ok(report)
}

/// Prints one line a second until every load thread has finished.
fn print_progress(progress: &[Progress]) {
    let start = Instant::now();
    let mut last = 0u64;
    let mut tick = 1u64;
    loop {
        let next = start + Duration::from_secs(tick);
        while Instant::now() < next {
            if progress.iter().all(|p| p.finished.load(Relaxed) == 1) {
                return;
            }
            thread::sleep(Duration::from_millis(20).min(next - Instant::now()));
        }
        let sum = |f: fn(&Progress) -> &AtomicU64| -> u64 {
            progress.iter().map(|p| f(p).load(Relaxed)).sum()
        };
        let received = sum(|p| &p.received);
        eprintln!(
            "wsload: {tick:>4}s {:>10} msgs/s  open {:>6}  errors {}",
            received - last,
            sum(|p| &p.open),
            sum(|p| &p.errors)
        );
        last = received;
        tick += 1;
    }
}

/// One load thread: connect its share, wait for the others, run the loop, report.
fn load_thread(plan: &Plan, index: usize, progress: &Progress, barrier: &Barrier) -> Outcome {
    let mut rng = rng();
    let mut outcome = Outcome::default();
    let mut conns = Vec::new();
    let epoll = Epoll::new();
    for i in (index..plan.connections).step_by(plan.threads) {
        let (addr, host) = &plan.addrs[i % plan.addrs.len()];
        match handshake(*addr, host, plan, &mut rng) {
            Ok(conn) => conns.push(conn),
            Err(e) => {
                if outcome.errors.handshake == 0 {
                    eprintln!("wsload: connection {i} to {addr}: {e}");
                }
                outcome.errors.handshake += 1;
            }
        }
    }
    let epoll = match epoll {
        Ok(epoll) => epoll,
        Err(e) => {
            eprintln!("wsload: epoll: {e}");
            outcome.errors.io += conns.len() as u64;
            conns.clear();
            progress.finished.store(1, Relaxed);
            barrier.wait();
            return outcome;
        }
    };
    conns.retain(|conn| {
        let token = outcome.opened;
        match epoll.register(conn.stream.as_fd(), token, Interest::BOTH) {
            Ok(()) => {
                outcome.opened += 1;
                true
            }
            Err(_) => {
                outcome.errors.io += 1;
                false
            }
        }
    });
    outcome.deflated = conns.iter().filter(|c| c.deflate).count() as u64;
    progress.open.store(outcome.opened, Relaxed);
    progress.errors.store(outcome.errors.total(), Relaxed);
    barrier.wait();
    let mut looper = Looper::new(plan, index, conns, rng, outcome);
    looper.run(&epoll, progress);
    progress.finished.store(1, Relaxed);
    looper.outcome
}

/// Opens one connection and completes the opening handshake (RFC 6455 §4.1), blocking.
fn handshake(addr: SocketAddr, host: &str, plan: &Plan, rng: &mut Rng) -> Result<Conn, String> {
    let timeout = Some(Duration::from_secs(5));
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect: {e}"))?;
    let setup = |s: &TcpStream| {
        s.set_nodelay(true)?;
        s.set_read_timeout(timeout)?;
        s.set_write_timeout(timeout)
    };
    setup(&stream).map_err(|e| format!("socket options: {e}"))?;
    let mut stream = match &plan.tls {
        Some((config, server_name)) => Wire::tls(config, server_name, stream)?,
        None => Wire::Plain(stream),
    };
    let mut key_bytes = [0u8; 16];
    rng.fill(&mut key_bytes);
    let key = STANDARD.encode(key_bytes);
    let extensions = if plan.deflate {
        "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
         client_no_context_takeover\r\n"
    } else {
        ""
    };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extensions}\r\n",
        plan.path
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("sending the handshake: {e}"))?;
    let mut buf = vec![0u8; 4096];
    let mut filled = 0;
    let (head_len, deflate) = loop {
        let n = stream
            .read(&mut buf[filled..])
            .map_err(|e| format!("reading the handshake response: {e}"))?;
        if n == 0 {
            return Err("the server closed during the handshake".into());
        }
        filled += n;
        if let Some(parsed) = check_response(&buf[..filled], &key, plan.deflate)? {
            break parsed;
        }
        if filled == buf.len() {
            return Err("handshake response head too long".into());
        }
    };
    stream
        .set_nonblocking()
        .map_err(|e| format!("set_nonblocking: {e}"))?;
    let mut conn = Conn::new(stream, deflate, plan);
    // Frames the server sent right behind its 101, if any, are the start of the input.
    let early = &buf[head_len..filled];
    conn.carry.extend_from_slice(early);
    Ok(conn)
}

/// Checks the 101 response (§4.1, "the client MUST validate the server's response"):
/// `None` while incomplete, otherwise the head length and whether permessage-deflate is on.
fn check_response(buf: &[u8], key: &str, offered: bool) -> Result<Option<(usize, bool)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("bad handshake response: {e}")),
    };
    if response.code != Some(101) {
        return Err(format!("status {:?} instead of 101", response.code));
    }
    let value = |name: &str| {
        response
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
            .collect::<Vec<_>>()
    };
    let has_token = |name: &str, token: &str| {
        value(name).iter().any(|v| {
            v.split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
    };
    if !has_token("upgrade", "websocket") || !has_token("connection", "upgrade") {
        return Err("the response lacks Upgrade: websocket or Connection: Upgrade".into());
    }
    let expected = accept_key(key.as_bytes());
    if value("sec-websocket-accept") != [&expected[..]] {
        return Err("wrong Sec-WebSocket-Accept".into());
    }
    let extensions = value("sec-websocket-extensions");
    let deflate = extensions.iter().any(|v| {
        let v = String::from_utf8_lossy(v).to_ascii_lowercase();
        v.contains("permessage-deflate")
    });
    if deflate {
        let joined = extensions
            .iter()
            .map(|v| String::from_utf8_lossy(v).to_ascii_lowercase())
            .collect::<Vec<_>>()
            .join(",");
        // RFC 7692 §7.1.1.1: the server accepts our server_no_context_takeover offer by
        // including it; per-message inflation below depends on it.
        if !offered || !joined.contains("server_no_context_takeover") {
            return Err(format!("unexpected extension answer '{joined}'"));
        }
    }
    Ok(Some((head_len, deflate)))
}

// ---------------------------------------------------------------- connections

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConnState {
    Open,
    /// wsload sent its close frame and waits for the server's.
    Closing,
    /// Finished: closed properly or failed.
    Done,
}

struct Conn {
    stream: Wire,
    deflate: bool,
    state: ConnState,
    /// Received bytes not yet parsed: the start of a frame whose end has not arrived.
    carry: Vec<u8>,
    /// Bytes `out[out_pos..]` not yet written (data frames are written from the thread's
    /// scratch buffer; see [`Looper::fill`]).
    out: Vec<u8>,
    out_pos: usize,
    /// Send times of the messages in flight, oldest first.
    in_flight: VecDeque<Instant>,
    sent: u64,
    received: u64,
    /// A fragmented message being assembled: whether it is compressed, and its payload.
    fragmented: Option<bool>,
    fragments: Vec<u8>,
}

impl Conn {
    fn new(stream: Wire, deflate: bool, plan: &Plan) -> Conn {
        Conn {
            stream,
            deflate,
            state: ConnState::Open,
            carry: Vec::new(),
            // Only what a socket did not take at once, and control frames, queue here.
            out: Vec::new(),
            out_pos: 0,
            in_flight: VecDeque::with_capacity(plan.pipeline),
            sent: 0,
            received: 0,
            fragmented: None,
            fragments: Vec::new(),
        }
    }
}

/// How much one read asks for: room for every echo in flight (at least 64 KiB and two frames,
/// at most 1 MiB), so one read can take all the server has sent. With a fixed 64 KiB read the
/// kernel's receive-buffer autotuning could stay stuck at 128 KiB against a server that writes
/// 64 KiB at a time (measured: ws16k bimodal, 85k or 200k msg/s per run, the slow runs with
/// 50k zero-window advertisements).
fn read_buffer_size(plan: &Plan) -> usize {
    let frame = plan.size + 16;
    (plan.pipeline.saturating_mul(frame))
        .clamp(64 << 10, 1 << 20)
        .max(2 * frame)
}

/// Why a connection or message failed.
#[derive(Clone, Copy, Debug, Default)]
struct Errors {
    /// Connecting or the opening handshake failed.
    handshake: u64,
    /// An echo differed from what was sent (or arrived with nothing in flight).
    mismatch: u64,
    /// The server broke the protocol (masked or malformed frame, bad fragment, huge frame).
    protocol: u64,
    /// A read or write failed, or the server closed TCP while the connection was open.
    io: u64,
    /// The server sent a close frame before wsload did.
    server_closed: u64,
    /// Connections that did not finish the close handshake in time.
    close_timeout: u64,
}

impl Errors {
    fn total(&self) -> u64 {
        self.handshake
            + self.mismatch
            + self.protocol
            + self.io
            + self.server_closed
            + self.close_timeout
    }

    fn add(&mut self, other: &Errors) {
        self.handshake += other.handshake;
        self.mismatch += other.mismatch;
        self.protocol += other.protocol;
        self.io += other.io;
        self.server_closed += other.server_closed;
        self.close_timeout += other.close_timeout;
    }
}

/// One load thread's results.
#[derive(Default)]
struct Outcome {
    opened: u64,
    deflated: u64,
    /// Echoes received (and verified) while sending was on, and all echoes.
    in_window: u64,
    received: u64,
    window: Duration,
    errors: Errors,
    /// Round trips in ns, and the slowest.
    latency: RoundTrips,
    slowest: u64,
    /// Close codes of the server's close frames ("none" for connections without one).
    close_codes: BTreeMap<String, u64>,
    /// The fewest and most echoes one connection got: far apart means the server is unfair.
    per_conn: Option<(u64, u64)>,
}

/// The thread's phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Sending,
    /// Sending stopped at `since`; waiting for the echoes in flight.
    Draining,
    /// Close frames sent; waiting for the server's.
    Closing,
}

struct Looper<'a> {
    plan: &'a Plan,
    conns: Vec<Conn>,
    rng: Rng,
    codec: Codec,
    inflated: Vec<u8>,
    /// Per variant: the server's compressed echo, once verified by inflating it.
    echo_cache: Vec<Option<Vec<u8>>>,
    /// Where outgoing data frames are built (see [`Looper::fill`]).
    scratch: Vec<u8>,
    /// Where every connection of the thread reads into (see [`Looper::read`]).
    read_buf: Vec<u8>,
    outcome: Outcome,
    phase: Phase,
    start: Instant,
    phase_since: Instant,
    /// Messages this thread may still send now (rate tokens and the --messages quota).
    budget: u64,
    sent_total: u64,
    quota: Option<u64>,
    rate: Option<f64>,
    /// Where the next round-robin refill starts.
    cursor: usize,
    /// Connections not yet finished.
    open: u64,
}

impl<'a> Looper<'a> {
    fn new(plan: &'a Plan, index: usize, conns: Vec<Conn>, rng: Rng, outcome: Outcome) -> Self {
        let share = |total: u64| {
            let threads = plan.threads as u64;
            total / threads + u64::from((index as u64) < total % threads)
        };
        let now = Instant::now();
        let outcome_open = conns.len() as u64;
        Looper {
            plan,
            conns,
            rng,
            codec: Codec::new(),
            inflated: Vec::new(),
            echo_cache: vec![None; VARIANTS],
            scratch: Vec::new(),
            read_buf: Vec::new(),
            outcome,
            phase: Phase::Sending,
            start: now,
            phase_since: now,
            budget: 0,
            sent_total: 0,
            quota: plan.messages.map(share),
            rate: plan.rate.map(|r| r / plan.threads as f64),
            cursor: 0,
            open: outcome_open,
        }
    }

    fn run(&mut self, epoll: &Epoll, progress: &Progress) {
        let mut events = Events::with_capacity(1024);
        self.start = Instant::now();
        self.refill_budget(self.start);
        self.fill_all(self.start);
        loop {
            let now = Instant::now();
            if !self.advance(now) {
                break;
            }
            let timeout = if self.rate.is_some() && self.phase == Phase::Sending {
                Duration::from_millis(1)
            } else {
                Duration::from_millis(50)
            };
            if let Err(e) = epoll.wait(&mut events, Some(timeout)) {
                eprintln!("wsload: epoll_wait: {e}");
                break;
            }
            for event in events.iter() {
                self.on_event(event.token as usize);
            }
            if self.rate.is_some() && self.phase == Phase::Sending {
                let now = Instant::now();
                self.refill_budget(now);
                self.fill_all(now);
            }
            progress.received.store(self.outcome.received, Relaxed);
            progress.errors.store(self.outcome.errors.total(), Relaxed);
            progress.open.store(self.open, Relaxed);
        }
        for conn in &self.conns {
            self.outcome.per_conn = Some(match self.outcome.per_conn {
                Some((low, high)) => (low.min(conn.received), high.max(conn.received)),
                None => (conn.received, conn.received),
            });
            if conn.state != ConnState::Done {
                self.outcome.errors.close_timeout += 1;
                *self.outcome.close_codes.entry("none".into()).or_default() += 1;
            }
        }
    }

    /// Moves through the phases; false when the thread is done.
    fn advance(&mut self, now: Instant) -> bool {
        let in_flight = || self.conns.iter().any(|c| !c.in_flight.is_empty());
        match self.phase {
            Phase::Sending => {
                let out_of_time = self.plan.duration.is_some_and(|d| now >= self.start + d);
                let out_of_quota = self.quota == Some(0) && !in_flight();
                if out_of_time || out_of_quota || self.open == 0 {
                    self.outcome.window = now - self.start;
                    self.phase = Phase::Draining;
                    self.phase_since = now;
                }
                true
            }
            Phase::Draining => {
                if !in_flight() || now >= self.phase_since + DRAIN_GRACE {
                    self.phase = Phase::Closing;
                    self.phase_since = now;
                    for i in 0..self.conns.len() {
                        self.start_close(i);
                    }
                }
                true
            }
            Phase::Closing => self.open > 0 && now < self.phase_since + CLOSE_GRACE,
        }
    }

    fn refill_budget(&mut self, now: Instant) {
        self.budget = match self.rate {
            Some(rate) => {
                let allowed = (now - self.start).as_secs_f64() * rate;
                (allowed as u64 + 1).saturating_sub(self.sent_total)
            }
            None => u64::MAX,
        };
        if let Some(quota) = self.quota {
            self.budget = self.budget.min(quota);
        }
    }

    /// Tops every connection up to the pipeline depth (as far as the budget allows), starting
    /// where the last round stopped so a rate limit serves connections in turn.
    fn fill_all(&mut self, now: Instant) {
        let n = self.conns.len();
        for k in 0..n {
            if self.budget == 0 {
                break;
            }
            let i = (self.cursor + k) % n;
            self.fill(i, now);
            self.flush(i);
        }
        self.cursor = (self.cursor + 1) % n.max(1);
    }

    fn on_event(&mut self, i: usize) {
        if self
            .conns
            .get(i)
            .map_or(true, |c| c.state == ConnState::Done)
        {
            return;
        }
        self.flush(i);
        self.read(i);
        if self.rate.is_none() {
            self.fill(i, Instant::now());
        }
        self.flush(i);
    }

    /// Sends messages on connection `i` until its pipeline is full or the budget is spent.
    /// The frames are built in the thread's scratch buffer, which stays in cache, and written
    /// from there; only what the socket does not take is copied to the connection's queue.
    fn fill(&mut self, i: usize, now: Instant) {
        if self.phase != Phase::Sending {
            return;
        }
        let conn = &mut self.conns[i];
        if conn.state != ConnState::Open {
            return;
        }
        let mut len = 0;
        while conn.in_flight.len() < self.plan.pipeline && self.budget > 0 {
            let variant = &self.plan.variants[conn.sent as usize % VARIANTS];
            let (header, payload) = if conn.deflate {
                (&variant.compressed_header, &variant.compressed)
            } else {
                (&variant.plain_header, &variant.plain)
            };
            let end = len + header.len() + 4 + payload.len();
            if self.scratch.len() < end {
                self.scratch.resize(end, 0);
            }
            len += put_masked(
                &mut self.scratch[len..],
                header,
                payload,
                mask(&mut self.rng),
            );
            conn.in_flight.push_back(now);
            conn.sent += 1;
            self.sent_total += 1;
            self.budget -= 1;
            if let Some(quota) = &mut self.quota {
                *quota -= 1;
            }
        }
        self.send_scratch(i, len);
    }

    /// Writes `scratch[..len]` on connection `i` behind anything it still has queued; what the
    /// socket does not take now is queued.
    fn send_scratch(&mut self, i: usize, len: usize) {
        let conn = &mut self.conns[i];
        let mut written = 0;
        if conn.out_pos == conn.out.len() {
            while written < len {
                match conn.stream.write(&self.scratch[written..len]) {
                    Ok(0) => return self.fail(i, FailKind::Io),
                    Ok(n) => written += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return self.fail(i, FailKind::Io),
                }
            }
        }
        conn.out.extend_from_slice(&self.scratch[written..len]);
    }

    /// Writes what connection `i` has queued until the kernel takes no more (over TLS, the
    /// records made earlier first).
    fn flush(&mut self, i: usize) {
        let conn = &mut self.conns[i];
        match conn.stream.flush_pending() {
            Ok(true) => {}
            Ok(false) => return,
            Err(_) => return self.fail(i, FailKind::Io),
        }
        while conn.out_pos < conn.out.len() {
            match conn.stream.write(&conn.out[conn.out_pos..]) {
                Ok(0) => return self.fail(i, FailKind::Io),
                Ok(n) => conn.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.fail(i, FailKind::Io),
            }
        }
        conn.out.clear();
        conn.out_pos = 0;
    }

    /// Reads until `WouldBlock` or a short read (the edge-triggered contract, as percore's
    /// worker reads), handling every complete frame. All connections read into the thread's one
    /// buffer, which stays in cache; a connection keeps only its partial frame between reads.
    fn read(&mut self, i: usize) {
        let mut buf = std::mem::take(&mut self.read_buf);
        self.read_into(i, &mut buf);
        self.read_buf = buf;
    }

    fn read_into(&mut self, i: usize, buf: &mut Vec<u8>) {
        loop {
            let conn = &mut self.conns[i];
            if conn.state == ConnState::Done {
                return;
            }
            let carried = conn.carry.len();
            let wanted = carried + read_buffer_size(self.plan);
            if buf.len() < wanted {
                buf.resize(wanted, 0);
            }
            let space = buf.len() - carried;
            match conn.stream.read(&mut buf[carried..]) {
                Ok(0) => {
                    let kind = match conn.state {
                        ConnState::Closing => FailKind::EofWhileClosing,
                        _ => FailKind::Io,
                    };
                    return self.fail(i, kind);
                }
                Ok(n) => {
                    buf[..carried].copy_from_slice(&conn.carry);
                    conn.carry.clear();
                    let end = carried + n;
                    let used = self.handle_frames(i, &buf[..end]);
                    self.conns[i].carry.extend_from_slice(&buf[used..end]);
                    // A short read drained the socket; bytes arriving later raise a new edge.
                    if n < space {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.fail(i, FailKind::Io),
            }
        }
    }

    /// Handles every complete frame at the start of `input`; returns the bytes they took.
    fn handle_frames(&mut self, i: usize, input: &[u8]) -> usize {
        let now = Instant::now();
        let mut pos = 0;
        while self.conns[i].state != ConnState::Done {
            let (header, header_len) = match parse_header(&input[pos..]) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => break,
                Err(_) => {
                    self.fail(i, FailKind::Protocol);
                    break;
                }
            };
            let len = usize::try_from(header.payload_len).unwrap_or(usize::MAX);
            if header.mask.is_some() || len > MAX_FRAME {
                // RFC 6455 §5.1: "A client MUST close a connection if it detects a masked frame."
                self.fail(i, FailKind::Protocol);
                break;
            }
            if input.len() - pos < header_len + len {
                break;
            }
            let payload = &input[pos + header_len..pos + header_len + len];
            pos += header_len + len;
            self.on_frame(i, &header, payload, now);
        }
        pos
    }

    fn on_frame(&mut self, i: usize, header: &FrameHeader, payload: &[u8], now: Instant) {
        let conn = &mut self.conns[i];
        match header.opcode {
            OpCode::Data(Data::Text | Data::Binary) if conn.fragmented.is_none() => {
                if header.fin {
                    self.on_message(i, header.rsv1, payload, now);
                } else {
                    conn.fragmented = Some(header.rsv1);
                    conn.fragments.extend_from_slice(payload);
                }
            }
            OpCode::Data(Data::Continue) if conn.fragmented.is_some() => {
                conn.fragments.extend_from_slice(payload);
                if header.fin {
                    let compressed = conn.fragmented.take().unwrap_or(false);
                    let message = std::mem::take(&mut conn.fragments);
                    self.on_message(i, compressed, &message, now);
                    let conn = &mut self.conns[i];
                    conn.fragments = message;
                    conn.fragments.clear();
                }
            }
            OpCode::Control(Control::Ping) => {
                let header = client_header(OpCode::Control(Control::Pong), false, payload.len());
                push_masked(&mut conn.out, &header, payload, mask(&mut self.rng));
            }
            OpCode::Control(Control::Pong) => {}
            OpCode::Control(Control::Close) => self.on_close(i, payload),
            _ => self.fail(i, FailKind::Protocol),
        }
    }

    /// Verifies one echo against the variant it must carry and records its round trip.
    fn on_message(&mut self, i: usize, compressed: bool, payload: &[u8], now: Instant) {
        let conn = &mut self.conns[i];
        let Some(sent_at) = conn.in_flight.pop_front() else {
            return self.fail(i, FailKind::Mismatch);
        };
        let index = conn.received as usize % VARIANTS;
        conn.received += 1;
        let deflate = conn.deflate;
        let plain = &self.plan.variants[index].plain;
        let matches = if !compressed {
            payload == &plain[..]
        } else if !deflate {
            false
        } else if self.echo_cache[index].as_deref() == Some(payload) {
            true
        } else {
            self.inflated.clear();
            let inflated = self
                .codec
                .decompress(payload, plain.len(), &mut self.inflated);
            let ok = inflated.is_ok() && self.inflated == *plain;
            if ok {
                self.echo_cache[index] = Some(payload.to_vec());
            }
            ok
        };
        if !matches {
            return self.fail(i, FailKind::Mismatch);
        }
        let round_trip = now.saturating_duration_since(sent_at);
        let nanos = u64::try_from(round_trip.as_nanos()).unwrap_or(u64::MAX);
        self.outcome.latency.record(nanos);
        self.outcome.slowest = self.outcome.slowest.max(nanos);
        self.outcome.received += 1;
        if self.phase == Phase::Sending {
            self.outcome.in_window += 1;
        }
    }

    fn on_close(&mut self, i: usize, payload: &[u8]) {
        let code = match payload {
            [a, b, ..] => u16::from_be_bytes([*a, *b]),
            _ => NO_STATUS,
        };
        *self
            .outcome
            .close_codes
            .entry(code.to_string())
            .or_default() += 1;
        let conn = &mut self.conns[i];
        if conn.state == ConnState::Open {
            // The server closed first: answer with its code (§5.5.1) and count it.
            self.outcome.errors.server_closed += 1;
            let header = client_header(OpCode::Control(Control::Close), false, 2);
            push_masked(
                &mut conn.out,
                &header,
                &code.to_be_bytes(),
                mask(&mut self.rng),
            );
            self.flush(i);
        }
        self.finish(i);
    }

    /// Sends close 1000 on an open connection.
    fn start_close(&mut self, i: usize) {
        let conn = &mut self.conns[i];
        if conn.state != ConnState::Open {
            return;
        }
        let header = client_header(OpCode::Control(Control::Close), false, 2);
        push_masked(
            &mut conn.out,
            &header,
            &1000u16.to_be_bytes(),
            mask(&mut self.rng),
        );
        conn.state = ConnState::Closing;
        self.flush(i);
    }

    fn fail(&mut self, i: usize, kind: FailKind) {
        let errors = &mut self.outcome.errors;
        match kind {
            FailKind::Io => errors.io += 1,
            FailKind::Protocol => errors.protocol += 1,
            FailKind::Mismatch => errors.mismatch += 1,
            FailKind::EofWhileClosing => {}
        }
        if self.conns[i].state != ConnState::Done {
            *self.outcome.close_codes.entry("none".into()).or_default() += 1;
        }
        self.finish(i);
    }

    /// Marks connection `i` finished; its socket closes when wsload exits.
    fn finish(&mut self, i: usize) {
        let conn = &mut self.conns[i];
        if conn.state != ConnState::Done {
            self.open -= 1;
        }
        conn.state = ConnState::Done;
        conn.in_flight.clear();
        conn.stream.shutdown_write();
    }
}

#[derive(Clone, Copy, Debug)]
enum FailKind {
    Io,
    Protocol,
    Mismatch,
    /// The server closed TCP after wsload's close frame but before sending its own.
    EofWhileClosing,
}

/// Appends a header (MASK bit set), a fresh key and the payload masked with it.
fn push_masked(out: &mut Vec<u8>, header: &[u8], payload: &[u8], key: [u8; 4]) {
    let start = out.len();
    out.resize(start + header.len() + 4 + payload.len(), 0);
    put_masked(&mut out[start..], header, payload, key);
}

/// Writes a header (MASK bit set), a fresh key and the payload masked with it at the start of
/// `dst`, which must hold them; returns the frame's length.
fn put_masked(dst: &mut [u8], header: &[u8], payload: &[u8], key: [u8; 4]) -> usize {
    let (head, rest) = dst.split_at_mut(header.len());
    head.copy_from_slice(header);
    let (mask, rest) = rest.split_at_mut(4);
    mask.copy_from_slice(&key);
    copy_masked(&mut rest[..payload.len()], payload, key);
    header.len() + 4 + payload.len()
}

/// A generator for masks and handshake keys, which must be unpredictable to intermediaries
/// (RFC 6455 §5.3), not cryptographically strong: seeded through the random keys of
/// std's `RandomState`, which come from the kernel.
fn rng() -> Rng {
    Rng::with_seed(RandomState::new().hash_one(0u8))
}

/// A fresh masking key.
fn mask(rng: &mut Rng) -> [u8; 4] {
    rng.u32(..).to_ne_bytes()
}

// ---------------------------------------------------------------- measuring and reporting

/// Round trips in ns, in the server's histogram type with 64 buckets per power of two (under
/// 1.6 % error; one per value below 128 ns): 59 powers of two reach every `u64`.
type RoundTrips = Histogram<6, { 59 * 64 }>;

struct Report {
    connections: usize,
    size: usize,
    pipeline: usize,
    deflate_offered: bool,
    /// Every thread's outcome, merged.
    total: Outcome,
}

impl Report {
    fn new(plan: &Plan) -> Report {
        Report {
            connections: plan.connections,
            size: plan.size,
            pipeline: plan.pipeline,
            deflate_offered: plan.deflate,
            total: Outcome::default(),
        }
    }

    fn merge(&mut self, outcome: Outcome) {
        let t = &mut self.total;
        t.opened += outcome.opened;
        t.deflated += outcome.deflated;
        t.in_window += outcome.in_window;
        t.received += outcome.received;
        t.window = t.window.max(outcome.window);
        t.errors.add(&outcome.errors);
        t.latency.merge(&outcome.latency);
        t.slowest = t.slowest.max(outcome.slowest);
        t.per_conn = match (t.per_conn, outcome.per_conn) {
            (Some((a, b)), Some((c, d))) => Some((a.min(c), b.max(d))),
            (a, b) => a.or(b),
        };
        for (code, n) in outcome.close_codes {
            *t.close_codes.entry(code).or_default() += n;
        }
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = &self.total;
        let secs = t.window.as_secs_f64();
        let rate = if secs > 0.0 {
            t.in_window as f64 / secs
        } else {
            0.0
        };
        // A bucket's bound, or the slowest round trip where that is lower.
        let ms = |q: f64| t.latency.quantile(q).min(t.slowest) as f64 / 1e6;
        let e = &t.errors;
        writeln!(
            f,
            "connections: {} opened of {}, pipeline {}, {} B messages",
            t.opened, self.connections, self.pipeline, self.size
        )?;
        if self.deflate_offered {
            writeln!(
                f,
                "permessage-deflate: negotiated on {} of {} connections",
                t.deflated, t.opened
            )?;
        }
        writeln!(
            f,
            "messages: {} ({} in the {secs:.2}s window)",
            t.received, t.in_window
        )?;
        writeln!(f, "messages/s: {rate:.0}")?;
        if let Some((low, high)) = t.per_conn {
            writeln!(f, "echoes per connection: min {low} max {high}")?;
        }
        writeln!(
            f,
            "payload: {:.1} MB/s each way",
            rate * self.size as f64 / 1e6
        )?;
        writeln!(
            f,
            "latency ms: p50 {:.3} p99 {:.3} p99.9 {:.3} max {:.3}",
            ms(0.5),
            ms(0.99),
            ms(0.999),
            t.slowest as f64 / 1e6
        )?;
        writeln!(
            f,
            "errors: {} (handshake {}, mismatch {}, protocol {}, io {}, server-closed {}, close-timeout {})",
            e.total(),
            e.handshake,
            e.mismatch,
            e.protocol,
            e.io,
            e.server_closed,
            e.close_timeout
        )?;
        let codes: Vec<String> = t
            .close_codes
            .iter()
            .map(|(code, n)| format!("{code} x{n}"))
            .collect();
        writeln!(f, "close codes: {}", codes.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_parsed_as_the_server_parses_them() {
        let ports = |spec: &str| -> Result<Vec<(u16, String)>, String> {
            let args =
                Args::try_parse_from(["wsload", "--ports", spec]).map_err(|e| e.to_string())?;
            let plan = plan(&args)?;
            Ok(plan
                .addrs
                .into_iter()
                .map(|(addr, host)| (addr.port(), host))
                .collect())
        };
        let ok = |list: &[u16]| {
            Ok(list
                .iter()
                .map(|&p| (p, format!("127.0.0.1:{p}")))
                .collect())
        };
        assert_eq!(ports("8001-8003,9000"), ok(&[8001, 8002, 8003, 9000]));
        assert_eq!(ports("80"), ok(&[80]));
        assert_eq!(
            ports("9-8"),
            Err("invalid --ports '9-8': range 9-8 is reversed".to_owned())
        );
        assert_eq!(
            ports("0"),
            Err("invalid --ports '0': port 0 is out of range 1-65535".to_owned())
        );
        assert_eq!(
            ports("x"),
            Err("invalid --ports 'x': 'x' is not a port number".to_owned())
        );
    }

    #[test]
    fn client_frames_are_masked_and_parse_back() {
        let header = client_header(OpCode::Data(Data::Binary), false, 300);
        let mut out = Vec::new();
        push_masked(&mut out, &header, &[7u8; 300], [1, 2, 3, 4]);
        let (parsed, len) = parse_header(&out).ok().flatten().expect("header");
        assert_eq!(parsed.mask, Some([1, 2, 3, 4]));
        assert_eq!((parsed.payload_len, len), (300, 8));
        let mut payload = out[len..].to_vec();
        percore::ws::apply_mask(&mut payload, [1, 2, 3, 4], 0);
        assert_eq!(payload, vec![7u8; 300]);
    }

    #[test]
    fn handshake_response_is_validated() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let good =
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                    Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert_eq!(
            check_response(good.as_bytes(), key, false),
            Ok(Some((good.len(), false)))
        );
        assert_eq!(check_response(&good.as_bytes()[..40], key, false), Ok(None));
        let wrong = good.replace("s3pP", "AAAA");
        assert!(check_response(wrong.as_bytes(), key, false).is_err());
        let not_101 = good.replace("101 Switching Protocols", "404 Not Found");
        assert!(check_response(not_101.as_bytes(), key, false).is_err());
        let deflate = good.replace(
            "\r\n\r\n",
            "\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n\r\n",
        );
        assert_eq!(
            check_response(deflate.as_bytes(), key, true),
            Ok(Some((deflate.len(), true)))
        );
        assert!(check_response(deflate.as_bytes(), key, false).is_err());
    }

    #[test]
    fn variants_differ_and_compress_back() {
        let variants = variants(100, true, &mut rng());
        let mut codec = Codec::new();
        for (i, v) in variants.iter().enumerate() {
            assert_eq!(v.plain.len(), 100);
            assert!(std::str::from_utf8(&v.plain).is_ok());
            assert!(variants[..i].iter().all(|w| w.plain != v.plain));
            let mut inflated = Vec::new();
            assert!(codec.decompress(&v.compressed, 100, &mut inflated).is_ok());
            assert_eq!(inflated, v.plain);
        }
    }
}
