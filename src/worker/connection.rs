//! One client connection and the loop that drives it: HTTP exchanges, then (after an upgrade)
//! a WebSocket session on the same buffers.
//!
//! Owns the per-connection state machine: read what the socket has, turn every complete
//! request in the buffer into a response (pipelining) or hand the bytes to the WebSocket
//! session, flush once, and decide which deadline applies. Parsing and encoding are `http`'s
//! and `ws`'s; file decisions are `files`'; this module only sequences them and moves bytes.
//! It never blocks and never calls epoll_ctl.

use std::net::TcpStream;
use std::time::Instant;

use crate::http::{self, BodySkipper, Parse, Skip};
use crate::metrics::{Counters, WsCounters};
use crate::ws::{self, Session, WsConfig};

use super::buffers::{Flushed, InputBuffer, Output, Pool};
use super::static_files::{Exchange, StaticFiles};

/// Above this many buffered output bytes, stop parsing and reading until the client catches up.
const OUTPUT_HIGH_WATER: usize = 256 * 1024;
/// Most bytes one connection reads per turn; then the worker serves others and comes back
/// (edge-triggered epoll will not remind it), so a fast sender cannot starve its neighbours.
pub const READ_BUDGET: usize = 256 * 1024;
/// While the socket still has input, answers accumulate up to this much before one write: half a
/// read budget, so a busy connection writes twice per turn. Each write to a local peer runs its
/// receive path and wakes it: with 64 KiB a 16 KiB echo load (`compare.sh ws16k`) made 0.27
/// writes per message, with 128 KiB 0.16, for 8 % more messages/s and p99 15.7 -> 9.0 ms.
const FLUSH_AT: usize = 128 * 1024;
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
    /// A WebSocket with nothing in flight: ping interval, restarted by every byte received.
    WsIdle,
    /// A WebSocket that was pinged after being idle: ping timeout.
    WsPinged,
    /// We sent a close frame and wait for the client's: close timeout.
    WsClosing,
}

pub struct Connection {
    pub stream: TcpStream,
    pub input: InputBuffer,
    pub output: Output,
    body: Option<BodySkipper>,
    /// An EPOLLIN edge whose data has not been drained yet.
    pub readable: bool,
    /// In the worker's ready list: it will be driven once more this iteration, so an epoll
    /// event meanwhile only updates its flags.
    pub queued: bool,
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
    /// The WebSocket session after a successful upgrade (boxed: most connections never upgrade).
    ws: Option<Box<Session>>,
    /// A liveness ping was sent and nothing has been received since.
    pinged: bool,
}

/// What one [`Connection::drive`] call did.
#[derive(Debug)]
pub struct Driven {
    /// Bytes were handed to the kernel (send-timeout progress).
    pub wrote: bool,
    /// Bytes were received (WebSocket activity).
    pub read: bool,
    /// The read budget ran out with input still waiting: drive again after the others.
    pub more: bool,
    pub verdict: Verdict,
}

/// Whether the connection stays open after being driven.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Open,
    Close,
}

/// The worker's state that every connection uses while being driven (disjoint from the
/// connection slab, so a connection and the service can be borrowed together).
pub struct Service {
    pub files: StaticFiles,
    pub pool: Pool,
    pub counters: Counters,
    pub limits: http::Limits,
    /// The current IMF-fixdate, refreshed once a second.
    pub date: [u8; 29],
    /// Whole seconds of wall-clock time that `date` shows.
    pub now_secs: u64,
    /// Keep-alive allowed at all (not draining, timeout not zero).
    pub keep_alive: bool,
    /// Largest read buffer a connection may hold.
    pub max_input: usize,
    /// [`READ_BUDGET`] (smaller in tests).
    pub read_budget: usize,
    pub ws_config: WsConfig,
    /// The worker's shared permessage-deflate codec (no context survives between messages).
    pub codec: ws::Codec,
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
            queued: false,
            linger: false,
            lingering: false,
            served: 0,
            phase: Phase::Head,
            deadline: u64::MAX,
            armed: u64::MAX,
            request_started: None,
            unflushed: 0,
            ws: None,
            pinged: false,
        }
    }

    /// Gives the buffers back to the pool, dropping unsent output, before the connection is
    /// closed: its last turn usually ends in a close, not in the release at the end of `drive`,
    /// and a freed read buffer would cost the next connection a fresh zeroed 64 KiB.
    pub fn release_buffers(&mut self, pool: &mut Pool) {
        self.input.clear();
        self.input.release_if_empty(pool);
        self.output.discard();
        self.output.release_if_empty(pool);
    }

    pub fn is_websocket(&self) -> bool {
        self.ws.is_some()
    }

    /// Reads, answers and writes until nothing more can happen without a new event.
    pub fn drive(&mut self, svc: &mut Service) -> Driven {
        let mut done = Driven {
            wrote: false,
            read: false,
            more: false,
            verdict: Verdict::Open,
        };
        let mut budget = svc.read_budget;
        if self.lingering {
            done.verdict = self.discard_input(svc);
            return done;
        }
        loop {
            let mut progress = false;
            if self.readable && !self.eof && !self.output_backlogged() && budget > 0 {
                let was_empty = self.input.is_empty();
                match self.input.fill(&self.stream, &mut svc.pool, svc.max_input) {
                    Ok(filled) => {
                        budget = budget.saturating_sub(filled.bytes);
                        if filled.bytes > 0 {
                            progress = true;
                            done.read = true;
                            self.pinged = false;
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
                    Err(_) => {
                        done.verdict = Verdict::Close;
                        return done;
                    }
                }
            }
            progress |= if self.ws.is_some() {
                self.answer_ws(svc)
            } else {
                self.answer(svc)
            };
            // More input is waiting and little is queued: read on, then write it all at once.
            let defer_flush = progress
                && self.readable
                && !self.eof
                && budget > 0
                && self.output.buffered() < FLUSH_AT
                && !self.output.has_file()
                && !self.close_after_flush;
            if defer_flush {
                continue;
            }
            let before = svc.counters.bytes_sent;
            let flushed = self.output.flush(
                &self.stream,
                &mut svc.counters.bytes_sent,
                self.close_after_flush,
            );
            let wrote_now = svc.counters.bytes_sent != before;
            done.wrote |= wrote_now;
            match flushed {
                Ok(Flushed::All) => {
                    self.record_latency(&mut svc.counters);
                    if self.close_after_flush {
                        done.verdict = self.finish(svc);
                        return done;
                    }
                    // Output that drained may unblock requests held back by backpressure.
                    progress |= wrote_now;
                }
                Ok(Flushed::Blocked) => {}
                Err(_) => {
                    done.verdict = Verdict::Close;
                    return done;
                }
            }
            if !progress {
                break;
            }
        }
        // At EOF every complete request has been answered; what is left is a partial request.
        if self.eof && self.output.is_empty() {
            done.verdict = Verdict::Close;
            return done;
        }
        self.input.release_if_empty(&mut svc.pool);
        self.output.release_if_empty(&mut svc.pool);
        done.more = budget == 0 && self.readable && !self.eof && !self.output_backlogged();
        done
    }

    /// Closes after the last response: the write side is shut (unless the client already
    /// closed), then the socket is closed at once, or after lingering when the client may
    /// still be sending.
    fn finish(&mut self, svc: &mut Service) -> Verdict {
        if self.eof {
            return Verdict::Close;
        }
        // The last bytes were held with MSG_MORE. Bytes the client sends from now on would turn
        // close() into a reset that discards them; shutdown sends them, with the FIN, first.
        let shut = self.stream.shutdown(std::net::Shutdown::Write).is_ok();
        let unread = self.linger || !self.input.is_empty() || self.readable;
        if !shut || !unread {
            return Verdict::Close;
        }
        self.lingering = true;
        self.readable = true;
        self.body = None;
        self.input.clear();
        self.discard_input(svc)
    }

    /// Reads and drops input until the client closes (or the socket has nothing more for now).
    fn discard_input(&mut self, svc: &mut Service) -> Verdict {
        while self.readable {
            match self.input.fill(&self.stream, &mut svc.pool, svc.max_input) {
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
        self.input.release_if_empty(&mut svc.pool);
        Verdict::Open
    }

    /// The deadline class this connection is in now.
    pub fn current_phase(&self) -> Phase {
        if self.lingering {
            Phase::Lingering
        } else if let Some(session) = &self.ws {
            if session.state() != ws::State::Open {
                Phase::WsClosing
            } else if !self.output.is_empty() {
                Phase::Sending
            } else if self.pinged {
                Phase::WsPinged
            } else {
                Phase::WsIdle
            }
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

    /// Whether shutdown may close this connection at once: nothing received or owed, and no
    /// WebSocket (which gets a close frame first).
    pub fn is_idle(&self) -> bool {
        self.input.is_empty() && self.output.is_empty() && self.body.is_none() && self.ws.is_none()
    }

    /// After the ping interval with no traffic: ping the client and flush.
    pub fn ping(&mut self, svc: &mut Service) {
        if let Some(session) = &mut self.ws {
            session.ping(b"", self.output.buf(&mut svc.pool));
            self.pinged = true;
            let _ = self
                .output
                .flush(&self.stream, &mut svc.counters.bytes_sent, false);
        }
    }

    /// Starts a server-initiated close (1001 at shutdown) and flushes it.
    pub fn close_websocket(&mut self, code: u16, svc: &mut Service) {
        if let Some(session) = &mut self.ws {
            if session.state() == ws::State::Open {
                session.close(code, "", self.output.buf(&mut svc.pool));
                record_ws_stats(session, &mut svc.counters.ws);
                let _ = self
                    .output
                    .flush(&self.stream, &mut svc.counters.bytes_sent, false);
            }
        }
    }

    /// After a header timeout with a partial request: queue a 408 and close after it.
    pub fn time_out_request(&mut self, svc: &mut Service) {
        http::write_error(
            self.output.buf(&mut svc.pool),
            408,
            &svc.date,
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
            .flush(&self.stream, &mut svc.counters.bytes_sent, true);
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
    }

    fn output_backlogged(&self) -> bool {
        self.output.has_file() || self.output.buffered() >= OUTPUT_HIGH_WATER
    }

    /// Turns complete requests in the input into responses; returns whether anything happened.
    fn answer(&mut self, svc: &mut Service) -> bool {
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
            let req = match http::parse_request(self.input.bytes(), &svc.limits) {
                Ok(Parse::Complete(req)) => req,
                Ok(Parse::Partial) => break,
                Err(e) => {
                    self.fail(svc, e.status());
                    return true;
                }
            };
            if ws::is_upgrade_request(&req) {
                let upgrade = ws::evaluate(&req, &svc.ws_config);
                let head_len = req.head_len;
                self.input.consume(head_len);
                self.upgrade(upgrade, svc);
                return true;
            }
            let keep_alive = req.keep_alive && svc.keep_alive && !self.eof;
            let exchange = Exchange {
                date: &svc.date,
                keep_alive,
                now_secs: svc.now_secs,
            };
            let status = svc
                .files
                .respond(&req, &exchange, &mut self.output, &mut svc.pool);
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

    /// Switches to the WebSocket protocol (101) or refuses the upgrade and closes.
    fn upgrade(&mut self, upgrade: ws::Upgrade, svc: &mut Service) {
        let out = self.output.buf(&mut svc.pool);
        self.served = self.served.saturating_add(1);
        self.unflushed += 1;
        if self.request_started.is_none() {
            self.request_started = Some(Instant::now());
        }
        match upgrade {
            ws::Upgrade::Accept(accepted) => {
                ws::write_accept(out, &accepted, &svc.date);
                svc.counters.record_status(101);
                svc.counters.ws.upgrades += 1;
                self.ws = Some(Box::new(Session::new(&svc.ws_config, accepted.deflate)));
            }
            ws::Upgrade::Reject { status } => {
                ws::write_reject(out, status, &svc.date);
                svc.counters.record_status(status);
                self.close_after_flush = true;
                self.linger = true;
            }
        }
    }

    /// Hands received bytes to the WebSocket session; returns whether anything happened.
    fn answer_ws(&mut self, svc: &mut Service) -> bool {
        let Some(session) = &mut self.ws else {
            return false;
        };
        let mut progress = false;
        while !self.close_after_flush && !self.input.is_empty() {
            if self.output.buffered() >= ws::OUT_SOFT_LIMIT {
                break;
            }
            let received = session.receive(
                self.input.bytes_mut(),
                self.output.buf(&mut svc.pool),
                &mut svc.codec,
            );
            self.input.consume(received.consumed);
            record_ws_stats(session, &mut svc.counters.ws);
            if received.state == ws::State::Closed {
                // RFC 6455 §7.1.1: the server closes the TCP connection first, once its close is sent.
                self.close_after_flush = true;
                // A failed session's client may be mid-frame: drain what it still sends rather
                // than let a close with unread input reset the connection under the close frame.
                self.linger |= !session.client_closed();
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

    /// Answers a request that cannot be served with `status` and closes after it.
    fn fail(&mut self, svc: &mut Service, status: u16) {
        http::write_error(
            self.output.buf(&mut svc.pool),
            status,
            &svc.date,
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
        // WebSocket frames are not requests; only the upgrade's own 101 is timed.
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
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    #[test]
    fn a_closing_connection_gives_its_buffers_back() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        // Half a request is read, and a response is still unsent: both buffers are held.
        client.write_all(b"GET / HTTP/1.1\r\nHo").unwrap();
        let mut conn = Connection::new(server);
        let mut pool = Pool::default();
        let mut waited = 0;
        while conn.input.is_empty() && waited < 100 {
            conn.input.fill(&conn.stream, &mut pool, 1 << 16).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(10));
            waited += 1;
        }
        assert!(!conn.input.is_empty());
        conn.output
            .buf(&mut pool)
            .extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        assert_eq!(pool.held(), (0, 0));
        conn.release_buffers(&mut pool);
        assert_eq!(pool.held(), (1, 1));
        assert!(conn.input.is_empty() && conn.output.is_empty());
    }
}
