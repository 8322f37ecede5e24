//! One client connection and the HTTP exchange loop that drives it.
//!
//! Owns the per-connection state machine: read what the socket has, turn every complete
//! request in the buffer into a response (pipelining), flush once, and decide which deadline
//! applies. Parsing and encoding are `http`'s; file decisions are `files`'; this module only
//! sequences them and moves bytes. It never blocks and never calls epoll_ctl.

use std::net::TcpStream;
use std::time::Instant;

use crate::http::{self, BodySkipper, Parse, Skip};
use crate::metrics::Counters;

use super::buffers::{Flushed, InputBuffer, Output, Pool};
use super::static_files::{Exchange, StaticFiles};

/// Above this many buffered output bytes, stop parsing and reading until the client catches up.
const OUTPUT_HIGH_WATER: usize = 256 * 1024;
/// Longest a lingering close waits for the client to stop sending (nginx's lingering_time is 30 s;
/// ours only has to outlast a client still writing a rejected request).
pub const LINGER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Which deadline a connection is under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for (the rest of) a request head: header timeout, counted from the request's start.
    Head,
    /// Discarding a request body: header timeout, reset on progress.
    Body,
    /// Between requests with nothing buffered: keep-alive timeout.
    Idle,
    /// Output waiting for the client to read: send timeout, reset on progress.
    Sending,
    /// Response sent and write side shut; discarding what the client still sends until it
    /// closes, so unread input does not turn our close into a reset that destroys the response.
    Lingering,
}

pub struct Connection {
    pub stream: TcpStream,
    pub input: InputBuffer,
    pub output: Output,
    body: Option<BodySkipper>,
    /// An EPOLLIN edge whose data has not been drained yet.
    pub readable: bool,
    /// The peer will send nothing more.
    eof: bool,
    /// Close once the output is flushed (Connection: close, an error, or shutdown).
    close_after_flush: bool,
    /// The client may still be sending (a rejected request): close by lingering.
    linger: bool,
    /// Write side shut; only discarding input until EOF.
    lingering: bool,
    /// Requests answered so far.
    pub served: u32,
    pub phase: Phase,
    /// Tick at which the current phase expires.
    pub deadline: u64,
    /// Tick of this connection's live timer-wheel entry, `u64::MAX` if none.
    pub armed: u64,
    /// When the oldest request whose response is not yet fully written began to arrive.
    request_started: Option<Instant>,
    /// Responses queued but not yet fully written.
    unflushed: u32,
}

/// Whether the connection stays open after being driven.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Open,
    Close,
}

/// Everything a connection borrows from its worker while being driven.
pub struct Service<'w> {
    pub files: &'w mut StaticFiles,
    pub pool: &'w mut Pool,
    pub counters: &'w mut Counters,
    pub limits: &'w http::Limits,
    pub date: &'w [u8],
    pub now_secs: u64,
    /// Keep-alive allowed at all (not draining, timeout not zero).
    pub keep_alive: bool,
    /// Largest read buffer a connection may hold.
    pub max_input: usize,
}

impl Connection {
    pub fn new(stream: TcpStream) -> Connection {
        Connection {
            stream,
            input: InputBuffer::default(),
            output: Output::default(),
            body: None,
            readable: false,
            eof: false,
            close_after_flush: false,
            linger: false,
            lingering: false,
            served: 0,
            phase: Phase::Head,
            deadline: u64::MAX,
            armed: u64::MAX,
            request_started: None,
            unflushed: 0,
        }
    }

    /// Reads, answers and writes until nothing more can happen without a new event.
    /// Returns whether any bytes were written (for send-timeout resets) and the verdict.
    pub fn drive(&mut self, svc: &mut Service<'_>) -> (bool, Verdict) {
        if self.lingering {
            return (false, self.discard_input(svc));
        }
        let mut wrote = false;
        loop {
            let mut progress = false;
            if self.readable && !self.eof && !self.output_backlogged() {
                let was_empty = self.input.is_empty();
                match self.input.fill(&self.stream, svc.pool, svc.max_input) {
                    Ok(filled) => {
                        if filled.bytes > 0 {
                            progress = true;
                            if was_empty && self.request_started.is_none() {
                                self.request_started = Some(Instant::now());
                            }
                        }
                        if filled.drained {
                            self.readable = false;
                        }
                        if filled.eof {
                            self.eof = true;
                        }
                    }
                    Err(_) => return (wrote, Verdict::Close),
                }
            }
            progress |= self.answer(svc);
            let before = svc.counters.bytes_sent;
            let flushed = self
                .output
                .flush(&self.stream, &mut svc.counters.bytes_sent);
            let wrote_now = svc.counters.bytes_sent != before;
            wrote |= wrote_now;
            match flushed {
                Ok(Flushed::All) => {
                    self.record_latency(svc.counters);
                    if self.close_after_flush {
                        return (true, self.finish(svc));
                    }
                    // Output that drained may unblock requests held back by backpressure.
                    progress |= wrote_now;
                }
                Ok(Flushed::Blocked) => {}
                Err(_) => return (wrote, Verdict::Close),
            }
            if !progress {
                break;
            }
        }
        // At EOF every complete request has been answered; what is left is a partial request.
        if self.eof && self.output.is_empty() {
            return (wrote, Verdict::Close);
        }
        self.input.release_if_empty(svc.pool);
        self.output.release_if_empty(svc.pool);
        (wrote, Verdict::Open)
    }

    /// Closes after the last response: at once, or by lingering when the client may still be
    /// sending (then the write side is shut so the client sees the end of the response).
    fn finish(&mut self, svc: &mut Service<'_>) -> Verdict {
        let unread = self.linger || !self.input.is_empty() || (self.readable && !self.eof);
        if !unread || self.eof {
            return Verdict::Close;
        }
        if self.stream.shutdown(std::net::Shutdown::Write).is_err() {
            return Verdict::Close;
        }
        self.lingering = true;
        self.readable = true;
        self.body = None;
        self.input.clear();
        self.discard_input(svc)
    }

    /// Reads and drops input until the client closes (or the socket has nothing more for now).
    fn discard_input(&mut self, svc: &mut Service<'_>) -> Verdict {
        while self.readable {
            match self.input.fill(&self.stream, svc.pool, svc.max_input) {
                Ok(filled) => {
                    self.input.clear();
                    if filled.eof {
                        return Verdict::Close;
                    }
                    if filled.drained {
                        self.readable = false;
                    }
                }
                Err(_) => return Verdict::Close,
            }
        }
        self.input.release_if_empty(svc.pool);
        Verdict::Open
    }

    /// The deadline class this connection is in now.
    pub fn current_phase(&self) -> Phase {
        if self.lingering {
            Phase::Lingering
        } else if !self.output.is_empty() {
            Phase::Sending
        } else if self.body.is_some() {
            Phase::Body
        } else if !self.input.is_empty() || self.served == 0 {
            Phase::Head
        } else {
            Phase::Idle
        }
    }

    /// Whether shutdown may close this connection at once: nothing received or owed.
    pub fn is_idle(&self) -> bool {
        self.input.is_empty() && self.output.is_empty() && self.body.is_none()
    }

    /// After a header timeout with a partial request: queue a 408 and close after it.
    pub fn time_out_request(&mut self, svc: &mut Service<'_>) {
        http::write_error(
            self.output.buf(svc.pool),
            408,
            svc.date,
            http::Version::Http11,
            false,
            false,
            &[],
        );
        svc.counters.record_status(408);
        self.close_after_flush = true;
        self.input.clear();
        // One attempt: a client that stalled its request gets no further time for the answer.
        let _ = self
            .output
            .flush(&self.stream, &mut svc.counters.bytes_sent);
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
    }

    fn output_backlogged(&self) -> bool {
        self.output.has_file() || self.output.buffered() >= OUTPUT_HIGH_WATER
    }

    /// Turns complete requests in the input into responses; returns whether anything happened.
    fn answer(&mut self, svc: &mut Service<'_>) -> bool {
        let mut progress = false;
        while !self.close_after_flush && !self.output_backlogged() && !self.input.is_empty() {
            if let Some(skipper) = &mut self.body {
                match skipper.skip(self.input.bytes()) {
                    Ok(Skip::Done { consumed }) => {
                        self.input.consume(consumed);
                        self.body = None;
                        progress = true;
                        continue;
                    }
                    Ok(Skip::NeedMore { consumed }) => {
                        self.input.consume(consumed);
                        progress |= consumed > 0;
                        break;
                    }
                    Err(e) => {
                        self.fail(svc, e.status());
                        return true;
                    }
                }
            }
            let req = match http::parse_request(self.input.bytes(), svc.limits) {
                Ok(Parse::Complete(req)) => req,
                Ok(Parse::Partial) => break,
                Err(e) => {
                    self.fail(svc, e.status());
                    return true;
                }
            };
            let keep_alive = req.keep_alive && svc.keep_alive && !self.eof;
            let exchange = Exchange {
                date: svc.date,
                keep_alive,
                now_secs: svc.now_secs,
            };
            let status = svc
                .files
                .respond(&req, &exchange, &mut self.output, svc.pool);
            svc.counters.record_status(status);
            let (head_len, framing) = (req.head_len, req.body);
            self.input.consume(head_len);
            self.body = BodySkipper::new(framing, svc.limits.max_body);
            self.served = self.served.saturating_add(1);
            self.unflushed += 1;
            if self.request_started.is_none() {
                self.request_started = Some(Instant::now());
            }
            if !keep_alive {
                self.close_after_flush = true;
            }
            progress = true;
        }
        progress
    }

    /// Answers a request that cannot be served with `status` and closes after it.
    fn fail(&mut self, svc: &mut Service<'_>, status: u16) {
        http::write_error(
            self.output.buf(svc.pool),
            status,
            svc.date,
            http::Version::Http11,
            false,
            false,
            &[],
        );
        svc.counters.record_status(status);
        self.unflushed += 1;
        self.close_after_flush = true;
        self.linger = true;
        self.body = None;
        self.input.clear();
    }

    fn record_latency(&mut self, counters: &mut Counters) {
        if self.unflushed == 0 {
            return;
        }
        if let Some(started) = self.request_started.take() {
            let micros = started.elapsed().as_micros().min(u128::from(u64::MAX)) as u64;
            for _ in 0..self.unflushed {
                counters.latency.record(micros);
            }
        }
        self.unflushed = 0;
        // Bytes already buffered belong to the next request.
        if !self.input.is_empty() {
            self.request_started = Some(Instant::now());
        }
    }
}
