//! One client connection as the worker holds it: its socket, its TLS session on a TLS port
//! (run by rustls, or by the kernel once handed over), its protocol state machine, and the
//! worker's bookkeeping (ready list, timer wheel).
//!
//! It performs the I/O the connection asks for and nothing else: the protocol, the order of
//! things and the deadlines are [`Conn`]'s. It never blocks and never calls epoll_ctl. Plain
//! and TLS connections differ only in the transport each drive builds (a branch per drive,
//! each with its own monomorphised `Conn::drive`; no allocation, no dynamic dispatch).

use std::net::TcpStream;
use std::time::Instant;

use crate::conn::{Conn, Driven, Shared, Verdict};

use super::ktls::{self, HandOver, KernelCiphers, KernelSession, KernelTlsSocket};
use super::socket::Socket;
use super::static_files::StaticFiles;
use super::tls::{Handshake, TlsBuffers, TlsSession, TlsSocket};
use crate::metrics::{KernelTlsResult, TlsCounters, TlsFailure};

pub struct Connection {
    pub stream: TcpStream,
    pub conn: Conn,
    /// The TLS session of a connection accepted on a TLS port.
    pub tls: Option<Box<Tls>>,
    /// In the worker's ready list: it will be driven once more this iteration, so an epoll
    /// event meanwhile only marks it readable.
    pub queued: bool,
    /// Tick of this connection's live timer-wheel entry, `u64::MAX` if none.
    pub armed: u64,
}

/// A connection's TLS session: rustls' until its keys go to the kernel (`--ktls true`).
/// Boxed in the connection, so a plain connection pays one null pointer for it; rustls'
/// session is boxed again, so a session the kernel holds keeps 32 bytes and no rustls state.
pub enum Tls {
    User(Box<TlsSession>),
    Kernel(KernelSession),
}

/// The worker's state that every connection uses while being driven (disjoint from the
/// connection slab, so a connection and the service can be borrowed together).
pub struct Service {
    pub files: StaticFiles,
    pub shared: Shared,
    /// Where TLS connections read file chunks and make records (one per worker: what is made
    /// is sent or kept by its connection before the next one runs).
    pub tls_buffers: TlsBuffers,
    /// The worker's index, for the log.
    pub worker: usize,
    /// The ciphers the kernel takes, when finished TLS 1.3 sessions go to it (`--ktls true`
    /// and a kernel with TLS).
    pub kernel_tls: Option<KernelCiphers>,
}

impl Connection {
    pub fn new(stream: TcpStream, conn: Conn, tls: Option<Box<Tls>>) -> Connection {
        Connection {
            stream,
            conn,
            tls,
            queued: false,
            armed: u64::MAX,
        }
    }

    /// Reads, answers and writes until nothing more can happen without a new event.
    pub fn drive(&mut self, svc: &mut Service, now: Instant) -> Driven {
        match self.tls.as_deref_mut() {
            None => self.conn.drive(
                &mut Socket(&self.stream),
                &mut svc.files,
                &mut svc.shared,
                now,
            ),
            Some(Tls::User(session)) => {
                let driven = self.conn.drive(
                    &mut TlsSocket::new(
                        &self.stream,
                        session,
                        &mut svc.tls_buffers,
                        svc.shared.date,
                    ),
                    &mut svc.files,
                    &mut svc.shared,
                    now,
                );
                if let Some(outcome) = session.take_outcome() {
                    count(&mut svc.shared.counters.tls, outcome);
                }
                if driven.verdict == Verdict::Open
                    && svc.kernel_tls.is_some()
                    && session.ready_for_kernel()
                    && !self.hand_to_kernel(svc)
                {
                    return Driven::CLOSE;
                }
                driven
            }
            Some(Tls::Kernel(session)) => self.conn.drive(
                &mut KernelTlsSocket::new(&self.stream, session),
                &mut svc.files,
                &mut svc.shared,
                now,
            ),
        }
    }

    /// Hands the session (ready for it) to the kernel, or leaves it with rustls when the kernel
    /// cannot take it; false when the connection is lost on the way.
    fn hand_to_kernel(&mut self, svc: &mut Service) -> bool {
        let Some(tls) = self.tls.as_deref_mut() else {
            return true;
        };
        let placeholder = Tls::Kernel(KernelSession::default());
        let Tls::User(session) = std::mem::replace(tls, placeholder) else {
            return true;
        };
        let Some(ciphers) = &svc.kernel_tls else {
            *tls = Tls::User(session);
            return true;
        };
        let counters = &mut svc.shared.counters.tls;
        match ktls::hand_over(session, &self.stream, ciphers) {
            HandOver::Done(kernel) => {
                *tls = Tls::Kernel(kernel);
                counters.kernel(KernelTlsResult::Offloaded);
                true
            }
            HandOver::Declined(session) => {
                *tls = Tls::User(session);
                counters.kernel(KernelTlsResult::Declined);
                true
            }
            HandOver::Lost(why) => {
                counters.kernel(KernelTlsResult::Failed);
                warn!(
                    "worker {}: --ktls: the kernel refused a session's keys ({why}); \
                     its connection was closed",
                    svc.worker
                );
                false
            }
        }
    }

    /// The connection is being closed: a handshake still under way counts as failed.
    pub fn closing(&mut self, counters: &mut TlsCounters) {
        if let Some(Tls::User(session)) = self.tls.as_deref_mut() {
            if let Some(outcome) = session.end_unfinished(TlsFailure::Closed) {
                count(counters, outcome);
            }
        }
    }

    /// The connection's deadline has passed.
    pub fn expire(&mut self, svc: &mut Service, now: Instant) -> Verdict {
        match self.tls.as_deref_mut() {
            None => self
                .conn
                .expire(&mut Socket(&self.stream), &mut svc.shared, now),
            Some(Tls::User(session)) => {
                if let Some(outcome) = session.end_unfinished(TlsFailure::Timeout) {
                    count(&mut svc.shared.counters.tls, outcome);
                }
                self.conn.expire(
                    &mut TlsSocket::new(
                        &self.stream,
                        session,
                        &mut svc.tls_buffers,
                        svc.shared.date,
                    ),
                    &mut svc.shared,
                    now,
                )
            }
            Some(Tls::Kernel(session)) => self.conn.expire(
                &mut KernelTlsSocket::new(&self.stream, session),
                &mut svc.shared,
                now,
            ),
        }
    }

    /// The worker is draining.
    pub fn drain(&mut self, svc: &mut Service, now: Instant) -> Verdict {
        match self.tls.as_deref_mut() {
            None => self
                .conn
                .drain(&mut Socket(&self.stream), &mut svc.shared, now),
            Some(Tls::User(session)) => self.conn.drain(
                &mut TlsSocket::new(&self.stream, session, &mut svc.tls_buffers, svc.shared.date),
                &mut svc.shared,
                now,
            ),
            Some(Tls::Kernel(session)) => self.conn.drain(
                &mut KernelTlsSocket::new(&self.stream, session),
                &mut svc.shared,
                now,
            ),
        }
    }
}

/// Counts how a handshake ended.
fn count(counters: &mut TlsCounters, outcome: Handshake) {
    match outcome {
        Handshake::Finished { tls13, resumed } => counters.finished(tls13, resumed),
        Handshake::Failed(why) => counters.failed(why),
    }
}

#[cfg(test)]
mod tests {
    /// An idle connection costs its slab slot and nothing else (no buffer, no session), so
    /// this size is most of the memory per idle connection (README: about 250 B with the
    /// slab's and the allocator's share). It was 200 bytes before the connection state
    /// machine moved into `conn`, then 192, then 200 again with the TLS session's pointer (a
    /// plain connection's one cost of TLS); keep it from creeping up unnoticed.
    #[test]
    fn a_connection_fits_in_200_bytes() {
        assert!(
            std::mem::size_of::<super::Connection>() <= 200,
            "{} bytes",
            std::mem::size_of::<super::Connection>()
        );
    }
}
