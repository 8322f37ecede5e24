//! The connection's [`Transport`] once the kernel encrypts and decrypts its TLS records
//! (kTLS, `--ktls true`), and the hand-over of a finished rustls session's keys to it.
//!
//! After a TLS 1.3 handshake, a session with nothing held (no partial record read, no record
//! unsent, no plaintext undelivered) gives its traffic secrets and sequence numbers to the
//! kernel. From then on the socket reads and writes plaintext: responses go out with `send`
//! and large files with `sendfile` again, as on a plain port, and the connection keeps no
//! rustls state at all. What rustls did for the session and the kernel does not, this does:
//! close_notify is sent as an alert record before the FIN, an alert from the client ends the
//! connection, and records are counted against the cipher's confidentiality limit (the
//! connection closes before it; the kernel could not change keys).
//!
//! It knows nothing of HTTP. A key update from the client ends the connection: taking new
//! keys needs a kernel newer than 6.13, and rustls clients and OpenSSL send one only after
//! billions of records. TLS 1.2 sessions stay in user space: rustls makes TLS 1.2 AES-GCM
//! nonces as the IV xor the sequence number and the kernel as a counter from the IV, so the
//! kernel could repeat a nonce rustls already used.

use std::io;
use std::net::{Shutdown, TcpStream};

use rustls::{ConnectionTrafficSecrets, SupportedCipherSuite};

use super::socket;
use super::tls::TlsSession;
use crate::conn::{Filled, InputBuffer, Output, Pool, Transport, Written};
use crate::sys::{self, Direction, Tls13Keys};

/// TLS record types (RFC 8446 §5.1) other than application data.
const RECORD_ALERT: u8 = 21;
/// The most plaintext in one TLS record.
const RECORD_MAX: u64 = 16 * 1024;
/// close_notify: a warning-level alert with description 0.
const CLOSE_NOTIFY: [u8; 2] = [1, 0];

/// A TLS session whose keys the kernel holds.
#[derive(Debug, Default)]
pub struct KernelSession {
    /// Records sealed with the current key: rustls' before the hand-over, then, counted high,
    /// a record per `send` or `sendfile` plus one per 16 KiB it carried.
    records: u64,
    /// How many records the cipher may seal under one key (rustls' confidentiality limit).
    limit: u64,
    /// Our close_notify has been sent.
    close_sent: bool,
}

/// The TLS 1.3 ciphers this kernel encrypts with, found by trying each once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelCiphers {
    aes_128_gcm: bool,
    aes_256_gcm: bool,
    chacha20_poly1305: bool,
}

impl KernelCiphers {
    /// Tries each cipher on a loopback connection of its own (once per generation of workers):
    /// the ciphers taken, or why none was (the kernel has no `tls` module, say).
    pub fn probe() -> io::Result<KernelCiphers> {
        let (iv, key16, key32) = ([0; 12], [0; 16], [0; 32]);
        let aes_128_gcm = sys::kernel_tls_takes(&Tls13Keys::Aes128Gcm {
            key: &key16,
            iv: &iv,
        });
        let taken = KernelCiphers {
            aes_128_gcm: aes_128_gcm.is_ok(),
            aes_256_gcm: sys::kernel_tls_takes(&Tls13Keys::Aes256Gcm {
                key: &key32,
                iv: &iv,
            })
            .is_ok(),
            chacha20_poly1305: sys::kernel_tls_takes(&Tls13Keys::Chacha20Poly1305 {
                key: &key32,
                iv: &iv,
            })
            .is_ok(),
        };
        match (taken == KernelCiphers::default(), aes_128_gcm) {
            (true, Err(e)) => Err(e),
            (true, Ok(())) => Err(io::Error::other("no TLS 1.3 cipher is taken")),
            (false, _) => Ok(taken),
        }
    }

    /// Whether the kernel takes the suite's cipher.
    fn takes(&self, suite: rustls::CipherSuite) -> bool {
        use rustls::CipherSuite::*;
        match suite {
            TLS13_AES_128_GCM_SHA256 => self.aes_128_gcm,
            TLS13_AES_256_GCM_SHA384 => self.aes_256_gcm,
            TLS13_CHACHA20_POLY1305_SHA256 => self.chacha20_poly1305,
            _ => false,
        }
    }

    /// The ciphers taken, for the log.
    pub fn describe(&self) -> String {
        let names = [
            (self.aes_128_gcm, "AES-128-GCM"),
            (self.aes_256_gcm, "AES-256-GCM"),
            (self.chacha20_poly1305, "ChaCha20-Poly1305"),
        ];
        let taken: Vec<&str> = names
            .iter()
            .filter(|(taken, _)| *taken)
            .map(|(_, name)| *name)
            .collect();
        taken.join(", ")
    }
}

/// What offering a session to the kernel came to.
pub enum HandOver {
    /// The kernel holds the keys.
    Done(KernelSession),
    /// The session stays in user space for good: its cipher is one the kernel does not take,
    /// or the kernel would not attach TLS to its socket.
    Declined(Box<TlsSession>),
    /// The keys left rustls but the kernel refused them: the connection cannot go on.
    Lost(io::Error),
}

/// Hands `session` (running on `stream`, and [`TlsSession::ready_for_kernel`]) to the kernel
/// if the kernel takes its cipher.
pub fn hand_over(
    mut session: Box<TlsSession>,
    stream: &TcpStream,
    ciphers: &KernelCiphers,
) -> HandOver {
    if !session.suite().is_some_and(|suite| ciphers.takes(suite)) {
        session.decline_kernel();
        return HandOver::Declined(session);
    }
    // Attaching the protocol changes nothing until keys are set, so the session can stay
    // where it is if that fails (ENOTCONN: the client has gone; it ends on its own).
    if sys::attach_tls(stream).is_err() {
        session.decline_kernel();
        return HandOver::Declined(session);
    }
    let (secrets, suite) = match session.into_kernel() {
        Ok(taken) => taken,
        Err(e) => return HandOver::Lost(io::Error::other(e)),
    };
    let limit = match suite {
        SupportedCipherSuite::Tls13(suite) => suite.common.confidentiality_limit,
        SupportedCipherSuite::Tls12(suite) => suite.common.confidentiality_limit,
    };
    let (tx_seq, tx) = &secrets.tx;
    let (rx_seq, rx) = &secrets.rx;
    let given = set_keys(stream, Direction::Transmit, tx, *tx_seq)
        .and_then(|()| set_keys(stream, Direction::Receive, rx, *rx_seq));
    match given {
        Ok(()) => HandOver::Done(KernelSession {
            // rustls sealed these under the same key.
            records: *tx_seq,
            limit,
            close_sent: false,
        }),
        Err(e) => HandOver::Lost(e),
    }
}

fn set_keys(
    stream: &TcpStream,
    direction: Direction,
    secrets: &ConnectionTrafficSecrets,
    seq: u64,
) -> io::Result<()> {
    let iv = |iv: &rustls::crypto::cipher::Iv| -> io::Result<[u8; 12]> {
        iv.as_ref()
            .try_into()
            .map_err(|_| io::Error::other("an IV of an unexpected size"))
    };
    let key16 = |key: &rustls::crypto::cipher::AeadKey| -> io::Result<[u8; 16]> {
        key.as_ref()
            .try_into()
            .map_err(|_| io::Error::other("a key of an unexpected size"))
    };
    let key32 = |key: &rustls::crypto::cipher::AeadKey| -> io::Result<[u8; 32]> {
        key.as_ref()
            .try_into()
            .map_err(|_| io::Error::other("a key of an unexpected size"))
    };
    match secrets {
        ConnectionTrafficSecrets::Aes128Gcm { key, iv: i } => {
            let (key, iv) = (key16(key)?, iv(i)?);
            let keys = Tls13Keys::Aes128Gcm { key: &key, iv: &iv };
            sys::set_tls_keys(stream, direction, &keys, seq)
        }
        ConnectionTrafficSecrets::Aes256Gcm { key, iv: i } => {
            let (key, iv) = (key32(key)?, iv(i)?);
            let keys = Tls13Keys::Aes256Gcm { key: &key, iv: &iv };
            sys::set_tls_keys(stream, direction, &keys, seq)
        }
        ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv: i } => {
            let (key, iv) = (key32(key)?, iv(i)?);
            let keys = Tls13Keys::Chacha20Poly1305 { key: &key, iv: &iv };
            sys::set_tls_keys(stream, direction, &keys, seq)
        }
        _ => Err(io::Error::other("a cipher the kernel does not take")),
    }
}

/// A connection's socket whose kernel does its TLS, borrowed for one drive.
pub struct KernelTlsSocket<'s> {
    stream: &'s TcpStream,
    session: &'s mut KernelSession,
}

impl<'s> KernelTlsSocket<'s> {
    pub fn new(stream: &'s TcpStream, session: &'s mut KernelSession) -> KernelTlsSocket<'s> {
        KernelTlsSocket { stream, session }
    }
}

impl Transport for KernelTlsSocket<'_> {
    /// Reads plaintext until the socket has no whole record left, the client closes (TCP, or
    /// close_notify), or `max` bytes are held. A short read is not taken for drained: the
    /// kernel ends a read before a record of another type, which may be the close_notify
    /// that no further edge would announce.
    fn read(&mut self, input: &mut InputBuffer, pool: &mut Pool, max: usize) -> io::Result<Filled> {
        let mut filled = Filled::default();
        loop {
            let space = input.space(pool, max);
            if space.is_empty() {
                return Ok(filled);
            }
            match sys::recv_tls(self.stream, space) {
                Ok((0, _)) => {
                    filled.eof = true;
                    filled.drained = true;
                    return Ok(filled);
                }
                Ok((n, sys::RECORD_APPLICATION_DATA)) => {
                    input.filled(n);
                    filled.bytes += n;
                }
                // close_notify: the client sends nothing more. Any other alert is fatal.
                Ok((n, RECORD_ALERT)) if space.get(..n) == Some(&CLOSE_NOTIFY[..]) => {
                    filled.eof = true;
                    filled.drained = true;
                    return Ok(filled);
                }
                Ok((_, RECORD_ALERT)) => {
                    return Err(io::Error::other("the client sent a TLS alert"));
                }
                // A handshake message (a key update) or another type: see the module doc.
                Ok((_, other)) => {
                    return Err(io::Error::other(format!(
                        "a TLS record of type {other} after the handshake"
                    )));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    filled.drained = true;
                    return Ok(filled);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes as a plain socket does, except that the last bytes are not held back for the
    /// FIN (the close_notify record that goes before it pushes them anyway), and refuses once
    /// the records sent could reach the cipher's limit.
    fn write(&mut self, output: &mut Output, _last: bool) -> io::Result<Written> {
        if self.session.records >= self.session.limit {
            return Err(io::Error::other(
                "the TLS key's confidentiality limit is reached",
            ));
        }
        let mut calls = 0u64;
        let written = socket::write(self.stream, output, false, &mut calls)?;
        let records = calls.saturating_add(written.bytes / RECORD_MAX);
        self.session.records = self.session.records.saturating_add(records);
        Ok(written)
    }

    /// Sends close_notify (once, if the socket takes it now), then a FIN.
    fn shutdown_write(&mut self) -> io::Result<()> {
        if !self.session.close_sent {
            self.session.close_sent = true;
            let _ = sys::send_tls_record(self.stream, RECORD_ALERT, &CLOSE_NOTIFY);
        }
        self.stream.shutdown(Shutdown::Write)
    }

    fn peer(&self) -> Option<std::net::SocketAddr> {
        self.stream.peer_addr().ok()
    }
}
