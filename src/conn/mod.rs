//! One client connection's protocol state machine, sans-IO: HTTP/1.1 exchanges, then (after an
//! upgrade) a WebSocket session on the same buffers.
//!
//! A [`Conn`] owns everything one connection's protocol needs: its [`State`] (reading a head,
//! skipping a body, idle, closing, lingering, upgraded), its buffers, the deadline that applies
//! and the order of things: read what the peer has, turn every complete request into exactly
//! one response (pipelining), skip bodies, hand WebSocket bytes to the session, decide when to
//! write, and when and how to close. It asks a [`Transport`] to move bytes (the worker's socket,
//! or [`memory::Peer`] in tests and fuzzing) and a [`Respond`]er for the response to a request
//! (the worker's static files); it never touches a socket, a file or a clock itself: the caller
//! passes "now".
//!
//! Invariant: every request gets exactly one response. A request whose body turns out to be
//! malformed (or too large) after its response was queued keeps that response as its only one,
//! and the connection closes once it is written: nothing after a broken body can be delimited.

mod buffers;
pub mod memory;
mod refusal;

pub use buffers::{Filled, InputBuffer, Output, Pool, BUFFER_SIZE};
pub use refusal::Refusal;

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::access_log::{self, Recorder};
use crate::http::{self, BodySkipper, Method, Parse, Request, Response, Skip, Status, Version};
use crate::metrics::{Counters, WsCounters};
use crate::ws::{self, Session, WsConfig};

/// Above this many buffered output bytes, stop parsing and reading until the client catches up.
const OUTPUT_HIGH_WATER: usize = 256 * 1024;
/// Most bytes one connection reads per turn; then the worker serves others and comes back
/// (edge-triggered epoll will not remind it), so a fast sender cannot starve its neighbours.
pub const READ_BUDGET: usize = 256 * 1024;
/// While the peer still has input, answers accumulate up to this much before one write: half a
/// read budget, so a busy connection writes twice per turn. Each write to a local peer runs its
/// receive path and wakes it: with 64 KiB a 16 KiB echo load (`compare.sh ws16k`) made 0.27
/// writes per message, with 128 KiB 0.16, for 8 % more messages/s and p99 15.7 -> 9.0 ms.
const FLUSH_AT: usize = 128 * 1024;
/// Longest a lingering close waits for the client to stop sending (nginx's lingering_time is 30 s;
/// ours only has to outlast a client still writing a rejected request).
pub const LINGER_TIMEOUT: Duration = Duration::from_secs(5);

/// What answers requests: the application behind HTTP (the worker's static files).
pub trait Respond {
    /// The response to `req`, which is not an upgrade request. `now_secs` is the wall clock in
    /// whole seconds (for revalidating cached files).
    fn respond(&mut self, req: &Request<'_>, now_secs: u64) -> Response<'_>;
}

/// The I/O a connection asks for: performed on a socket by the worker, in memory by tests.
pub trait Transport {
    /// Reads what the peer has into `input`, until drained or `input` holds `max` bytes.
    fn read(&mut self, input: &mut InputBuffer, pool: &mut Pool, max: usize) -> io::Result<Filled>;
    /// Writes the pending bytes, then the file region, until done or the peer is full. `last`
    /// promises that the write side is shut right after a complete write, so the final bytes
    /// may be held back to leave with the FIN.
    fn write(&mut self, output: &mut Output, last: bool) -> io::Result<Written>;
    /// Sends a FIN after what was written.
    fn shutdown_write(&mut self) -> io::Result<()>;
    /// The client's address, for the access log (asked only while it is on).
    fn peer(&self) -> Option<SocketAddr>;
}

/// What one [`Transport::write`] achieved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// Bytes handed to the peer.
    pub bytes: u64,
    /// Everything was handed over; otherwise the peer is full: wait until it can take more.
    pub all: bool,
}

/// How long each phase of a connection may last.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// A request head, from its first byte (and the first request, from the accept).
    pub header: Duration,
    /// Between requests.
    pub keep_alive: Duration,
    /// Output waiting for the client to read, restarted by every write that moves bytes.
    pub send: Duration,
    /// A lingering close.
    pub linger: Duration,
    /// A WebSocket with no traffic, before it is pinged.
    pub ws_ping_interval: Duration,
    /// A pinged WebSocket, before it is given up.
    pub ws_ping_timeout: Duration,
    /// Our close frame waiting for the client's.
    pub ws_close: Duration,
}

impl Timeouts {
    fn of(&self, timer: Timer) -> Duration {
        match timer {
            Timer::Header => self.header,
            Timer::KeepAlive => self.keep_alive,
            Timer::Send => self.send,
            Timer::Linger => self.linger,
            Timer::WsPing => self.ws_ping_interval,
            Timer::WsPong => self.ws_ping_timeout,
            Timer::WsClose => self.ws_close,
        }
    }
}

/// Everything the connections of one worker share while being driven.
pub struct Shared {
    pub pool: Pool,
    pub counters: Counters,
    pub limits: http::Limits,
    /// Largest read buffer a connection may hold: room for the largest head the limits allow,
    /// so the parser can tell 414/431 from "partial".
    pub max_input: usize,
    /// [`READ_BUDGET`] (smaller in tests).
    pub read_budget: usize,
    /// The current IMF-fixdate, refreshed once a second.
    pub date: [u8; 29],
    /// Whole seconds of wall-clock time that `date` shows.
    pub now_secs: u64,
    /// Keep-alive allowed at all (not draining, timeout not zero).
    pub keep_alive: bool,
    pub ws: WsConfig,
    /// The worker's shared permessage-deflate codec (no context survives between messages).
    pub codec: ws::Codec,
    pub timeouts: Timeouts,
    /// Reads the clock when a response is fully written, for the latency histogram
    /// (`Instant::now`; a test passes its own).
    pub clock: fn() -> Instant,
    /// The worker's access log, when it is on.
    pub access_log: Option<Recorder>,
    /// `--cors-origins`: who may read responses cross-origin.
    pub cors: http::CorsPolicy,
    /// Scratch for one response's CORS lines.
    pub cors_lines: Vec<u8>,
}

impl Shared {
    pub fn new(limits: http::Limits, ws: WsConfig, timeouts: Timeouts) -> Shared {
        Shared {
            pool: Pool::default(),
            counters: Counters::default(),
            max_input: (limits.max_head.max(limits.max_request_line) + 1).max(BUFFER_SIZE),
            limits,
            read_budget: READ_BUDGET,
            date: [b' '; 29],
            now_secs: 0,
            keep_alive: !timeouts.keep_alive.is_zero(),
            // Half a read buffer: a frame that fits waits whole in the input, and a read
            // brings at least one more behind it.
            ws: WsConfig {
                whole_frame_max: BUFFER_SIZE / 2,
                ..ws
            },
            codec: ws::Codec::new(),
            timeouts,
            clock: Instant::now,
            access_log: None,
            cors: http::CorsPolicy::Off,
            cors_lines: Vec::new(),
        }
    }
}

/// Which deadline a connection is under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timer {
    /// A request head is arriving, or a body is being skipped: restarted by each answer and
    /// by body bytes.
    Header,
    /// Idle between requests.
    KeepAlive,
    /// Output waiting for the client: restarted by every write that moves bytes.
    Send,
    /// Lingering after the last response.
    Linger,
    /// A quiet WebSocket: restarted by every byte received; then it is pinged.
    WsPing,
    /// A pinged WebSocket waiting for any sign of life.
    WsPong,
    /// Our close frame sent, the client's awaited.
    WsClose,
}

/// When the connection's current phase ends, and which phase it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline {
    pub timer: Timer,
    pub at: Instant,
}

/// Whether the connection stays open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Open,
    Close,
}

/// What one [`Conn::drive`] call ended with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Driven {
    pub verdict: Verdict,
    /// The read budget ran out with input still waiting: drive again after the others.
    pub more: bool,
}

impl Driven {
    pub const CLOSE: Driven = Driven {
        verdict: Verdict::Close,
        more: false,
    };
}

/// The protocol phase of a connection.
enum State {
    /// Nothing has arrived yet: the header timeout runs from the accept.
    New,
    /// Between requests, nothing buffered.
    Idle,
    /// Part of a request head has arrived.
    Head,
    /// Discarding the body of a request that has been answered.
    Body(BodySkipper),
    /// The last response is queued; close once it is written. `linger`: the client may still
    /// be sending, so close by lingering rather than at once.
    Closing { linger: bool },
    /// The write side is shut; reading and dropping what the client sends until it closes, so
    /// unread input does not turn our close into a reset that destroys the response.
    Lingering,
    /// Upgraded (boxed: most connections never upgrade).
    WebSocket(Box<WebSocket>),
}

struct WebSocket {
    session: Session,
    /// A liveness ping was sent and nothing has been received since.
    pinged: bool,
}

/// What happens once the output has been written in full.
enum AfterFlush {
    Continue,
    Close,
    /// Shut the write side; then close at once, or linger (the state is already Lingering).
    Shutdown {
        linger: bool,
    },
}

/// One connection's protocol state and buffers.
pub struct Conn {
    state: State,
    input: InputBuffer,
    output: Output,
    /// The current phase's deadline and its timer (kept apart, not as a [`Deadline`], so the
    /// timer's byte packs with the flags below: an idle connection's size is its memory).
    deadline_at: Instant,
    timer: Timer,
    /// When the oldest request whose response is not yet fully written began to arrive.
    request_started: Option<Instant>,
    /// Responses queued but not yet fully written.
    unflushed: u32,
    /// The peer said it has bytes that have not been read yet (an edge not yet drained).
    readable: bool,
    /// The peer will send nothing more.
    eof: bool,
    /// The connection was upgraded to WebSocket at some point.
    upgraded: bool,
    /// Since the deadline was last settled: bytes were received, a request was answered,
    /// bytes were written.
    received: bool,
    answered: bool,
    wrote: bool,
}

impl Conn {
    /// A new connection: the header timeout runs from now.
    pub fn new(now: Instant, timeouts: &Timeouts) -> Conn {
        Conn {
            state: State::New,
            input: InputBuffer::default(),
            output: Output::default(),
            deadline_at: now + timeouts.header,
            timer: Timer::Header,
            request_started: None,
            unflushed: 0,
            readable: false,
            eof: false,
            upgraded: false,
            received: false,
            answered: false,
            wrote: false,
        }
    }

    /// The peer has bytes to read (an edge from epoll, or the first turn after accept).
    pub fn set_readable(&mut self) {
        self.readable = true;
    }

    pub fn deadline(&self) -> Deadline {
        Deadline {
            timer: self.timer,
            at: self.deadline_at,
        }
    }

    /// Whether the connection was ever upgraded to WebSocket.
    pub fn was_upgraded(&self) -> bool {
        self.upgraded
    }

    /// Whether a drain may close this connection at once: nothing received or owed, and no
    /// WebSocket (which gets a close frame first).
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::New | State::Idle | State::Lingering)
            && self.input.is_empty()
            && self.output.is_empty()
    }

    /// Bytes of memory the input buffer holds (its length: a pooled buffer or a kept rest).
    #[cfg(test)]
    pub fn input_capacity(&self) -> usize {
        self.input.capacity()
    }

    /// Whether buffers are held (an idle connection holds none).
    pub fn holds_buffers(&self) -> (bool, bool) {
        (self.input.holds_buffer(), self.output.holds_buffer())
    }

    /// Gives the buffers back to the pool, dropping unsent output, before the connection is
    /// closed: its last turn usually ends in a close, not in the release at the end of `drive`,
    /// and a freed read buffer would cost the next connection a fresh zeroed one.
    pub fn release_buffers(&mut self, pool: &mut Pool) {
        self.input.release(pool);
        self.output.discard();
        self.output.release_if_empty(pool);
    }

    /// Reads, answers and writes until nothing more can happen without a new event.
    pub fn drive<T: Transport, R: Respond>(
        &mut self,
        io: &mut T,
        app: &mut R,
        shared: &mut Shared,
        now: Instant,
    ) -> Driven {
        let mut budget = shared.read_budget;
        loop {
            let mut progress = false;
            if self.readable && budget > 0 && self.wants_input() {
                let Ok(filled) = io.read(&mut self.input, &mut shared.pool, shared.max_input)
                else {
                    return Driven::CLOSE;
                };
                budget = budget.saturating_sub(filled.bytes);
                self.readable &= !filled.drained;
                self.eof |= filled.eof;
                if filled.bytes > 0 {
                    progress = true;
                    self.on_received(now);
                }
            }
            progress |= self.process(&*io, app, shared, now);
            // More input is waiting and little is queued: read on, then write it all at once.
            if progress && self.readable && !self.eof && budget > 0 && self.may_defer_flush() {
                continue;
            }
            let last = self.is_closing();
            let written = match io.write(&mut self.output, last) {
                Ok(written) => written,
                Err(_) => return Driven::CLOSE,
            };
            let wrote = self.count_written(written, &mut shared.counters);
            if written.all {
                match self.flushed(shared) {
                    // Output that drained may unblock requests held back by backpressure.
                    AfterFlush::Continue => progress |= wrote,
                    AfterFlush::Close => return Driven::CLOSE,
                    AfterFlush::Shutdown { linger } => {
                        let shut = io.shutdown_write().is_ok();
                        if !shut || !linger {
                            return Driven::CLOSE;
                        }
                        progress = true;
                    }
                }
            }
            if !progress {
                break;
            }
        }
        // At EOF every complete request has been answered; what is left is a partial request.
        if self.eof && self.output.is_empty() {
            return Driven::CLOSE;
        }
        self.input.settle(&mut shared.pool, !self.readable);
        self.output.release_if_empty(&mut shared.pool);
        self.settle(now, &shared.timeouts);
        Driven {
            verdict: Verdict::Open,
            more: budget == 0 && self.readable && self.wants_input(),
        }
    }

    /// The deadline has passed: a partial request head gets 408, a quiet WebSocket a ping,
    /// a pinged one that stayed silent a close frame with 1001; every phase but a ping ends
    /// with the connection closed. Whatever is written gets one attempt: a client that stalled
    /// gets no further time for the answer.
    pub fn expire<T: Transport>(
        &mut self,
        io: &mut T,
        shared: &mut Shared,
        now: Instant,
    ) -> Verdict {
        match (&mut self.state, self.timer) {
            (State::Head, Timer::Header) => {
                self.refuse(Refusal::HeaderTimeout, &*io, shared, now);
                self.write_once(io, shared, true);
                let _ = io.shutdown_write();
                Verdict::Close
            }
            (State::WebSocket(ws), Timer::WsPing) => {
                ws.session.ping(b"", self.output.buf(&mut shared.pool));
                ws.pinged = true;
                self.write_once(io, shared, false);
                self.settle(now, &shared.timeouts);
                Verdict::Open
            }
            // Silent through the ping interval and the ping timeout: say why in a close frame
            // (best effort, as Jetty does for idle timeouts), then drop without waiting for an
            // answer that is not coming.
            (State::WebSocket(ws), Timer::WsPong) => {
                ws.session
                    .close(1001, "", self.output.buf(&mut shared.pool));
                record_ws_stats(&mut ws.session, &mut shared.counters.ws);
                self.write_once(io, shared, true);
                let _ = io.shutdown_write();
                Verdict::Close
            }
            _ => Verdict::Close,
        }
    }

    /// The server is draining: an idle connection closes now; a WebSocket gets close 1001
    /// (RFC 6455 §7.4.1: "going away", such as a server going down); the rest finish what
    /// they are doing (keep-alive is off by then, so their next response closes them).
    pub fn drain<T: Transport>(
        &mut self,
        io: &mut T,
        shared: &mut Shared,
        now: Instant,
    ) -> Verdict {
        if self.is_idle() {
            return Verdict::Close;
        }
        if let State::WebSocket(ws) = &mut self.state {
            if ws.session.state() == ws::State::Open {
                ws.session
                    .close(1001, "", self.output.buf(&mut shared.pool));
                record_ws_stats(&mut ws.session, &mut shared.counters.ws);
                self.write_once(io, shared, false);
                self.settle(now, &shared.timeouts);
            }
        }
        Verdict::Open
    }

    /// One write attempt outside `drive` (a ping, a close frame, a 408).
    fn write_once<T: Transport>(&mut self, io: &mut T, shared: &mut Shared, last: bool) {
        if let Ok(written) = io.write(&mut self.output, last) {
            self.count_written(written, &mut shared.counters);
        }
    }

    /// Counts written bytes; whether any moved.
    fn count_written(&mut self, written: Written, counters: &mut Counters) -> bool {
        counters.bytes_sent += written.bytes;
        self.wrote |= written.bytes > 0;
        written.bytes > 0
    }

    /// Whether requests are still being read (not closing, not upgraded).
    fn is_answering(&self) -> bool {
        matches!(
            self.state,
            State::New | State::Idle | State::Head | State::Body(_)
        )
    }

    fn wants_input(&self) -> bool {
        !self.eof && !self.output_backlogged() && !self.is_closing()
    }

    fn is_closing(&self) -> bool {
        matches!(self.state, State::Closing { .. })
    }

    fn output_backlogged(&self) -> bool {
        self.output.has_file() || self.output.buffered() >= OUTPUT_HIGH_WATER
    }

    fn may_defer_flush(&self) -> bool {
        self.output.buffered() < FLUSH_AT && !self.output.has_file() && !self.is_closing()
    }

    fn on_received(&mut self, now: Instant) {
        self.received = true;
        if self.request_started.is_none() {
            self.request_started = Some(now);
        }
        if let State::WebSocket(ws) = &mut self.state {
            ws.pinged = false;
        }
    }

    /// Turns what the input holds into answers; returns whether anything happened.
    fn process<T: Transport, R: Respond>(
        &mut self,
        io: &T,
        app: &mut R,
        shared: &mut Shared,
        now: Instant,
    ) -> bool {
        match self.state {
            State::New | State::Idle | State::Head | State::Body(_) => {
                self.answer_http(io, app, shared, now)
            }
            State::WebSocket(_) => self.answer_ws(shared),
            State::Lingering => {
                self.input.clear();
                false
            }
            State::Closing { .. } => false,
        }
    }

    /// Answers every complete request in the input, skipping bodies between them.
    fn answer_http<T: Transport, R: Respond>(
        &mut self,
        io: &T,
        app: &mut R,
        shared: &mut Shared,
        now: Instant,
    ) -> bool {
        let mut progress = false;
        while self.is_answering() && !self.input.is_empty() && !self.output_backlogged() {
            if let State::Body(skipper) = &mut self.state {
                match skipper.skip(self.input.bytes()) {
                    Ok(Skip::Done { consumed }) => {
                        self.input.consume(consumed);
                        self.state = State::Idle;
                        progress = true;
                        continue;
                    }
                    Ok(Skip::NeedMore { consumed }) => {
                        self.input.consume(consumed);
                        progress |= consumed > 0;
                        break;
                    }
                    Err(_) => {
                        // The response to this request is queued already and stays its only
                        // one; nothing after a broken body can be delimited, so close after it.
                        self.state = State::Closing { linger: true };
                        self.input.clear();
                        return true;
                    }
                }
            }
            let req = match http::parse_request(self.input.bytes_mut(), &shared.limits) {
                Ok(Parse::Complete(req)) => req,
                Ok(Parse::Partial) => break,
                Err(error) => {
                    self.refuse(Refusal::Request(error), io, shared, now);
                    return true;
                }
            };
            let head_len = req.head_len;
            if ws::is_upgrade_request(&req) {
                let decision = ws::evaluate(&req, &shared.ws);
                if shared.access_log.is_some() {
                    let (status, bytes) = match &decision {
                        ws::Upgrade::Accept(_) => (Status::SWITCHING_PROTOCOLS, 0),
                        ws::Upgrade::Reject(refused) => {
                            let response = Refusal::Handshake(*refused).response();
                            (response.status, response.content_length().unwrap_or(0))
                        }
                    };
                    let started = self.request_started;
                    log_response(shared, io, Some(&req), status, bytes, started, now);
                }
                self.input.consume(head_len);
                self.upgrade(decision, shared, now);
                return true;
            }
            let keep_alive = req.keep_alive && shared.keep_alive && !self.eof;
            let (version, framing, head_only) = (req.version, req.body, req.method == Method::Head);
            let mut response = app.respond(&req, shared.now_secs);
            shared.counters.record_status(response.status);
            if shared.access_log.is_some() {
                let bytes = match head_only {
                    true => 0,
                    false => response.content_length().unwrap_or(0),
                };
                let (status, started) = (response.status, self.request_started);
                log_response(shared, io, Some(&req), status, bytes, started, now);
            }
            if !shared.cors.is_off() {
                shared.cors_lines.clear();
                shared.cors.write_lines(&req, &mut shared.cors_lines);
                response.extra_lines = &shared.cors_lines;
            }
            let out = self.output.buf(&mut shared.pool);
            if let Some(region) = response.write(out, &shared.date, version, keep_alive, head_only)
            {
                self.output.set_file(region);
            }
            self.input.consume(head_len);
            self.on_answered(now);
            self.state = match (
                BodySkipper::new(framing, shared.limits.max_body),
                keep_alive,
            ) {
                (None, true) => State::Idle,
                (Some(skipper), true) => State::Body(skipper),
                // A body may still be on its way: linger so it cannot reset the response.
                (skipper, false) => State::Closing {
                    linger: skipper.is_some(),
                },
            };
            progress = true;
        }
        match self.state {
            State::New | State::Idle if !self.input.is_empty() => self.state = State::Head,
            State::Head if self.input.is_empty() => self.state = State::Idle,
            _ => {}
        }
        progress
    }

    /// Switches to the WebSocket protocol (101) or refuses the upgrade and closes.
    fn upgrade(&mut self, decision: ws::Upgrade, shared: &mut Shared, now: Instant) {
        match decision {
            ws::Upgrade::Accept(accepted) => {
                ws::write_accept(self.output.buf(&mut shared.pool), &accepted, &shared.date);
                shared
                    .counters
                    .record_status(http::Status::SWITCHING_PROTOCOLS);
                shared.counters.ws.upgrades += 1;
                self.on_answered(now);
                self.upgraded = true;
                self.state = State::WebSocket(Box::new(WebSocket {
                    session: Session::new(&shared.ws, accepted.deflate),
                    pinged: false,
                }));
            }
            ws::Upgrade::Reject(refused) => {
                self.refuse_logged(Refusal::Handshake(refused), shared, now);
            }
        }
    }

    /// Answers a request that cannot be served and closes after it, by lingering: the client
    /// may still be sending what came with it. The access log gets a line without a request:
    /// its head could not be read.
    fn refuse<T: Transport>(
        &mut self,
        refusal: Refusal,
        io: &T,
        shared: &mut Shared,
        now: Instant,
    ) {
        if shared.access_log.is_some() {
            let response = refusal.response();
            let bytes = response.content_length().unwrap_or(0);
            let started = self.request_started;
            log_response(shared, io, None, response.status, bytes, started, now);
        }
        self.refuse_logged(refusal, shared, now);
    }

    /// [`Conn::refuse`] for a refusal whose line is already in the access log.
    fn refuse_logged(&mut self, refusal: Refusal, shared: &mut Shared, now: Instant) {
        let response = refusal.response();
        shared.counters.record_status(response.status);
        let out = self.output.buf(&mut shared.pool);
        response.write(out, &shared.date, Version::Http11, false, false);
        self.on_answered(now);
        self.state = State::Closing { linger: true };
        self.input.clear();
    }

    fn on_answered(&mut self, now: Instant) {
        self.unflushed = self.unflushed.saturating_add(1);
        self.answered = true;
        if self.request_started.is_none() {
            self.request_started = Some(now);
        }
    }

    /// Hands received bytes to the WebSocket session; returns whether anything happened.
    fn answer_ws(&mut self, shared: &mut Shared) -> bool {
        let State::WebSocket(ws) = &mut self.state else {
            return false;
        };
        let mut progress = false;
        while !self.input.is_empty() && self.output.buffered() < ws::OUT_SOFT_LIMIT {
            let received = ws.session.receive(
                self.input.bytes_mut(),
                self.output.buf(&mut shared.pool),
                &mut shared.codec,
            );
            self.input.consume(received.consumed);
            record_ws_stats(&mut ws.session, &mut shared.counters.ws);
            if received.state == ws::State::Closed {
                // RFC 6455 §7.1.1: the server closes the TCP connection first, once its close
                // is sent. A failed session's client may be mid-frame: drain what it still
                // sends rather than let a close with unread input reset the connection under
                // the close frame.
                self.state = State::Closing {
                    linger: !ws.session.client_closed(),
                };
                self.input.clear();
                return true;
            }
            if received.consumed == 0 {
                break;
            }
            progress = true;
        }
        progress
    }

    /// The output has been written in full: record the latency of what it answered, and close
    /// if that was the last response.
    fn flushed(&mut self, shared: &mut Shared) -> AfterFlush {
        if self.unflushed > 0 {
            self.record_latency(shared);
        }
        match self.state {
            State::Closing { linger } => {
                if self.eof {
                    return AfterFlush::Close;
                }
                // The last bytes were held with MSG_MORE. Bytes the client sends from now on
                // would turn close() into a reset that discards them; shutting the write side
                // sends them, with the FIN, first.
                let linger = linger || !self.input.is_empty() || self.readable;
                if linger {
                    self.state = State::Lingering;
                    self.input.clear();
                    // Read at least once more: the client may have sent while we were closing.
                    self.readable = true;
                }
                AfterFlush::Shutdown { linger }
            }
            State::Lingering if self.eof => AfterFlush::Close,
            _ => AfterFlush::Continue,
        }
    }

    fn record_latency(&mut self, shared: &mut Shared) {
        let now = (shared.clock)();
        if let Some(started) = self.request_started.take() {
            let micros = now.saturating_duration_since(started).as_micros();
            let micros = u64::try_from(micros).unwrap_or(u64::MAX);
            for _ in 0..self.unflushed {
                shared.counters.latency.record(micros);
            }
        }
        self.unflushed = 0;
        // Bytes already buffered belong to the next request.
        if !self.input.is_empty() {
            self.request_started = Some(now);
        }
    }

    /// The deadline class this connection is in now.
    fn current_timer(&self) -> Timer {
        match &self.state {
            State::Lingering => Timer::Linger,
            _ if !self.output.is_empty() => Timer::Send,
            State::WebSocket(ws) if ws.session.state() != ws::State::Open => Timer::WsClose,
            State::WebSocket(ws) if ws.pinged => Timer::WsPong,
            State::WebSocket(_) => Timer::WsPing,
            State::New | State::Head | State::Body(_) => Timer::Header,
            State::Idle => Timer::KeepAlive,
            State::Closing { .. } => Timer::Send,
        }
    }

    /// Chooses the deadline after a drive: a new phase starts its timer from now; within a
    /// phase, a head's and an idle connection's timers restart with every answered request (a
    /// connection that keeps sending requests is never idle), a body's with every byte, the
    /// send timer with every write that moved bytes, a WebSocket's ping interval with every
    /// byte received; the closing phases run from their start.
    fn settle(&mut self, now: Instant, timeouts: &Timeouts) {
        let timer = self.current_timer();
        let restart = timer != self.timer
            || match timer {
                Timer::Header => {
                    self.answered || (self.received && matches!(self.state, State::Body(_)))
                }
                Timer::KeepAlive => self.answered,
                Timer::Send => self.wrote,
                Timer::WsPing => self.received,
                Timer::Linger | Timer::WsPong | Timer::WsClose => false,
            };
        if restart {
            self.timer = timer;
            self.deadline_at = now + timeouts.of(timer);
        }
        self.received = false;
        self.answered = false;
        self.wrote = false;
    }
}

/// Writes the access-log line of one response (the caller checked that the log is on).
fn log_response<T: Transport>(
    shared: &mut Shared,
    io: &T,
    request: Option<&Request<'_>>,
    status: Status,
    bytes: u64,
    started: Option<Instant>,
    now: Instant,
) {
    let now_secs = shared.now_secs;
    if let Some(log) = shared.access_log.as_mut() {
        let entry = access_log::Entry {
            peer: io.peer(),
            request,
            status,
            bytes,
            duration: now.saturating_duration_since(started.unwrap_or(now)),
        };
        log.record(&entry, now_secs);
    }
}

/// Moves a session's counters into the worker's.
fn record_ws_stats(session: &mut Session, counters: &mut WsCounters) {
    let stats = session.stats();
    counters.messages_in += stats.messages_in;
    counters.messages_out += stats.messages_out;
    counters.bytes_in += stats.bytes_in;
    counters.bytes_out += stats.bytes_out;
    if let Some(code) = stats.close_sent {
        counters.close_sent[WsCounters::close_slot(code)] += 1;
    }
    if let Some(code) = stats.close_received {
        counters.close_received[WsCounters::close_slot(code)] += 1;
    }
}

#[cfg(test)]
mod tests;
