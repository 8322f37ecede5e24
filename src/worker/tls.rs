//! The connection's [`Transport`] over TLS: ciphertext in from the socket and out to it,
//! plaintext into the connection's input buffer and out of its output, with a rustls session
//! as the sans-IO engine in between.
//!
//! It owns one connection's TLS session and performs the socket I/O that session asks for.
//! The handshake happens here, before the connection sees a byte: a read during the handshake
//! moves handshake records both ways and hands over no plaintext, so the connection's header
//! deadline (running from the accept) also bounds a client that stalls mid-handshake. It knows
//! nothing of HTTP beyond recognising a plain HTTP request sent to a TLS port, which it answers
//! with the connection layer's refusal for that case. It never blocks: a socket that is empty
//! or full ends the call, and what rustls holds waits for the next edge.
//!
//! Output leaves the connection's buffers only once its records have left: plaintext handed
//! to rustls is "in flight" until the socket took every record made from it, so the
//! connection's idea of what is still unsent (its send deadline, its close after the last
//! response) stays true over TLS. Large files cannot go by sendfile (the kernel would send
//! them unencrypted): they are read in chunks with `pread` into the worker's scratch buffer and
//! encrypted, and the next chunk is read only when the last one's records have left, so a slow
//! client holds one chunk of ciphertext and no more. kTLS, which would let the kernel encrypt
//! and sendfile work again, is not used yet.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use rustls::{ServerConfig, ServerConnection};

use crate::conn::{Filled, InputBuffer, Output, Pool, Refusal, Transport, Written, READ_BUDGET};
use crate::http::Version;
use crate::metrics::TlsFailure;

/// Most plaintext encrypted at once: rustls' default limit on the records it holds, so one
/// write hands it all (16 KiB records, four per chunk).
const CHUNK: usize = 64 * 1024;
/// Most bytes of a plain HTTP request read and dropped before it is answered, so that closing
/// does not reset the connection under the answer.
const PLAIN_REQUEST_DRAIN: usize = 64 * 1024;

/// One connection's TLS state.
pub struct TlsSession {
    conn: ServerConnection,
    /// Plaintext encrypted into records that have not all left yet.
    in_flight: InFlight,
    /// The client's first bytes have been looked at (a TLS record, or plain HTTP).
    sniffed: bool,
    /// How the handshake ended, until the worker counts it.
    outcome: Option<Handshake>,
    /// The handshake's end has been told (so it is counted once).
    told: bool,
}

/// How a TLS handshake ended, for the worker's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handshake {
    Finished { tls13: bool, resumed: bool },
    Failed(TlsFailure),
}

/// Where the plaintext in flight came from: the front of the output's bytes, or of its file
/// region. It is consumed from there once the socket has taken its records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InFlight {
    Nothing,
    Bytes(usize),
    File(u64),
}

impl TlsSession {
    /// A session for a connection just accepted on a TLS port.
    pub fn new(config: Arc<ServerConfig>) -> Result<TlsSession, rustls::Error> {
        Ok(TlsSession {
            conn: ServerConnection::new(config)?,
            in_flight: InFlight::Nothing,
            sniffed: false,
            outcome: None,
            told: false,
        })
    }

    /// How the handshake ended, once: after the drive that finished or failed it.
    pub fn take_outcome(&mut self) -> Option<Handshake> {
        self.outcome.take()
    }

    /// The handshake is still under way and has not been counted: the connection is ending
    /// for `why` (a timeout, or a close), which is then its outcome.
    pub fn end_unfinished(&mut self, why: TlsFailure) -> Option<Handshake> {
        if self.told || self.outcome.is_some() || !self.conn.is_handshaking() {
            return None;
        }
        self.told = true;
        Some(Handshake::Failed(why))
    }

    fn ended(&mut self, how: Handshake) {
        if !self.told {
            self.told = true;
            self.outcome = Some(how);
        }
    }
}

/// Why rustls gave up on a handshake, as counted.
fn failure_of(error: &rustls::Error) -> TlsFailure {
    use rustls::Error;
    match error {
        Error::InvalidMessage(_)
        | Error::InappropriateMessage { .. }
        | Error::InappropriateHandshakeMessage { .. }
        | Error::DecryptError => TlsFailure::Malformed,
        Error::PeerIncompatible(_) | Error::NoApplicationProtocol => TlsFailure::Incompatible,
        Error::AlertReceived(_) => TlsFailure::Alert,
        _ => TlsFailure::Other,
    }
}

/// A connection's socket and TLS session, borrowed for one drive.
pub struct TlsSocket<'s> {
    pub stream: &'s TcpStream,
    pub session: &'s mut TlsSession,
    /// The worker's buffer for file chunks on their way into rustls (free again once they are
    /// encrypted, so one per worker serves every connection).
    pub scratch: &'s mut Vec<u8>,
    /// The current IMF-fixdate, for the one answer written here (plain HTTP on a TLS port).
    pub date: [u8; 29],
}

impl Transport for TlsSocket<'_> {
    /// Hands over the plaintext rustls holds, reading and decrypting records until the socket
    /// is drained, the client closes, or `input` holds `max` bytes.
    ///
    /// The connection's read budget counts plaintext, so records that carry little or none
    /// (empty ones, handshake and alert records) are bounded here: after [`READ_BUDGET`] bytes
    /// of ciphertext in one call the read ends undrained. A client that sends such records
    /// then waits for its next edge instead of holding the worker; one that sends data fills
    /// the input long before (a read ends when the input is full).
    fn read(&mut self, input: &mut InputBuffer, pool: &mut Pool, max: usize) -> io::Result<Filled> {
        let mut filled = Filled::default();
        let mut ciphertext = 0;
        loop {
            match self.take_plaintext(input, pool, max, &mut filled)? {
                Plaintext::Taken => {}
                // rustls may still hold plaintext, decrypted from records that have left the
                // socket: no edge will announce it, so the read must not count as drained.
                Plaintext::InputFull => {
                    filled.drained = false;
                    return Ok(filled);
                }
                Plaintext::Closed => {
                    filled.eof = true;
                    filled.drained = true;
                    return Ok(filled);
                }
            }
            if filled.drained || ciphertext >= READ_BUDGET {
                return Ok(filled);
            }
            let mut wire = WireIn {
                stream: self.stream,
                short: false,
                first: None,
            };
            match self.session.conn.read_tls(&mut wire) {
                // The client closed TCP: the reader reports it once the plaintext is taken.
                Ok(0) => filled.drained = true,
                Ok(n) => {
                    ciphertext += n;
                    if !self.session.sniffed {
                        self.session.sniffed = true;
                        if wire.first.is_some_and(|b| b.is_ascii_uppercase()) {
                            self.session.ended(Handshake::Failed(TlsFailure::PlainHttp));
                            return Err(self.refuse_plain_http());
                        }
                    }
                    filled.drained = wire.short;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => filled.drained = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let handshaking = self.session.conn.is_handshaking();
            if let Err(e) = self.session.conn.process_new_packets() {
                if handshaking {
                    self.session.ended(Handshake::Failed(failure_of(&e)));
                }
                // rustls has queued an alert saying why: send it if the socket takes it.
                self.flush_now();
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            if handshaking && !self.session.conn.is_handshaking() {
                let conn = &self.session.conn;
                let finished = Handshake::Finished {
                    tls13: conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3),
                    resumed: conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
                };
                self.session.ended(finished);
            }
            if handshaking
                && !self.session.conn.is_handshaking()
                && !self.session.conn.wants_write()
            {
                // The client's Finished ended a TLS 1.3 handshake and nothing answers it (a
                // resumed one sends no new ticket): acknowledge it now. A client that leaves Nagle on
                // (Python's ssl, for one) holds its request until then, and the kernel would
                // delay the ACK by 40 ms: measured, 50 ms per new connection instead of 1.4.
                let _ = crate::sys::ack_now(self.stream);
            }
            // Handshake records (and alerts) go out at once; records of our own output are
            // the write's to send.
            if self.session.in_flight == InFlight::Nothing {
                self.flush_now();
            }
        }
    }

    /// Sends the records rustls holds, then encrypts the next piece of the output (its bytes,
    /// then its file region, a chunk at a time), until everything has left or the socket is
    /// full. With `last`, the close_notify alert that `shutdown_write` would send is queued
    /// behind the final record, so a small last answer and its alert leave in one `writev`.
    fn write(&mut self, output: &mut Output, last: bool) -> io::Result<Written> {
        let mut written = Written::default();
        loop {
            while self.session.conn.wants_write() {
                let mut wire = WireOut {
                    stream: self.stream,
                    short: false,
                };
                match self.session.conn.write_tls(&mut wire) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => {
                        written.bytes += n as u64;
                        if wire.short {
                            return Ok(written);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(written),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            self.sent(output);
            if self.encrypt_next(output)? {
                continue;
            }
            if last && !self.session.conn.is_handshaking() {
                // Queued once (rustls ignores a second call): the next round sends it.
                self.session.conn.send_close_notify();
                if self.session.conn.wants_write() {
                    continue;
                }
            }
            written.all = true;
            return Ok(written);
        }
    }

    /// Sends close_notify (unless `write` already did; if the socket takes it now), then a FIN.
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.session.conn.send_close_notify();
        self.flush_now();
        self.stream.shutdown(Shutdown::Write)
    }

    fn peer(&self) -> Option<std::net::SocketAddr> {
        self.stream.peer_addr().ok()
    }
}

/// What [`TlsSocket::take_plaintext`] ended with.
enum Plaintext {
    /// Everything rustls held was taken (possibly nothing).
    Taken,
    /// The connection's input holds its maximum; rustls may hold more.
    InputFull,
    /// The client closed: with close_notify, or (as many HTTP clients do) by closing TCP.
    Closed,
}

impl TlsSocket<'_> {
    /// Moves the plaintext rustls holds into `input`.
    fn take_plaintext(
        &mut self,
        input: &mut InputBuffer,
        pool: &mut Pool,
        max: usize,
        filled: &mut Filled,
    ) -> io::Result<Plaintext> {
        loop {
            let space = input.space(pool, max);
            if space.is_empty() {
                return Ok(Plaintext::InputFull);
            }
            match self.session.conn.reader().read(space) {
                Ok(0) => return Ok(Plaintext::Closed),
                Ok(n) => {
                    input.filled(n);
                    filled.bytes += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Plaintext::Taken),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(Plaintext::Closed),
                Err(e) => return Err(e),
            }
        }
    }

    /// The records of the plaintext in flight have all left: it leaves the output too.
    fn sent(&mut self, output: &mut Output) {
        match std::mem::replace(&mut self.session.in_flight, InFlight::Nothing) {
            InFlight::Nothing => {}
            InFlight::Bytes(n) => output.advance(n),
            InFlight::File(n) => {
                if let Some(region) = output.file_mut() {
                    region.offset += n;
                }
                output.file_sent();
            }
        }
    }

    /// Encrypts the next piece of the output; false when nothing is left.
    fn encrypt_next(&mut self, output: &mut Output) -> io::Result<bool> {
        let pending = output.pending();
        if !pending.is_empty() {
            let piece = pending.get(..CHUNK).unwrap_or(pending);
            let n = self.session.conn.writer().write(piece)?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.session.in_flight = InFlight::Bytes(n);
            return Ok(true);
        }
        let Some(region) = output.file_mut() else {
            return Ok(false);
        };
        let want = usize::try_from(region.end - region.offset).map_or(CHUNK, |n| n.min(CHUNK));
        if self.scratch.len() < CHUNK {
            self.scratch.resize(CHUNK, 0);
        }
        let chunk = &mut self.scratch[..want];
        let got = loop {
            match region.file.read_at(chunk, region.offset) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        // The file shrank under us: the promised length cannot be kept.
        if got == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let n = self.session.conn.writer().write(&chunk[..got])?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        self.session.in_flight = InFlight::File(n as u64);
        Ok(true)
    }

    /// Sends what rustls holds as far as the socket takes it now; the rest waits for the next
    /// write (or is dropped with the connection, for an alert before a close).
    fn flush_now(&mut self) {
        while self.session.conn.wants_write() {
            let mut wire = WireOut {
                stream: self.stream,
                short: false,
            };
            match self.session.conn.write_tls(&mut wire) {
                Ok(n) if n > 0 && !wire.short => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                _ => return,
            }
        }
    }

    /// A plain HTTP request came to this TLS port: answer it as nginx does (400, in plain
    /// text), send a FIN, and end the connection. What the client sent is read and dropped
    /// first, so the close does not reset the connection under the answer.
    fn refuse_plain_http(&mut self) -> io::Error {
        if self.scratch.len() < CHUNK {
            self.scratch.resize(CHUNK, 0);
        }
        let mut dropped = 0;
        while dropped < PLAIN_REQUEST_DRAIN {
            match (&*self.stream).read(&mut self.scratch[..]) {
                Ok(n) if n > 0 => dropped += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                _ => break,
            }
        }
        let mut answer = Vec::new();
        Refusal::PlainHttpOnTlsPort.response().write(
            &mut answer,
            &self.date,
            Version::Http11,
            false,
            false,
        );
        // One attempt: a few hundred bytes fit in any socket that has sent nothing yet.
        let _ = (&*self.stream).write(&answer);
        let _ = self.stream.shutdown(Shutdown::Write);
        io::Error::new(
            io::ErrorKind::InvalidData,
            "a plain HTTP request on a TLS port",
        )
    }
}

/// The socket as rustls reads it: notes a short read (the receive queue is empty, as on a plain
/// socket) and the first byte read.
struct WireIn<'s> {
    stream: &'s TcpStream,
    short: bool,
    first: Option<u8>,
}

impl Read for WireIn<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (&*self.stream).read(buf)?;
        self.short = n < buf.len();
        if self.first.is_none() {
            self.first = buf.get(..n).and_then(|read| read.first().copied());
        }
        Ok(n)
    }
}

/// The socket as rustls writes to it (one `writev` for all its records): notes a short write,
/// after which the socket is full and another attempt would only fail.
struct WireOut<'s> {
    stream: &'s TcpStream,
    short: bool,
}

impl Write for WireOut<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = (&*self.stream).write(buf)?;
        self.short = n < buf.len();
        Ok(n)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let n = (&*self.stream).write_vectored(bufs)?;
        self.short = n < bufs.iter().map(|b| b.len()).sum();
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::BUFFER_SIZE;
    use crate::tls::testing::{make, write};
    use crate::tls::TlsConfig;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use std::net::TcpListener;
    use std::time::{Duration, Instant};

    /// A server session on an accepted socket after its handshake, and a client thread that
    /// sent `payload` as application data once the handshake was done (all of it is in the
    /// socket when this returns) and waits for the server to close.
    fn connected(payload: Vec<u8>) -> (TcpStream, TlsSession, std::thread::JoinHandle<()>) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let made = make(&rcgen::PKCS_ECDSA_P256_SHA256);
        let cert = write(dir.path(), "cert.pem", &made.cert);
        let key = write(dir.path(), "key.pem", &made.key);
        let ca =
            CertificateDer::from_pem_slice(made.ca.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        let server = TlsConfig::load(&cert, &key, &[]).unwrap_or_else(|e| panic!("{e}"));
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).unwrap_or_else(|e| panic!("{e}"));
        let client_config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
        .unwrap_or_else(|e| panic!("{e}"));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let (sent_tx, sent_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let client = std::thread::spawn(move || {
            let name = ServerName::try_from("localhost").unwrap_or_else(|e| panic!("{e}"));
            let conn = rustls::ClientConnection::new(Arc::new(client_config), name)
                .unwrap_or_else(|e| panic!("{e}"));
            let sock = TcpStream::connect(addr).unwrap_or_else(|e| panic!("{e}"));
            sock.set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap_or_else(|e| panic!("{e}"));
            let mut stream = rustls::StreamOwned::new(conn, sock);
            while stream.conn.is_handshaking() {
                stream
                    .conn
                    .complete_io(&mut stream.sock)
                    .unwrap_or_else(|e| panic!("{e}"));
            }
            // Once the server has finished its side too, so the payload waits in its socket.
            go_rx
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("{e}"));
            stream.write_all(&payload).unwrap_or_else(|e| panic!("{e}"));
            stream.flush().unwrap_or_else(|e| panic!("{e}"));
            let _ = sent_tx.send(());
            let mut rest = Vec::new();
            let _ = stream.sock.read_to_end(&mut rest);
        });
        let (socket, _) = listener.accept().unwrap_or_else(|e| panic!("{e}"));
        socket
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut session =
            TlsSession::new(Arc::clone(server.server_config())).unwrap_or_else(|e| panic!("{e}"));
        let (mut pool, mut input, mut scratch) =
            (Pool::default(), InputBuffer::default(), Vec::new());
        let started = Instant::now();
        while session.conn.is_handshaking() {
            assert!(started.elapsed() < Duration::from_secs(10), "no handshake");
            let mut io = TlsSocket {
                stream: &socket,
                session: &mut session,
                scratch: &mut scratch,
                date: [b' '; 29],
            };
            io.read(&mut input, &mut pool, BUFFER_SIZE)
                .unwrap_or_else(|e| panic!("{e}"));
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(input.is_empty());
        go_tx.send(()).unwrap_or_else(|e| panic!("{e}"));
        sent_rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{e}"));
        // The client's writes have returned: on loopback its bytes are in our socket.
        std::thread::sleep(Duration::from_millis(20));
        (socket, session, client)
    }

    /// A read that fills the connection's input may have decrypted records that already left
    /// the socket: it must not report the socket drained, or nothing would ever announce the
    /// plaintext rustls still holds (the connection would wait for an edge that never comes;
    /// a 3 MiB WebSocket message over TLS stalled so, one time in three). The payloads end
    /// just past a full input (64 KiB), so the read that drains the socket is one whose
    /// records overflow the input.
    #[test]
    fn a_read_that_fills_the_input_is_never_drained() {
        for extra in [1, 200, 1000, 5000, 15000] {
            let payload: Vec<u8> = (0..BUFFER_SIZE + extra).map(|i| (i % 251) as u8).collect();
            let (socket, mut session, client) = connected(payload.clone());
            let (mut pool, mut input, mut scratch) =
                (Pool::default(), InputBuffer::default(), Vec::new());
            let mut received = Vec::new();
            loop {
                let mut io = TlsSocket {
                    stream: &socket,
                    session: &mut session,
                    scratch: &mut scratch,
                    date: [b' '; 29],
                };
                let filled = io
                    .read(&mut input, &mut pool, BUFFER_SIZE)
                    .unwrap_or_else(|e| panic!("{e}"));
                received.extend_from_slice(input.bytes());
                input.clear();
                // Everything was sent before the first read: a drained read is the last one.
                if filled.drained {
                    break;
                }
            }
            assert_eq!(received.len(), payload.len(), "payload of 64 KiB + {extra}");
            assert!(received == payload, "the plaintext differs");
            drop(socket);
            client
                .join()
                .unwrap_or_else(|_| panic!("the client thread panicked"));
        }
    }
}
