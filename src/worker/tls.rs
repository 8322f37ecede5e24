//! The connection's [`Transport`] over TLS: ciphertext in from the socket and out to it,
//! plaintext into the connection's input buffer and out of its output, with a rustls session
//! as the sans-IO engine in between.
//!
//! It owns one connection's TLS session and performs the socket I/O that session asks for.
//! The session is rustls' *unbuffered* one: rustls keeps no buffer of its own, so an idle TLS
//! connection holds its keys and handshake state and nothing else. Ciphertext is read into
//! a buffer of the session's borrowed from the worker's pool and given back whenever no
//! partial record is left in it (a small rest moves to a buffer of its own size, as for
//! plain input). Records are made in a per-worker buffer and written at once; when the socket
//! does not take them all, the connection keeps that buffer (the worker takes a spare) until
//! they have left.
//!
//! The handshake happens here, before the connection sees a byte: a read during the handshake
//! moves handshake records both ways and hands over no plaintext, so the connection's header
//! deadline (running from the accept) also bounds a client that stalls mid-handshake. It knows
//! nothing of HTTP beyond recognising a plain HTTP request sent to a TLS port, which it answers
//! with the connection layer's refusal for that case. It never blocks: a socket that is empty
//! or full ends the call, and what is left waits for the next edge.
//!
//! Output leaves the connection's buffers only once its records have left: plaintext that was
//! encrypted is "in flight" until the socket took every record made from it, so the
//! connection's idea of what is still unsent (its send deadline, its close after the last
//! response) stays true over TLS. Large files cannot go by sendfile (the kernel would send
//! them unencrypted): they are read in chunks with `pread` into the worker's scratch buffer and
//! encrypted, and the next chunk is read only when the last one's records have left, so a slow
//! client holds one chunk of ciphertext and no more. With `--ktls true`, a finished TLS 1.3
//! session is offered to the kernel once it holds nothing (`ready_for_kernel`); see
//! `worker::ktls`.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, WriteTraffic,
};
use rustls::ServerConfig;

use crate::conn::{
    Filled, InputBuffer, Output, Pool, Refusal, Transport, Written, BUFFER_SIZE, READ_BUDGET,
};
use crate::http::Version;
use crate::metrics::TlsFailure;

/// Most plaintext encrypted at once (four 16 KiB records).
const CHUNK: usize = 64 * 1024;
/// Most ciphertext held unprocessed: a pooled buffer and one more record (the largest TLS
/// record is 16 KiB plus its header and up to 256 bytes of expansion), so a full record
/// always fits behind a partial one. A handshake flight larger than that is refused.
const WIRE_IN_MAX: usize = BUFFER_SIZE + 16 * 1024 + 512;
/// Most spare wire buffers a worker keeps (each about 65 KiB); more are freed.
const SPARE_WIRES: usize = 8;
/// Most bytes of a plain HTTP request read and dropped before it is answered, so that closing
/// does not reset the connection under the answer.
const PLAIN_REQUEST_DRAIN: usize = 64 * 1024;

/// One connection's TLS state.
pub struct TlsSession {
    conn: UnbufferedServerConnection,
    /// Ciphertext read from the socket and not yet processed: a partial record.
    wire_in: InputBuffer,
    /// Bytes that wait, boxed (an idle connection pays one null pointer for them).
    spill: Option<Box<Spill>>,
    /// Plaintext encrypted into records that have not all left yet.
    in_flight: InFlight,
    /// The client's first bytes have been looked at (a TLS record, or plain HTTP).
    sniffed: bool,
    /// The client sent close_notify, or closed TCP.
    peer_closed: bool,
    /// Our close_notify has been encrypted.
    close_queued: bool,
    /// rustls returned an error: it must not be asked to go on (the connection closes).
    broken: bool,
    /// How the handshake ended, until the worker counts it.
    outcome: Option<Handshake>,
    /// The kernel would not take this session (`--ktls`): it is not offered again.
    kernel_declined: bool,
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

/// What a session keeps between calls when the socket or the connection could not take it.
#[derive(Default)]
struct Spill {
    /// Plaintext of a record that did not fit in the connection's input: handed over first.
    plain: Vec<u8>,
    /// Ciphertext made but not yet taken by the socket (`wire[sent..]`): sent before anything
    /// else.
    wire: Vec<u8>,
    sent: usize,
}

impl TlsSession {
    /// A session for a connection just accepted on a TLS port.
    pub fn new(config: Arc<ServerConfig>) -> Result<TlsSession, rustls::Error> {
        Ok(TlsSession {
            conn: UnbufferedServerConnection::new(config)?,
            wire_in: InputBuffer::default(),
            spill: None,
            in_flight: InFlight::Nothing,
            sniffed: false,
            peer_closed: false,
            close_queued: false,
            broken: false,
            outcome: None,
            kernel_declined: false,
            told: false,
        })
    }

    /// The handshake is over (TLS 1.3) and nothing is held: no partial record read, no
    /// record unsent, no plaintext undelivered, no close begun; and the kernel has not
    /// declined it. Its keys can go to the kernel now, which would start reading and writing
    /// at a record boundary.
    pub fn ready_for_kernel(&self) -> bool {
        !self.conn.is_handshaking()
            && self.conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3)
            && self.wire_in.is_empty()
            && self.spill.is_none()
            && self.in_flight == InFlight::Nothing
            && !self.close_queued
            && !self.peer_closed
            && !self.broken
            && !self.kernel_declined
    }

    /// The kernel would not take this session: it stays in user space for good.
    pub fn decline_kernel(&mut self) {
        self.kernel_declined = true;
    }

    /// The cipher suite agreed on, once the handshake has got that far.
    pub fn suite(&self) -> Option<rustls::CipherSuite> {
        self.conn.negotiated_cipher_suite().map(|s| s.suite())
    }

    /// The session's traffic secrets and next sequence numbers, and its cipher suite; the
    /// session is gone (only [`TlsSession::ready_for_kernel`] ones should be taken apart).
    pub fn into_kernel(
        self,
    ) -> Result<(rustls::ExtractedSecrets, rustls::SupportedCipherSuite), rustls::Error> {
        let (secrets, kernel) = self.conn.dangerous_into_kernel_connection()?;
        Ok((secrets, kernel.negotiated_cipher_suite()))
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

    fn spill(&mut self) -> &mut Spill {
        self.spill.get_or_insert_with(Box::default)
    }

    /// Plaintext waiting for the connection's input.
    fn plain_rest(&self) -> &[u8] {
        self.spill.as_ref().map_or(&[], |s| &s.plain)
    }

    /// Ciphertext waiting for the socket.
    fn wire_waiting(&self) -> &[u8] {
        self.spill
            .as_ref()
            .and_then(|s| s.wire.get(s.sent..))
            .unwrap_or_default()
    }

    /// Frees the spill once nothing waits in it.
    fn tidy(&mut self) {
        if self.plain_rest().is_empty() && self.wire_waiting().is_empty() {
            self.spill = None;
        }
    }

    fn ended(&mut self, how: Handshake) {
        if !self.told {
            self.told = true;
            self.outcome = Some(how);
        }
    }

    /// The handshake has just finished: note how, for the counters.
    fn finished(&mut self) {
        let finished = Handshake::Finished {
            tls13: self.conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3),
            resumed: self.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
        };
        self.ended(finished);
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

/// The worker's buffers for TLS connections, used by one connection at a time (everything in
/// them is sent, or moved into the session, before the next connection runs). Empty until a
/// TLS connection first needs them.
#[derive(Default)]
pub struct TlsBuffers {
    /// File chunks on their way into the encrypter.
    scratch: Vec<u8>,
    /// Records on their way to the socket: `wire[..made]` of the current [`TlsSocket`].
    wire: Vec<u8>,
    /// Wire buffers that connections kept while their socket was full and have sent since.
    spare: Vec<Vec<u8>>,
}

/// The scratch buffer, a chunk long (grown on first use).
fn chunk_of(scratch: &mut Vec<u8>) -> &mut [u8] {
    if scratch.len() < CHUNK {
        scratch.resize(CHUNK, 0);
    }
    &mut scratch[..CHUNK]
}

/// A connection's socket and TLS session, borrowed for one drive.
pub struct TlsSocket<'s> {
    stream: &'s TcpStream,
    session: &'s mut TlsSession,
    buffers: &'s mut TlsBuffers,
    /// Bytes of records made in `buffers.wire` and not yet sent.
    made: usize,
    /// Records were sent since the handshake finished (or it did not finish in this drive).
    answered: bool,
    /// The current IMF-fixdate, for the one answer written here (plain HTTP on a TLS port).
    date: [u8; 29],
}

/// What one turn of rustls' state machine came to.
enum Step {
    /// It made progress (plaintext handed over, records made or sent): turn again.
    Again,
    /// It needs more ciphertext from the client (during the handshake, or with nothing left
    /// to read and nothing given to encrypt).
    NeedBytes,
    /// The connection's input is full and plaintext is left over.
    InputFull,
    /// Records of the output were made in the wire buffer.
    Encrypted,
    /// Application data may be sent, and none is left to encrypt.
    NothingToSend,
    /// Both sides have sent close_notify.
    Closed,
}

/// Where a turn puts plaintext it decrypts.
struct Reader<'a> {
    input: &'a mut InputBuffer,
    pool: &'a mut Pool,
    max: usize,
    filled: &'a mut Filled,
}

impl<'s> TlsSocket<'s> {
    pub fn new(
        stream: &'s TcpStream,
        session: &'s mut TlsSession,
        buffers: &'s mut TlsBuffers,
        date: [u8; 29],
    ) -> TlsSocket<'s> {
        TlsSocket {
            stream,
            session,
            buffers,
            made: 0,
            answered: true,
            date,
        }
    }
}

impl Transport for TlsSocket<'_> {
    /// Hands over the plaintext of the records the client sent, reading and decrypting until
    /// the socket is drained, the client closes, or `input` holds `max` bytes.
    ///
    /// The connection's read budget counts plaintext, so records that carry little or none
    /// (empty ones, handshake and alert records) are bounded here: after [`READ_BUDGET`] bytes
    /// of ciphertext in one call the read ends undrained. A client that sends such records
    /// then waits for its next edge instead of holding the worker; one that sends data fills
    /// the input long before (a read ends when the input is full).
    fn read(&mut self, input: &mut InputBuffer, pool: &mut Pool, max: usize) -> io::Result<Filled> {
        let mut filled = Filled::default();
        let read = self.read_records(&mut Reader {
            input,
            pool,
            max,
            filled: &mut filled,
        });
        self.session.wire_in.settle(pool, filled.drained);
        read.map(|()| filled)
    }

    /// Sends the records made earlier, then encrypts the next piece of the output (its bytes,
    /// then its file region, a chunk at a time), until everything has left or the socket is
    /// full. With `last`, close_notify is encrypted behind the final record, so a small last
    /// answer and its alert leave in one `write`.
    fn write(&mut self, output: &mut Output, last: bool) -> io::Result<Written> {
        let mut written = Written::default();
        loop {
            if !self.send_waiting(&mut written)? {
                return Ok(written);
            }
            self.sent(output);
            // Nothing to encrypt: no need to ask rustls (a drive writes after every read).
            if output.is_empty() && (!last || self.session.close_queued) {
                written.all = true;
                return Ok(written);
            }
            match self.turn(None, Some((output, last)))? {
                Step::Again | Step::InputFull => {}
                Step::Encrypted => {
                    if !self.transmit(&mut written)? {
                        return Ok(written);
                    }
                }
                Step::NothingToSend => {
                    written.all = true;
                    return Ok(written);
                }
                // Before the handshake has finished, or after both sides closed, there is no
                // way to send the output (a 408 for a client that stalled mid-handshake).
                Step::NeedBytes | Step::Closed => {
                    if output.is_empty() {
                        written.all = true;
                        return Ok(written);
                    }
                    return Err(io::ErrorKind::NotConnected.into());
                }
            }
        }
    }

    /// Sends close_notify (unless it was sent; if the socket takes it now), then a FIN.
    fn shutdown_write(&mut self) -> io::Result<()> {
        let mut written = Written::default();
        if self.send_waiting(&mut written).unwrap_or(false)
            && !self.session.conn.is_handshaking()
            && !self.session.close_queued
        {
            let mut nothing = Output::default();
            if let Ok(Step::Encrypted) = self.turn(None, Some((&mut nothing, true))) {
                let _ = self.transmit(&mut written);
            }
        }
        self.stream.shutdown(Shutdown::Write)
    }

    fn peer(&self) -> Option<std::net::SocketAddr> {
        self.stream.peer_addr().ok()
    }
}

impl TlsSocket<'_> {
    fn read_records(&mut self, to: &mut Reader<'_>) -> io::Result<()> {
        if self.session.close_queued {
            return self.drop_after_close(to.filled);
        }
        let mut ciphertext = 0;
        let mut socket_drained = false;
        loop {
            if !self.session.plain_rest().is_empty() {
                let spill = self.session.spill();
                let n = to.input.push(&spill.plain, to.pool, to.max);
                to.filled.bytes += n;
                spill.plain.drain(..n);
                // rustls may hold more plaintext too, decrypted from records that have left
                // the socket: no edge will announce it, so the read is not drained.
                if !spill.plain.is_empty() {
                    return Ok(());
                }
                spill.plain = Vec::new();
                self.session.tidy();
            }
            if self.session.peer_closed {
                to.filled.eof = true;
                to.filled.drained = true;
                return Ok(());
            }
            match self.turn(Some(to), None)? {
                Step::InputFull => return Ok(()),
                Step::Closed => self.session.peer_closed = true,
                Step::NeedBytes => {
                    if !self.answered {
                        // The client's Finished ended a TLS 1.3 handshake and nothing answers
                        // it (a resumed one sends no new ticket): acknowledge it now. A client
                        // that leaves Nagle on (Python's ssl, for one) holds its request until
                        // then, and the kernel would delay the ACK by 40 ms: measured, 50 ms
                        // per new connection instead of 1.4.
                        let _ = crate::sys::ack_now(self.stream);
                        self.answered = true;
                    }
                    if socket_drained || ciphertext >= READ_BUDGET {
                        to.filled.drained = socket_drained;
                        return Ok(());
                    }
                    match self.read_socket(to.pool)? {
                        // The client closed TCP: the reader reports it once the plaintext is
                        // taken.
                        None => self.session.peer_closed = true,
                        Some((n, short)) => {
                            ciphertext += n;
                            socket_drained = short;
                        }
                    }
                }
                Step::Again | Step::Encrypted | Step::NothingToSend => {}
            }
        }
    }

    /// Our close_notify has been made: nothing the client still sends can matter, so it is
    /// read and dropped unopened, at most [`READ_BUDGET`] bytes a call. rustls must not see
    /// it: bytes it refuses there would make it queue a fatal alert after the close_notify,
    /// which it treats as a bug (a debug assertion).
    fn drop_after_close(&mut self, filled: &mut Filled) -> io::Result<()> {
        let scratch = chunk_of(&mut self.buffers.scratch);
        let mut dropped = 0;
        while dropped < READ_BUDGET {
            match (&*self.stream).read(&mut scratch[..]) {
                Ok(0) => {
                    filled.eof = true;
                    filled.drained = true;
                    return Ok(());
                }
                Ok(n) if n < scratch.len() => break,
                Ok(n) => dropped += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        filled.drained = dropped < READ_BUDGET;
        Ok(())
    }

    /// Reads ciphertext from the socket behind what is held: the bytes and whether the read
    /// was short (the socket is drained; so is a WouldBlock, as 0 bytes), or `None` at EOF.
    fn read_socket(&mut self, pool: &mut Pool) -> io::Result<Option<(usize, bool)>> {
        let space = self.session.wire_in.space(pool, WIRE_IN_MAX);
        if space.is_empty() {
            // A partial record or handshake flight as large as the buffer: too large.
            return Err(self.failed(rustls::Error::General("handshake too large".into())));
        }
        let want = space.len();
        let n = loop {
            match (&*self.stream).read(space) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Some((0, true))),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            return Ok(None);
        }
        if !self.session.sniffed {
            self.session.sniffed = true;
            if space[0].is_ascii_uppercase() {
                self.session.ended(Handshake::Failed(TlsFailure::PlainHttp));
                return Err(self.refuse_plain_http());
            }
        }
        self.session.wire_in.filled(n);
        Ok(Some((n, n < want)))
    }

    /// One turn of rustls over the ciphertext held: does what it asks for (hands plaintext
    /// to `reader`, or keeps it when there is none; makes and sends handshake records) and,
    /// when it may send application data and `writer` is given, encrypts the next piece of
    /// that output into the wire buffer.
    fn turn(
        &mut self,
        reader: Option<&mut Reader<'_>>,
        writer: Option<(&mut Output, bool)>,
    ) -> io::Result<Step> {
        if self.session.broken {
            return Err(io::ErrorKind::InvalidData.into());
        }
        let handshaking = self.session.conn.is_handshaking();
        let TlsSession {
            conn,
            wire_in,
            spill,
            in_flight,
            close_queued,
            peer_closed,
            ..
        } = &mut *self.session;
        let buffers = &mut *self.buffers;
        let status = conn.process_tls_records(wire_in.bytes_mut());
        let mut discard = status.discard;
        let mut flight_done = false;
        let step = match status.state {
            Err(e) => Err(e),
            Ok(ConnectionState::ReadTraffic(mut records)) => {
                let mut step = Ok(Step::Again);
                let mut reader = reader;
                while let Some(record) = records.next_record() {
                    match record {
                        Ok(record) => {
                            discard += record.discard;
                            let taken = match reader.as_mut() {
                                Some(r) => {
                                    let n = r.input.push(record.payload, r.pool, r.max);
                                    r.filled.bytes += n;
                                    n
                                }
                                None => 0,
                            };
                            if let Some(rest) = record.payload.get(taken..) {
                                if !rest.is_empty() {
                                    spill
                                        .get_or_insert_with(Box::default)
                                        .plain
                                        .extend_from_slice(rest);
                                    step = Ok(Step::InputFull);
                                }
                            }
                        }
                        Err(e) => {
                            step = Err(e);
                            break;
                        }
                    }
                }
                step
            }
            Ok(ConnectionState::EncodeTlsData(mut encoder)) => {
                append(&mut buffers.wire, &mut self.made, |out| {
                    encoder.encode(out).map_err(|e| match e {
                        EncodeError::InsufficientSize(InsufficientSizeError { required_size }) => {
                            Some(required_size)
                        }
                        _ => None,
                    })
                })
                .map(|()| Step::Again)
            }
            // Every record of the flight is made: they leave together (one write).
            Ok(ConnectionState::TransmitTlsData(transmit)) => {
                transmit.done();
                flight_done = true;
                Ok(Step::Again)
            }
            Ok(ConnectionState::PeerClosed) => {
                *peer_closed = true;
                Ok(Step::Again)
            }
            Ok(ConnectionState::Closed) => Ok(Step::Closed),
            Ok(ConnectionState::BlockedHandshake) => Ok(Step::NeedBytes),
            Ok(ConnectionState::WriteTraffic(mut traffic)) => match writer {
                None => Ok(Step::NeedBytes),
                Some((output, last)) => encrypt_next(
                    &mut traffic,
                    output,
                    last,
                    buffers,
                    &mut self.made,
                    in_flight,
                    close_queued,
                ),
            },
            Ok(_) => Err(rustls::Error::General("unexpected early data".into())),
        };
        self.session.wire_in.consume(discard);
        let step = match step {
            Ok(step) => step,
            Err(e) => return Err(self.failed(e)),
        };
        if handshaking && !self.session.conn.is_handshaking() {
            self.session.finished();
            self.answered = false;
        }
        if flight_done && self.made > 0 {
            self.answered = true;
            self.transmit(&mut Written::default())?;
        }
        Ok(step)
    }

    /// Sends what is made in the wire buffer, behind what waits from an earlier call; keeps
    /// what the socket does not take. True when everything has left.
    fn transmit(&mut self, written: &mut Written) -> io::Result<bool> {
        let made = std::mem::take(&mut self.made);
        let wire = self.buffers.wire.get(..made).unwrap_or_default();
        if !self.session.wire_waiting().is_empty() {
            self.session.spill().wire.extend_from_slice(wire);
            return self.send_waiting(written);
        }
        let mut sent = 0;
        while sent < wire.len() {
            match (&*self.stream).write(&wire[sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        written.bytes += sent as u64;
        if sent < made {
            // The socket is full: the connection keeps the wire buffer itself (no copy) and
            // the worker makes its next records in a spare one.
            let spare = self.buffers.spare.pop().unwrap_or_default();
            let mut kept = std::mem::replace(&mut self.buffers.wire, spare);
            kept.truncate(made);
            let spill = self.session.spill();
            spill.wire = kept;
            spill.sent = sent;
            return Ok(false);
        }
        Ok(true)
    }

    /// Sends the records left from an earlier call; true when none is left (the buffer that
    /// held them is freed).
    fn send_waiting(&mut self, written: &mut Written) -> io::Result<bool> {
        let Some(spill) = self.session.spill.as_mut() else {
            return Ok(true);
        };
        while let Some(rest) = spill.wire.get(spill.sent..).filter(|r| !r.is_empty()) {
            match (&*self.stream).write(rest) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    spill.sent += n;
                    written.bytes += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let drained = std::mem::take(&mut spill.wire);
        spill.sent = 0;
        if drained.capacity() >= CHUNK && self.buffers.spare.len() < SPARE_WIRES {
            self.buffers.spare.push(drained);
        }
        self.session.tidy();
        Ok(true)
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

    /// rustls refused what the client sent (or the connection broke): a handshake under way
    /// has failed for that reason. The alert rustls queued to say why is sent if the socket
    /// takes it now.
    fn failed(&mut self, error: rustls::Error) -> io::Error {
        if self.session.conn.is_handshaking() {
            self.session.ended(Handshake::Failed(failure_of(&error)));
        }
        // rustls queued a fatal alert (most errors do): the next turn hands it over before
        // looking at the ciphertext again. Only that one turn: another would meet the same
        // error and queue a second fatal alert, which trips a rustls debug assertion.
        self.session.broken = true;
        let TlsSession { conn, wire_in, .. } = &mut *self.session;
        let status = conn.process_tls_records(wire_in.bytes_mut());
        if let Ok(ConnectionState::EncodeTlsData(mut encoder)) = status.state {
            let _ = append(&mut self.buffers.wire, &mut self.made, |out| {
                encoder.encode(out).map_err(|_| None)
            });
        }
        if self.made > 0 {
            let _ = self.transmit(&mut Written::default());
        }
        io::Error::new(io::ErrorKind::InvalidData, error)
    }

    /// A plain HTTP request came to this TLS port: answer it as nginx does (400, in plain
    /// text), send a FIN, and end the connection. What the client sent is read and dropped
    /// first, so the close does not reset the connection under the answer.
    fn refuse_plain_http(&mut self) -> io::Error {
        let scratch = chunk_of(&mut self.buffers.scratch);
        let mut dropped = 0;
        while dropped < PLAIN_REQUEST_DRAIN {
            match (&*self.stream).read(&mut scratch[..]) {
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

/// Encrypts the next piece of the output (its bytes, else a chunk of its file region) into
/// the wire buffer, and close_notify behind it when it is the `last` of the output.
fn encrypt_next(
    traffic: &mut WriteTraffic<'_, ServerConnectionData>,
    output: &mut Output,
    last: bool,
    buffers: &mut TlsBuffers,
    made: &mut usize,
    in_flight: &mut InFlight,
    close_queued: &mut bool,
) -> Result<Step, rustls::Error> {
    let before = *made;
    let pending = output.pending();
    let mut rest = 0;
    if !pending.is_empty() {
        let piece = pending.get(..CHUNK).unwrap_or(pending);
        encrypt(traffic, piece, &mut buffers.wire, made)?;
        *in_flight = InFlight::Bytes(piece.len());
        rest = pending.len() - piece.len() + usize::from(output.has_file());
    } else if let Some(region) = output.file_mut() {
        let left = region.end - region.offset;
        let want = usize::try_from(left).map_or(CHUNK, |n| n.min(CHUNK));
        let chunk = &mut chunk_of(&mut buffers.scratch)[..want];
        let got = loop {
            match region.file.read_at(chunk, region.offset) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(rustls::Error::General(format!("reading the file: {e}"))),
            }
        };
        // The file shrank under us: the promised length cannot be kept.
        if got == 0 {
            return Err(rustls::Error::General(
                "the file shrank while being sent".into(),
            ));
        }
        encrypt(traffic, &chunk[..got], &mut buffers.wire, made)?;
        *in_flight = InFlight::File(got as u64);
        rest = usize::from(left > got as u64);
    }
    if last && rest == 0 && !*close_queued {
        append(&mut buffers.wire, made, |out| {
            traffic.queue_close_notify(out).map_err(encrypt_room)
        })?;
        *close_queued = true;
    }
    Ok(if *made > before {
        Step::Encrypted
    } else {
        Step::NothingToSend
    })
}

fn encrypt(
    traffic: &mut WriteTraffic<'_, ServerConnectionData>,
    plaintext: &[u8],
    wire: &mut Vec<u8>,
    made: &mut usize,
) -> Result<(), rustls::Error> {
    append(wire, made, |out| {
        traffic.encrypt(plaintext, out).map_err(encrypt_room)
    })
}

/// The room an encryption needs, when it failed for lack of it.
fn encrypt_room(error: EncryptError) -> Option<usize> {
    match error {
        EncryptError::InsufficientSize(InsufficientSizeError { required_size }) => {
            Some(required_size)
        }
        _ => None,
    }
}

/// Lets `make` write records into `wire` behind the `made` bytes already there, growing the
/// buffer to the size it asks for (it writes nothing when the room is short).
fn append(
    wire: &mut Vec<u8>,
    made: &mut usize,
    mut make: impl FnMut(&mut [u8]) -> Result<usize, Option<usize>>,
) -> Result<(), rustls::Error> {
    if wire.len() < CHUNK + 1024 {
        wire.resize(CHUNK + 1024, 0);
    }
    loop {
        let room = wire.get_mut(*made..).unwrap_or_default();
        let len = room.len();
        match make(room) {
            Ok(n) => {
                *made += n;
                return Ok(());
            }
            Err(Some(required)) if required > len => wire.resize(*made + required, 0),
            Err(_) => return Err(rustls::Error::General("cannot encrypt the output".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::BUFFER_SIZE;
    use crate::tls::testing::{make, write};
    use crate::tls::TlsConfig;
    use fastrand::Rng;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use std::net::TcpListener;
    use std::os::fd::AsFd;
    use std::time::{Duration, Instant};

    /// A server's TLS settings and a client's that trusts its certificate (whose files live
    /// as long as this).
    struct Fixture {
        server: Arc<ServerConfig>,
        client: Arc<rustls::ClientConfig>,
        _dir: tempfile::TempDir,
    }

    /// With `small_hello`, the client offers only X25519 (no post-quantum key share), so its
    /// ClientHello is a few hundred bytes instead of about 1.4 KB.
    fn fixture(small_hello: bool) -> Fixture {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let made = make(&rcgen::PKCS_ECDSA_P256_SHA256);
        let cert = write(dir.path(), "cert.pem", &made.cert);
        let key = write(dir.path(), "key.pem", &made.key);
        let ca =
            CertificateDer::from_pem_slice(made.ca.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        let server = TlsConfig::load(&cert, &key, &[]).unwrap_or_else(|e| panic!("{e}"));
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).unwrap_or_else(|e| panic!("{e}"));
        let mut provider = rustls::crypto::aws_lc_rs::default_provider();
        if small_hello {
            provider.kx_groups = vec![rustls::crypto::aws_lc_rs::kx_group::X25519];
        }
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .map(|b| b.with_root_certificates(roots).with_no_client_auth())
            .unwrap_or_else(|e| panic!("{e}"));
        Fixture {
            server: Arc::clone(server.server_config()),
            client: Arc::new(client),
            _dir: dir,
        }
    }

    /// Waits until bytes written to `server`'s peer have arrived (10 s at most).
    fn arrived(server: &TcpStream) {
        let ready = crate::sys::wait_readable(server.as_fd(), Some(Duration::from_secs(10)));
        assert!(
            ready.unwrap_or_else(|e| panic!("{e}")),
            "nothing arrived within 10 s"
        );
    }

    /// Hands `bytes` to the server in two pieces, split after `split` bytes (if that is
    /// inside them), with a server read after each piece has arrived; returns the plaintext
    /// the reads handed over.
    fn feed(
        client: &mut TcpStream,
        server: &TcpStream,
        session: &mut TlsSession,
        bytes: &[u8],
        split: Option<usize>,
    ) -> Vec<u8> {
        let (mut pool, mut input, mut buffers) = (
            Pool::default(),
            InputBuffer::default(),
            TlsBuffers::default(),
        );
        let at = split.filter(|&k| k > 0 && k < bytes.len());
        let pieces = match at {
            Some(k) => vec![&bytes[..k], &bytes[k..]],
            None => vec![bytes],
        };
        for piece in pieces {
            client.write_all(piece).unwrap_or_else(|e| panic!("{e}"));
            arrived(server);
            let mut io = TlsSocket::new(server, session, &mut buffers, [b' '; 29]);
            io.read(&mut input, &mut pool, BUFFER_SIZE)
                .unwrap_or_else(|e| panic!("split at {split:?}: {e}"));
        }
        input.bytes().to_vec()
    }

    /// A fresh TCP connection with a rustls client at one end and a server session at the
    /// other (non-blocking, as the worker's), and the client's ClientHello, not yet sent.
    struct Pair {
        client_sock: TcpStream,
        server_sock: TcpStream,
        client: rustls::ClientConnection,
        session: TlsSession,
        hello: Vec<u8>,
    }

    fn pair(fixture: &Fixture) -> Pair {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let client_sock = TcpStream::connect(addr).unwrap_or_else(|e| panic!("{e}"));
        client_sock
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap_or_else(|e| panic!("{e}"));
        let (server_sock, _) = listener.accept().unwrap_or_else(|e| panic!("{e}"));
        server_sock
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("{e}"));
        let name = ServerName::try_from("localhost").unwrap_or_else(|e| panic!("{e}"));
        let mut client = rustls::ClientConnection::new(Arc::clone(&fixture.client), name)
            .unwrap_or_else(|e| panic!("{e}"));
        let session =
            TlsSession::new(Arc::clone(&fixture.server)).unwrap_or_else(|e| panic!("{e}"));
        let mut hello = Vec::new();
        while client.wants_write() {
            client
                .write_tls(&mut hello)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        Pair {
            client_sock,
            server_sock,
            client,
            session,
            hello,
        }
    }

    /// The client takes the server's flight from its socket and finishes its handshake; its
    /// second flight: its Finished and `request` in application data, not yet sent.
    fn second_flight(
        client: &mut rustls::ClientConnection,
        sock: &mut TcpStream,
        request: &[u8],
    ) -> Vec<u8> {
        while client.is_handshaking() {
            client.read_tls(sock).unwrap_or_else(|e| panic!("{e}"));
            client
                .process_new_packets()
                .unwrap_or_else(|e| panic!("{e}"));
        }
        client
            .writer()
            .write_all(request)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut flight = Vec::new();
        while client.wants_write() {
            client
                .write_tls(&mut flight)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        flight
    }

    /// One handshake and request whose first flight (`flight` 0: the ClientHello) or second
    /// (1: the client's Finished and its request) reaches the server split after `split`
    /// bytes; returns that flight's length.
    fn split_handshake(fixture: &Fixture, flight: usize, split: usize) -> usize {
        let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let Pair {
            mut client_sock,
            server_sock,
            mut client,
            mut session,
            hello,
        } = pair(fixture);
        let got = feed(
            &mut client_sock,
            &server_sock,
            &mut session,
            &hello,
            (flight == 0).then_some(split),
        );
        assert!(got.is_empty(), "plaintext before the handshake");
        let second = second_flight(&mut client, &mut client_sock, request);
        let got = feed(
            &mut client_sock,
            &server_sock,
            &mut session,
            &second,
            (flight == 1).then_some(split),
        );
        assert_eq!(got, request, "flight {flight} split at {split}");
        assert!(
            matches!(
                session.take_outcome(),
                Some(Handshake::Finished { tls13: true, .. })
            ),
            "flight {flight} split at {split}"
        );
        [hello.len(), second.len()][flight]
    }

    /// A session is offered to the kernel only between records: not during the handshake,
    /// not while part of a record waits in its buffer; then its secrets come out with the
    /// sequence numbers the kernel must go on from. Without `--ktls` rustls keeps them.
    #[test]
    fn a_session_is_ready_for_the_kernel_only_between_records() {
        let mut fixture = fixture(true);
        let mut server = (*fixture.server).clone();
        server.enable_secret_extraction = true;
        fixture.server = Arc::new(server);
        let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let Pair {
            mut client_sock,
            server_sock,
            mut client,
            mut session,
            hello,
        } = pair(&fixture);
        feed(&mut client_sock, &server_sock, &mut session, &hello, None);
        assert!(!session.ready_for_kernel(), "during the handshake");
        let second = second_flight(&mut client, &mut client_sock, request);
        // The client's Finished and all of its request's record but 5 bytes.
        let got = feed(
            &mut client_sock,
            &server_sock,
            &mut session,
            &second[..second.len() - 5],
            None,
        );
        assert!(got.is_empty());
        assert!(!session.conn.is_handshaking());
        assert!(!session.ready_for_kernel(), "with part of a record held");
        let got = feed(
            &mut client_sock,
            &server_sock,
            &mut session,
            &second[second.len() - 5..],
            None,
        );
        assert_eq!(got, request);
        assert!(session.ready_for_kernel(), "between records");
        assert_eq!(
            session.suite(),
            Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256)
        );
        let (secrets, _) = session.into_kernel().unwrap_or_else(|e| panic!("{e}"));
        // The request was the first record under the client's traffic key; every record the
        // server sent under its own (the tickets) counts on its side.
        assert_eq!(secrets.rx.0, 1);
        assert!(matches!(
            secrets.tx.1,
            rustls::ConnectionTrafficSecrets::Aes128Gcm { .. }
        ));

        // Without --ktls, the same session keeps its secrets.
        let fixture = self::fixture(true);
        let Pair {
            mut client_sock,
            server_sock,
            mut client,
            mut session,
            hello,
        } = pair(&fixture);
        feed(&mut client_sock, &server_sock, &mut session, &hello, None);
        let second = second_flight(&mut client, &mut client_sock, request);
        feed(&mut client_sock, &server_sock, &mut session, &second, None);
        assert!(session.into_kernel().is_err());
    }

    /// Every split of the client's two flights, one handshake each: rustls' handshake
    /// deframer keeps offsets into the ciphertext the session holds, across reads and across
    /// the buffer moving between the pool and a small one of its own; a record split anywhere
    /// waits for its rest. The request arrives whole and once.
    #[test]
    fn client_flights_split_at_every_byte_finish_the_handshake_and_deliver_the_request_once() {
        let fixture = fixture(true);
        for flight in 0..2 {
            let mut split = 1;
            while split < split_handshake(&fixture, flight, split) {
                split += 1;
            }
            assert!(split > 50, "flight {flight} is only {split} bytes");
        }
    }

    /// Bytes no honest client sends: random ones, record headers of every type with random
    /// bodies (some declaring more than they carry), a real client's records with one byte
    /// changed, and a handshake message far too large.
    fn hostile(rng: &mut Rng, honest: &[u8]) -> Vec<u8> {
        match rng.usize(..4) {
            // A handshake message declaring 16 MiB: rustls refuses it without an alert, after
            // its deframer has taken note of the record.
            3 => {
                let mut bytes = vec![22, 3, 1, 0, 8, rng.u8(..), 0xff, 0xff, 0xff];
                bytes.extend(std::iter::repeat_with(|| rng.u8(..)).take(4));
                bytes
            }
            0 => {
                let n = 1 + rng.usize(..40);
                std::iter::repeat_with(|| rng.u8(..)).take(n).collect()
            }
            1 => {
                let kind = [20u8, 21, 22, 23, 24][rng.usize(..5)];
                let declared = rng.usize(..17 * 1024);
                let carried = declared.min(rng.usize(..declared + 1) + rng.usize(..64));
                let mut record = vec![kind, 3, [1u8, 3][rng.usize(..2)]];
                record.extend_from_slice(&(declared as u16).to_be_bytes());
                record.extend(std::iter::repeat_with(|| rng.u8(..)).take(carried));
                record
            }
            _ => {
                let mut changed = honest.to_vec();
                if !changed.is_empty() {
                    let at = rng.usize(..changed.len());
                    changed[at] ^= 1 << rng.usize(..8);
                }
                changed
            }
        }
    }

    /// Hostile bytes during a handshake, after it, and after the server's close_notify, in
    /// random pieces: every read ends in plaintext, a wait or an error, and writing or
    /// shutting down after an error is refused quietly, never with a panic. rustls panics
    /// when it is shown less ciphertext than it has not discarded, and (in a debug build,
    /// as tests run) when it queues a fatal alert after an error or a close_notify: all three
    /// happened while this transport was written.
    #[test]
    fn hostile_bytes_before_and_after_the_handshake_never_panic() {
        let fixture = fixture(true);
        let mut rng = Rng::with_seed(0x9E37_79B9_7F4A_7C15);
        for case in 0..150 {
            let Pair {
                mut client_sock,
                server_sock,
                mut client,
                mut session,
                hello,
            } = pair(&fixture);
            // A third attack the handshake, a third an established session, a third one whose
            // last answer and close_notify the server has sent.
            let mut honest = hello.clone();
            if case % 3 > 0 {
                feed(&mut client_sock, &server_sock, &mut session, &hello, None);
                honest = second_flight(&mut client, &mut client_sock, b"GET / HTTP/1.1\r\n\r\n");
            }
            if case % 3 == 2 {
                feed(&mut client_sock, &server_sock, &mut session, &honest, None);
                let (mut pool, mut buffers) = (Pool::default(), TlsBuffers::default());
                let mut answer = Output::default();
                answer
                    .buf(&mut pool)
                    .extend_from_slice(b"HTTP/1.1 204 \r\n\r\n");
                let mut io = TlsSocket::new(&server_sock, &mut session, &mut buffers, [b' '; 29]);
                let written = io
                    .write(&mut answer, true)
                    .unwrap_or_else(|e| panic!("{e}"));
                assert!(written.all && session.close_queued, "case {case}");
            }
            let bytes = hostile(&mut rng, &honest);
            let (mut pool, mut input, mut buffers) = (
                Pool::default(),
                InputBuffer::default(),
                TlsBuffers::default(),
            );
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                let n = 1 + rng.usize(..rest.len());
                client_sock
                    .write_all(&rest[..n])
                    .unwrap_or_else(|e| panic!("{e}"));
                rest = &rest[n..];
                arrived(&server_sock);
                let mut io = TlsSocket::new(&server_sock, &mut session, &mut buffers, [b' '; 29]);
                if io.read(&mut input, &mut pool, BUFFER_SIZE).is_err() {
                    let mut output = Output::default();
                    output
                        .buf(&mut pool)
                        .extend_from_slice(b"HTTP/1.1 400 \r\n\r\n");
                    assert!(
                        io.write(&mut output, true).is_err(),
                        "case {case}: a write after an error"
                    );
                    let _ = io.shutdown_write();
                    break;
                }
            }
        }
    }

    /// A server session on an accepted socket after its handshake, and a client thread that
    /// sent `payload` as application data once the handshake was done (all of it is in the
    /// socket when this returns) and waits for the server to close.
    fn connected(payload: Vec<u8>) -> (TcpStream, TlsSession, std::thread::JoinHandle<()>) {
        let fixture = fixture(false);
        let client_config = Arc::clone(&fixture.client);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        // Room for the whole payload in the accepted socket, beyond the default window (it
        // inherits the listener's buffer size), so the client's writes return only once all of
        // it has arrived there.
        socket2::SockRef::from(&listener)
            .set_recv_buffer_size(1 << 20)
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let (sent_tx, sent_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let client = std::thread::spawn(move || {
            let name = ServerName::try_from("localhost").unwrap_or_else(|e| panic!("{e}"));
            let conn = rustls::ClientConnection::new(client_config, name)
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
            TlsSession::new(Arc::clone(&fixture.server)).unwrap_or_else(|e| panic!("{e}"));
        let (mut pool, mut input, mut buffers) = (
            Pool::default(),
            InputBuffer::default(),
            TlsBuffers::default(),
        );
        let started = Instant::now();
        while session.conn.is_handshaking() {
            assert!(started.elapsed() < Duration::from_secs(10), "no handshake");
            let mut io = TlsSocket::new(&socket, &mut session, &mut buffers, [b' '; 29]);
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
    /// just past a full input (128 KiB), so the read that drains the socket is one whose
    /// records overflow the input.
    #[test]
    fn a_read_that_fills_the_input_is_never_drained() {
        for extra in [1, 200, 1000, 5000, 15000] {
            let payload: Vec<u8> = (0..BUFFER_SIZE + extra).map(|i| (i % 251) as u8).collect();
            let (socket, mut session, client) = connected(payload.clone());
            let (mut pool, mut input, mut buffers) = (
                Pool::default(),
                InputBuffer::default(),
                TlsBuffers::default(),
            );
            let mut received = Vec::new();
            loop {
                let mut io = TlsSocket::new(&socket, &mut session, &mut buffers, [b' '; 29]);
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
            assert_eq!(
                received.len(),
                payload.len(),
                "payload of 128 KiB + {extra}"
            );
            assert!(received == payload, "the plaintext differs");
            drop(socket);
            client
                .join()
                .unwrap_or_else(|_| panic!("the client thread panicked"));
        }
    }
}
